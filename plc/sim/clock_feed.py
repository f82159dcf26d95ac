"""The line's clocks, told by the line process and replayed by the camera frames process.

The cameras run in a process of their own (frames.py, belt_frames.py), and a parcel only passes
under them when the line's physics (physics.py) says: late by the time induction was off, later
still by the time the belt stood. So the line process tells the frames process every change that
moves parcels, and the frames process keeps a replica of the belt and infeed clocks and of the
parcels' entry times, from which it times each frame and places each parcel in it.

Protocol (one-way pipe, line -> frames, sorter.messages): every NEWS_S the line sends SimLineNews:
the events since the last news (SimClockChange of the belt or infeed clock, SimEntered, SimHeld)
and `line_mono`, the line's time up to which it has told everything. The clock changes are the
RunClock's own recorded times, so the replica's clocks are the line's, bit for bit, and every
time computed from them (a camera crossing, a parcel's place) is the one the physics computes.
A frame is sent only once `line_mono` has passed its capture time: until then a stop could still
come that the frame does not show.
"""

from __future__ import annotations

from sorter.messages import SimClockChange, SimEntered, SimHeld, SimLineNews
from sorter.plc.sim.belt_clock import INF, RunClock

NEWS_S = 0.005        # the line's news period: frames wait this long at most past their capture for it
NEWS_MAX_EVENTS = 40  # events in one news: its pickle stays under PIPE_BUF (a whole, non-blocking write)
KEEP_ENTERED = 4096   # an endless run: entry times kept (parcels long gone are never drawn again)


class ClockPublisher:
    """The line's side: what changed in a LinePhysics since the last call, as one SimLineNews.
    Reads the physics' state (its clocks' records, entered, held) and changes nothing in it."""

    def __init__(self, physics):
        self.ph = physics
        self._belt = self._infeed = 0   # clock changes already told
        self._index = 0                  # parcels whose entry (or hold) is already told

    def news(self) -> SimLineNews:
        ph, events = self.ph, []
        for name, clock, told in (("belt", ph.belt, self._belt), ("infeed", ph.infeed, self._infeed)):
            events += [SimClockChange(name, running, t) for running, t in clock.changes(told)]
        self._belt, self._infeed = ph.belt.n_changes, ph.infeed.n_changes
        for i in range(self._index, ph.next_index):
            t = ph.entered.get(i)
            if t is not None:
                events.append(SimEntered(i, t))
            elif i in ph.held:
                events.append(SimHeld(i))
        self._index = ph.next_index
        return SimLineNews(tuple(events), ph.t)


class LineClocks:
    """The frames' replica of the line's clocks: where each parcel is at any moment, as far as the
    line has told (`line_mono`) and, beyond it, as if nothing changed. `version` counts the news
    that can move a parcel from where an earlier answer put it (a clock change, a parcel held, an
    entry not at its predicted time): a frame rendered before such news is rendered again.

    Without a line to follow (line_mono=INF) it is the plan's constant-speed line; with t0=0 its
    times are run seconds (the renderer's tests)."""

    def __init__(self, plan, t0: float, n_parcels: int | None, induct_mm: float, line_mono: float = INF):
        self.plan, self.t0, self.n, self.induct = plan, t0, n_parcels, induct_mm
        self.v = plan.speed_mm_s
        self.belt = RunClock(t0)
        self.infeed = RunClock(t0)
        self.entered: dict[int, float] = {}
        self.held: set[int] = set()
        self.line_mono = line_mono
        self.version = 0

    # --- the news --------------------------------------------------------------------------
    def apply(self, news: SimLineNews) -> None:
        for e in news.events:
            kind = type(e)
            if kind is SimEntered:
                if self._predicted(e.index) != e.t_mono:
                    self.version += 1
                self.entered[e.index] = e.t_mono
            elif kind is SimClockChange:
                clock = self.belt if e.clock == "belt" else self.infeed
                clock.start(e.t_mono) if e.running else clock.stop(e.t_mono)
                self.version += 1
            elif kind is SimHeld:
                self.held.add(e.index)
                self.version += 1
        self.line_mono = max(self.line_mono, news.line_mono)
        if len(self.entered) > KEEP_ENTERED:
            cut = sorted(self.entered)[-KEEP_ENTERED // 2]
            self.entered = {i: t for i, t in self.entered.items() if i >= cut}
            self.held = {i for i in self.held if i >= cut}

    def line_gone(self) -> None:
        """The line will tell nothing more: what is known now stays true."""
        self.line_mono = INF

    # --- answers -----------------------------------------------------------------------------
    def _predicted(self, index: int, resume_at: float | None = None) -> float:
        return self.infeed.mono_at(self.plan.get(index).head_s, resume_at)

    def exists(self, index: int) -> bool:
        """The parcel is (or will be) on the line: in the plan and not held back."""
        return (self.n is None or index < self.n) and index not in self.held

    def entry(self, index: int, resume_at: float | None = None) -> float:
        """When the parcel's head crosses (crossed) the induct eye; inf if it never does, or not
        before a stop that has not ended (unless resume_at says when to assume it ends)."""
        t = self.entered.get(index)
        if t is not None:
            return t
        if not self.exists(index):
            return INF
        return self._predicted(index, resume_at)

    def point_time(self, index: int, at_mm: float, point_mm: float, resume_at: float | None = None) -> float:
        """When the point point_mm behind the parcel's head is at belt position at_mm: LinePhysics's
        formula on the same clocks. With resume_at, the earliest it can be if whatever stands still
        ran again from then (a lower bound: a watermark)."""
        t_in = self.entry(index, resume_at)
        if t_in == INF:
            return INF
        return self.belt.after(t_in, (at_mm - self.induct + point_mm) / self.v, resume_at)

    def head_mm(self, index: int, t: float) -> float | None:
        """The parcel's head position at t; None before it entered."""
        t_in = self.entry(index)
        if t_in > t:
            return None
        return self.induct + (self.belt.run_s(t) - self.belt.run_s(t_in)) * self.v
