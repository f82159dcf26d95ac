"""What the service knows of each camera worker: up or not, frames, reads, drops, decode times, and
what the worker reports of itself (settings the camera accepted, read rate, withheld reads)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


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
        }
