"""When each diverter output goes on and off: windows in encoder counts, due times in monotonic time.

A window is planned when a parcel is decided and is kept in counts, so that the due time follows the
belt's measured speed until the moment of the write. An output is never switched on late: a window
whose on-time has passed by more than `max_late_ms` is cancelled and its parcel goes to reject as
`too_late` (Klipper's rule: refuse what cannot be done on time, never do it late).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sorter.controller.timing.belt_clock import BeltClock
from sorter.controller.config.line import ChuteConfig, Config, DiverterConfig

MERGE_MM = 100.0  # windows on one output closer than this are held as one


@dataclass
class Window:
    on_count: float
    off_count: float
    actuation_s: float
    max_on_s: float
    pids: list[int] = field(default_factory=list)
    on_since_mono: float | None = None
    planned_on_mono: float | None = None


@dataclass(frozen=True)
class Action:
    signal: str
    state: bool
    due_mono: float
    pids: tuple[int, ...]


class OutputPlanner:
    def __init__(self, cfg: Config, clock: BeltClock, max_late_ms: float = 8.0):
        self.cfg, self.clock = cfg, clock
        self.induct_mm = cfg.line.induct.position_mm
        self.min_lead_s = cfg.line.min_decision_lead_ms / 1000
        self.max_late_s = max_late_ms / 1000
        self.diverter = {d.name: d for d in cfg.line.diverters}
        self.windows: dict[str, list[Window]] = {
            sig: [] for d in cfg.line.diverters for sig in d.outputs.values()}
        self.last_refusal = ""
        self.cancelled: list[tuple[int, str]] = []  # (pid, reason) for the tracker to settle

    def _count_at(self, p, d: DiverterConfig, offset_mm: float, from_tail: bool) -> float:
        base = p.tail_count if from_tail else p.head_count
        return base + self.clock.counts(d.position_mm + offset_mm - self.induct_mm)

    def plan(self, p, chute: ChuteConfig, now_mono: float) -> float | None:
        """Plan the window that sends parcel p into `chute`; returns when its centre passes the
        diverter (mono), or None with `last_refusal` set when it cannot be done in time."""
        d = self.diverter[chute.diverter]
        sig = d.outputs[chute.side]
        act = d.actuation_ms / 1000
        on = self._count_at(p, d, -d.lead_mm, False)
        off = self._count_at(p, d, d.trail_mm, True)
        due = self.clock.mono_of(on) - act
        wins = self.windows[sig]
        merge = wins and on <= wins[-1].off_count + self.clock.counts(MERGE_MM)
        if not merge and due - now_mono < self.min_lead_s:
            self.last_refusal = (f"decided {1000 * (due - now_mono):.0f} ms before {d.name} had to "
                                 f"switch (needs {1000 * self.min_lead_s:.0f} ms)")
            return None
        # the maximum on-time is a hard limit: a window that would need the output on longer (a long
        # parcel, or windows merged back to back) is refused rather than cut short under the parcel
        start = wins[-1].on_count if merge else on
        hold_s = (max(off, wins[-1].off_count) if merge else off) - start
        hold_s = hold_s / max(self.clock.counts_s, 1e-6)
        if hold_s > d.max_on_ms / 1000:
            self.last_refusal = (f"{sig} would be on {1000 * hold_s:.0f} ms for it, over its "
                                 f"max_on_ms {d.max_on_ms:.0f}")
            return None
        if merge:
            w = wins[-1]
            w.off_count = max(w.off_count, off)
            w.pids.append(p.pid)
        else:
            wins.append(Window(on, off, act, d.max_on_ms / 1000, [p.pid], planned_on_mono=due))
        centre = (p.head_count + p.tail_count) / 2 + self.clock.counts(d.position_mm - self.induct_mm)
        return self.clock.mono_of(centre)

    def next_action(self) -> Action | None:
        best = None
        for sig, wins in self.windows.items():
            if not wins:
                continue
            w = wins[0]
            if w.on_since_mono is None:
                a = Action(sig, True, self.clock.mono_of(w.on_count) - w.actuation_s, tuple(w.pids))
            else:
                due = min(self.clock.mono_of(w.off_count) - w.actuation_s, w.on_since_mono + w.max_on_s)
                a = Action(sig, False, due, tuple(w.pids))
            if best is None or a.due_mono < best.due_mono:
                best = a
        return best

    def too_late(self, a: Action, now_mono: float) -> bool:
        """An on-action past its moment is dropped (and its parcels cancelled), never done late."""
        if not a.state or now_mono - a.due_mono <= self.max_late_s:
            return False
        self.refuse(a, f"{a.signal} could not switch on in time ({1000 * (now_mono - a.due_mono):.1f} ms late)")
        return True

    def refuse(self, a: Action, reason: str) -> None:
        """The on-action `a` is not done: its window is dropped, its parcels cancelled (too_late)."""
        w = self.windows[a.signal].pop(0)
        for pid in w.pids:
            self.cancelled.append((pid, reason))

    def done(self, a: Action, write_mono: float) -> float | None:
        """The write for `a` completed around `write_mono`; returns its timing error in ms."""
        wins = self.windows[a.signal]
        if not wins:
            return None
        if a.state:
            wins[0].on_since_mono = write_mono
        else:
            wins.pop(0)
        return (write_mono - a.due_mono) * 1000

    def outputs_on(self) -> list[str]:
        return [s for s, w in self.windows.items() if w and w[0].on_since_mono is not None]

    def clear(self) -> None:
        for wins in self.windows.values():
            wins.clear()
