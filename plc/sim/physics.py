"""Physics of the simulated line, evaluated exactly at any moment asked.

Parcels move at belt speed; nothing is ticked. When Modbus asks for the inputs at time t, the line
is advanced to t event by event: each parcel's centre reaches each diverter at a known time, and the
diverter's output history (time-stamped when each write arrived) says whether it was effective then.
So the simulation adds no jitter of its own to what the controller's timing is judged by.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from sorter.controller.config.line import Config
from sorter.plc.sim.parcels import ParcelPlan, PlannedParcel

ENCODER_MOD = 2**32


class OutputHistory:
    """When one output (coil) switched, as the device saw the writes arrive."""

    def __init__(self) -> None:
        self.times: list[float] = [float("-inf")]
        self.states: list[bool] = [False]

    def set(self, t: float, state: bool) -> None:
        if state != self.states[-1]:
            self.times.append(t)
            self.states.append(state)
            if len(self.times) > 4096:
                del self.times[:2048], self.states[:2048]

    def at(self, t: float) -> bool:
        return self.states[bisect.bisect_right(self.times, t) - 1]

    def last_rise_before(self, t: float) -> float | None:
        i = bisect.bisect_right(self.times, t) - 1
        while i > 0:
            if self.states[i] and not self.states[i - 1]:
                return self.times[i]
            i -= 1
        return None

    @property
    def now(self) -> bool:
        return self.states[-1]


@dataclass
class ChuteState:
    count: int = 0
    full_since: float | None = None
    full_spans: list[tuple[float, float]] = field(default_factory=list)
    confirms: deque = field(default_factory=deque)  # (start, end) intervals the confirm PE is blocked


@dataclass
class ParcelFate:
    index: int
    chute: str                # where it physically went (the reject chute at the end of the belt)
    t_mono: float             # when it left the belt
    fire_error_ms: float | None = None
    diverter: str | None = None


class LinePhysics:
    def __init__(self, cfg: Config, plan: ParcelPlan, t0_mono: float, n_parcels: int | None = None):
        self.cfg, self.plan, self.t0, self.n = cfg, plan, t0_mono, n_parcels
        line = cfg.line
        self.v = plan.speed_mm_s
        self.induct_mm = line.induct.position_mm
        self.diverters = sorted(line.diverters, key=lambda d: d.position_mm)
        self.chute_at = {(c.diverter, c.side): c.id for c in line.chutes if c.diverter}
        self.outputs: dict[str, OutputHistory] = {
            sig: OutputHistory() for d in self.diverters for sig in d.outputs.values()
        }
        self.chutes = {c.id: ChuteState() for c in line.chutes}
        self.on_belt: deque[tuple[PlannedParcel, int]] = deque()  # (parcel, next diverter index)
        self.next_index = 0
        self.fates: dict[int, ParcelFate] = {}
        self.faults: list[str] = []
        self.t = t0_mono
        self.ppmm = line.encoder_pulses_per_mm
        self.encoder_start = cfg.sim.encoder_start
        # the PLC's watchdog: armed by the first heartbeat; when it trips, outputs drop and induction
        # stops (parcels due at the induct while it is tripped are held back: they never enter)
        self.watchdog_s = cfg.sim.watchdog_ms / 1000 if cfg.plc.heartbeat and cfg.sim.watchdog_ms > 0 else None
        self.hb_last: float | None = None
        self.tripped_at: float | None = None
        self.trips: list[tuple[float, float | None]] = []
        self.held: set[int] = set()
        # the encoder latch at the induct photo-eye: edges so far and the count at the last one
        self.head_seq = self.tail_seq = 0
        self.head_latch = self.tail_latch = 0
        self._tails: deque[tuple[float, int]] = deque()

    # --- time of a parcel point --------------------------------------------------------
    def _at(self, p: PlannedParcel, at_mm: float, point_mm: float) -> float:
        """Mono time when the point `point_mm` behind the head is at belt position at_mm."""
        return self.t0 + p.head_s + (at_mm - self.induct_mm + point_mm) / self.v

    def head_mm(self, p: PlannedParcel, t: float) -> float:
        return self.induct_mm + (t - self.t0 - p.head_s) * self.v

    # --- the PLC's watchdog --------------------------------------------------------------
    def heartbeat(self, t: float) -> None:
        self.advance(t)
        if self.tripped_at is not None:
            self.trips[-1] = (self.tripped_at, t)
            self.tripped_at = None
        self.hb_last = t

    def _check_watchdog(self, t: float) -> None:
        if self.watchdog_s is None or self.hb_last is None or self.tripped_at is not None:
            return
        t_trip = self.hb_last + self.watchdog_s
        if t_trip <= t:
            self._advance(t_trip)
            for h in self.outputs.values():
                h.set(t_trip, False)
            self.tripped_at = t_trip
            self.trips.append((t_trip, None))

    # --- writes ------------------------------------------------------------------------
    def write_output(self, signal: str, state: bool, t: float) -> None:
        self.advance(t)
        if self.tripped_at is not None:
            return  # the watchdog holds every output off until the heartbeat returns
        self.outputs[signal].set(t, state)

    # --- evolution ---------------------------------------------------------------------
    def advance(self, t: float) -> None:
        if t < self.t:
            t = self.t  # never run the clock backwards
        self._check_watchdog(t)
        self._advance(t)

    def _advance(self, t: float) -> None:
        if t < self.t:
            t = self.t
        while (self.n is None or self.next_index < self.n) and \
                self.t0 + self.plan.get(self.next_index).head_s <= t:
            p = self.plan.get(self.next_index)
            self.next_index += 1
            t_head = self.t0 + p.head_s
            if self.tripped_at is not None and t_head >= self.tripped_at:
                self.held.add(p.index)  # induction is stopped: it stays on the infeed
                continue
            self.on_belt.append((p, 0))
            self.head_seq = (self.head_seq + 1) & 0xFFFF
            self.head_latch = self.encoder(t_head)
            t_tail = t_head + p.length_mm / self.v
            self._tails.append((t_tail, self.encoder(t_tail)))
        while self._tails and self._tails[0][0] <= t:
            self.tail_seq = (self.tail_seq + 1) & 0xFFFF
            self.tail_latch = self._tails.popleft()[1]
        still = deque()
        for p, k in self.on_belt:
            done = False
            while k < len(self.diverters):
                d = self.diverters[k]
                t_c = self._at(p, d.position_mm, p.length_mm / 2)
                if t_c > t:
                    break
                effective = t_c - d.actuation_ms / 1000.0
                sides = [s for s, sig in d.outputs.items() if self.outputs[sig].at(effective)]
                if sides:
                    if len(sides) > 1:
                        self.faults.append(f"{d.name}: both outputs on at {t_c:.3f}")
                    self._divert(p, d, sides[0], t_c)
                    done = True
                    break
                k += 1
            if not done and k >= len(self.diverters):
                t_end = self._at(p, self.cfg.line.end_mm, 0.0)
                if t_end <= t:
                    self._land(p, self.cfg.line.reject_chute, t_end, None, None)
                    done = True
            if not done:
                still.append((p, k))
        self.on_belt = still
        for cid, ch in self.chutes.items():
            if ch.full_since is not None and t >= ch.full_since + self.cfg.sim.chute_empty_s:
                ch.full_spans.append((ch.full_since, ch.full_since + self.cfg.sim.chute_empty_s))
                ch.full_since, ch.count = None, 0
            while ch.confirms and ch.confirms[0][1] < t - 1.0:
                ch.confirms.popleft()
        self.t = t

    def _divert(self, p: PlannedParcel, d, side: str, t_c: float) -> None:
        sig = d.outputs[side]
        ideal_on = self._at(p, d.position_mm - d.lead_mm, 0.0) - d.actuation_ms / 1000.0
        rise = self.outputs[sig].last_rise_before(t_c - d.actuation_ms / 1000.0)
        err = None
        # an output already on well before this parcel's window was held on for the parcel ahead
        if rise is not None and not self.outputs[sig].at(ideal_on - 0.1):
            err = (rise - ideal_on) * 1000.0
        self._land(p, self.chute_at[(d.name, side)], t_c, err, d.name)

    def _land(self, p, chute_id: str, t: float, err: float | None, diverter: str | None) -> None:
        self.fates[p.index] = ParcelFate(p.index, chute_id, t, err, diverter)
        ch = self.chutes[chute_id]
        slide = self.cfg.sim.chute_slide_ms / 1000.0
        # the confirm eye sees parcels in the order and spacing they left the belt (head first)
        t_head = t - (p.length_mm / 2 / self.v if diverter is not None else 0.0)
        ch.confirms.append((t_head + slide, t_head + slide + p.length_mm / self.v))
        ch.count += 1
        if ch.count >= self.cfg.sim.chute_capacity and ch.full_since is None and chute_id != self.cfg.line.reject_chute:
            ch.full_since = t

    def forget_before(self, index: int) -> None:
        """Drop the fates of parcels long gone (endless runs)."""
        for i in [i for i in self.fates if i < index]:
            del self.fates[i]

    # --- what the I/O module shows -----------------------------------------------------
    def induct_blocked(self, t: float) -> bool:
        for p, _ in reversed(self.on_belt):
            head = self.head_mm(p, t)
            if head - p.length_mm <= self.induct_mm <= head:
                return True
            if head - p.length_mm > self.induct_mm:
                break
        # the next parcel may be just about to be admitted
        return False

    def confirm_blocked(self, chute_id: str, t: float) -> bool:
        return any(a <= t <= b for a, b in self.chutes[chute_id].confirms)

    def full(self, chute_id: str) -> bool:
        return self.chutes[chute_id].full_since is not None

    def encoder(self, t: float) -> int:
        return (self.encoder_start + int((t - self.t0) * self.v * self.ppmm)) % ENCODER_MOD

    def full_between(self, chute_id: str, t_a: float, t_b: float) -> bool:
        ch = self.chutes[chute_id]
        spans = list(ch.full_spans) + ([(ch.full_since, float("inf"))] if ch.full_since is not None else [])
        return any(a <= t_b and b >= t_a for a, b in spans)
