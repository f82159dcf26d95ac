"""Clocks of the simulated line that stop and start: the belt's and the infeed's.

A RunClock counts the seconds something has run since t0. It is piecewise: while running it
advances one to one with monotonic time, while stopped it stands still. Both directions are exact
(nothing is ticked), so the physics can ask at any moment "where is the belt now?" (run_s) and
"when will it have run r seconds more than at t?" (after). A stop that has not ended yet makes
every answer beyond it infinite (nobody knows when the belt will start again), unless the caller
says when to assume it ends (resume_at: a lower bound for schedulers).

The belt clock times every belt position (position = run seconds x belt speed); the infeed clock
times induction: a parcel planned at infeed time head_s enters when the infeed clock reads head_s.
The whole state is the list of stops, so another process (the camera frames) could replay it.
"""

from __future__ import annotations

import bisect

INF = float("inf")


class RunClock:
    def __init__(self, t0: float, running: bool = True):
        self.t0 = t0
        self._stop: list[float] = []   # mono time each stop began
        self._end: list[float] = []    # mono time each stop ended (one short while stopped now)
        self._run: list[float] = []    # run seconds at the start of each stop
        self._idle: list[float] = []   # seconds stood still before each stop
        if not running:
            self.stop(t0)

    @property
    def running(self) -> bool:
        return len(self._end) == len(self._stop)

    def stop(self, t: float) -> bool:
        """Stops at t (no earlier than the last change). Returns False if it was stopped already."""
        if not self.running:
            return False
        idle = 0.0
        if self._stop:
            t = max(t, self._end[-1])
            idle = self._idle[-1] + self._end[-1] - self._stop[-1]
        self._run.append(t - self.t0 - idle)
        self._idle.append(idle)
        self._stop.append(t)
        return True

    def start(self, t: float) -> bool:
        """Runs again from t. Returns False if it was running already."""
        if self.running:
            return False
        self._end.append(max(t, self._stop[-1]))
        return True

    def run_s(self, t: float) -> float:
        """Seconds run from t0 to t."""
        stops = self._stop
        if not stops or t < stops[0]:
            return t - self.t0  # the constant-speed formula, bit for bit, while nothing stopped
        i = bisect.bisect_right(stops, t) - 1
        if i >= len(self._end) or t < self._end[i]:
            return self._run[i]  # standing still in stop i
        return t - self.t0 - (self._idle[i] + self._end[i] - stops[i])

    def mono_at(self, s: float, resume_at: float | None = None) -> float:
        """The first moment the clock reads s run seconds (inf beyond a stop still going on, unless
        resume_at says when to assume it ends)."""
        j = bisect.bisect_left(self._run, s)  # stops that began before s was reached
        if j == 0:
            return self.t0 + s
        i = j - 1
        if i >= len(self._end):
            if resume_at is None:
                return INF
            return max(resume_at, self._stop[i]) + (s - self._run[i])
        return self._end[i] + (s - self._run[i])

    def after(self, t: float, r: float, resume_at: float | None = None) -> float:
        """When the clock will have run r seconds more than it had at mono time t."""
        if self.running and (not self._end or t >= self._end[-1]):
            return t + r  # no stop in the way: exactly the constant-speed formula
        return self.mono_at(self.run_s(t) + r, resume_at)

    @property
    def n_changes(self) -> int:
        """Stops and starts so far (a replica has seen them all when it has applied this many)."""
        return len(self._stop) + len(self._end)

    def changes(self, since: int = 0) -> list[tuple[bool, float]]:
        """(running after it, mono time) of every stop and start from the since-th on, in order:
        applied to RunClock(t0) with stop/start, they rebuild this clock exactly."""
        out = []
        for j in range(since, self.n_changes):
            k, ended = divmod(j, 2)
            out.append((True, self._end[k]) if ended else (False, self._stop[k]))
        return out

    def stops(self) -> list[tuple[float, float | None]]:
        """(began, ended or None) of every stop, mono times."""
        return [(a, self._end[i] if i < len(self._end) else None) for i, a in enumerate(self._stop)]
