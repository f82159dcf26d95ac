"""The belt's clock: encoder counts <-> monotonic time, in this module only.

Names carry their clock: `_mono` (host monotonic seconds), `_count` (unwrapped encoder counts).
The raw 32-bit count wraps (every ~60 h at 20,000 counts/s); it is unwrapped here into a count
that only grows, so nothing else ever sees a wrap.
"""

from __future__ import annotations

import bisect
from collections import deque

WRAP = 2**32
HALF = 2**31


class BeltClock:
    def __init__(self, pulses_per_mm: float, nominal_mm_s: float, history_s: float = 5.0,
                 speed_window_s: float = 0.5):
        self.ppmm = pulses_per_mm
        self.nominal_counts_s = nominal_mm_s * pulses_per_mm
        self.history_s = history_s
        self.speed_window_s = speed_window_s
        self._raw_last: int | None = None
        self._count = 0
        self._t: deque[float] = deque()
        self._c: deque[int] = deque()
        self.counts_s = self.nominal_counts_s

    def add(self, t_mono: float, raw: int) -> int:
        """Record a sample of the raw counter; returns the unwrapped count."""
        if self._raw_last is not None:
            delta = (raw - self._raw_last) % WRAP
            if delta >= HALF:  # a small step backwards (belt jogged back), not a wrap
                delta -= WRAP
            self._count += delta
        self._raw_last = raw
        self._t.append(t_mono)
        self._c.append(self._count)
        while self._t and self._t[0] < t_mono - self.history_s:
            self._t.popleft()
            self._c.popleft()
        self._update_speed()
        return self._count

    def _update_speed(self) -> None:
        t_now = self._t[-1]
        i = bisect.bisect_left(self._t, t_now - self.speed_window_s)
        dt = t_now - self._t[i]
        if dt > self.speed_window_s * 0.5:
            self.counts_s = (self._c[-1] - self._c[i]) / dt

    @property
    def count(self) -> int:
        return self._count

    @property
    def speed_mm_s(self) -> float:
        return self.counts_s / self.ppmm

    @property
    def last_mono(self) -> float | None:
        return self._t[-1] if self._t else None

    def count_at(self, t_mono: float) -> float:
        """Counts at a past (or near-future) moment: interpolated between samples."""
        if not self._t:
            return float(self._count)
        if t_mono >= self._t[-1] or len(self._t) == 1:
            return self._c[-1] + (t_mono - self._t[-1]) * self.counts_s
        i = bisect.bisect_right(self._t, t_mono)
        if i == 0:
            return self._c[0] - (self._t[0] - t_mono) * self.counts_s
        t0, t1, c0, c1 = self._t[i - 1], self._t[i], self._c[i - 1], self._c[i]
        return c0 + (c1 - c0) * (t_mono - t0) / (t1 - t0) if t1 > t0 else float(c1)

    def mono_of(self, count: float) -> float:
        """When the belt reaches (or reached) a count, predicted from the newest sample."""
        if not self._t:
            raise RuntimeError("no encoder sample yet")
        speed = self.counts_s if self.counts_s > 1e-6 else 1e-6
        return self._t[-1] + (count - self._c[-1]) / speed

    def counts(self, mm: float) -> float:
        return mm * self.ppmm
