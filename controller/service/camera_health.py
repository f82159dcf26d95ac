"""What the service knows of each camera worker: up or not, frames, reads, drops, decode times, and
what the worker reports of itself (settings the camera accepted, read rate, withheld reads).

A camera whose worker throws most frames away (too slow for the frame rate: starved of CPU, or a
decode that got slower) reads as badly as a dead one, so it is shown as failing, not "OK".
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

DROP_WINDOW_S = 30.0
DROP_ALARM_SHARE = 0.5  # more than half of the frames offered thrown away: failing
DROP_MIN_FRAMES = 20    # ... out of at least this many frames offered in the window


class CameraHealth:
    def __init__(self, name: str):
        self.name = name
        self.up = False
        self.frames = 0
        self.reads = 0
        self.dropped = 0
        self.restarts = 0
        self.extra: dict = {}  # what the worker reports of itself (camera settings, rates ...)
        self.frame_times: deque[float] = deque(maxlen=200)
        self.decode_ms: deque[float] = deque(maxlen=500)
        self.last_error = ""
        self._counts: deque[tuple[float, int, int]] = deque(maxlen=4096)  # (mono, frames, dropped)

    def frame_done(self, now: float, dropped_total: int) -> None:
        """A frame was decoded; the worker has thrown `dropped_total` away so far (it counts them)."""
        self.frames += 1
        self.dropped = dropped_total
        self.frame_times.append(now)
        self._counts.append((now, self.frames, dropped_total))
        while self._counts and self._counts[0][0] < now - DROP_WINDOW_S:
            self._counts.popleft()

    def drop_share(self) -> float | None:
        """Share of the frames offered in the last DROP_WINDOW_S that were thrown away (None: too few)."""
        if len(self._counts) < 2:
            return None
        (_, f0, d0), (_, f1, d1) = self._counts[0], self._counts[-1]
        offered = (f1 - f0) + (d1 - d0)
        return None if offered < DROP_MIN_FRAMES else (d1 - d0) / offered

    def status(self, process_alive: bool) -> str:
        if not (process_alive and self.up):
            return "down"
        share = self.drop_share()
        return "dropping" if share is not None and share > DROP_ALARM_SHARE else "ok"

    def snapshot(self, process_alive: bool) -> dict:
        now = time.monotonic()
        recent = [t for t in self.frame_times if t > now - 10]
        ms = np.array(self.decode_ms) if self.decode_ms else None
        return {
            "name": self.name, "alive": bool(process_alive and self.up), "frames": self.frames,
            "fps": round(len(recent) / 10, 2), "dropped": self.dropped, "reads": self.reads,
            "decode_ms_p50": None if ms is None else round(float(np.percentile(ms, 50)), 1),
            "decode_ms_p99": None if ms is None else round(float(np.percentile(ms, 99)), 1),
            "restarts": self.restarts, "error": self.last_error, **self.extra,
            "status": self.status(process_alive), "drop_share": self.drop_share(),
        }
