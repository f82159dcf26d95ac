"""A camera's frame latency from parcels passing the induct eye and the camera.

A parcel's head crosses the induct photo-eye at ``t_edge`` (the controller's clock); at belt speed
``v`` it is at belt position ``X`` at ``t_edge + (X - induct_mm) / v``. The first frame that shows the
parcel (its leading edge come into view from upstream, the belt otherwise empty) shows that edge at
a pixel the camera's calibration turns into ``X``; the frame is stamped ``t_frame`` on arrival. The
difference ``t_frame - (t_edge + (X - induct_mm) / v)`` is the time from exposure to arrival: the
latency the worker must take off every frame's time (``latency_ms``).

The leading edge is found from the brightness profile along the belt: parcels (cardboard, labels)
are brighter than the belt; the downstream-most column whose share of bright pixels passes half is
the head. One measure per parcel; the result is the median, with the spread, so that one parcel
put on crooked does not move it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class LatencyMeter:
    calibration: object  # vision.geometry.Calibration: pixel -> mm along the belt from the centre line
    position_mm: float  # the camera's centre line on the belt
    induct_mm: float
    speed_mm_s: float
    max_latency_s: float = 1.0
    bright: int | None = None  # grey level between belt and parcel; None: Otsu on each frame
    edges: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    _empty: bool = True

    def induct_edge(self, t_mono: float) -> None:
        """A parcel's head crossed the induct eye at t_mono."""
        self.edges.append(t_mono)

    def head_px(self, gray: np.ndarray) -> tuple[float, float] | None:
        """The parcel's leading-edge pixel (x, y) in the frame, or None when the belt is empty."""
        small = cv2.resize(gray, (max(1, gray.shape[1] // 2), max(1, gray.shape[0] // 2)), interpolation=cv2.INTER_AREA)
        thr = self.bright
        if thr is None:
            thr, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            if small.std() < 8:  # nothing but belt: Otsu splits noise
                return None
        mask = small > thr
        a = np.asarray(self.calibration.along, np.float64)
        # the image direction downstream, from the calibration, near the frame's centre
        h, w = gray.shape[:2]
        c = np.array([[w / 2, h / 2], [w / 2 + 10, h / 2], [w / 2, h / 2 + 10]], np.float64)
        q = self.calibration.to_plane(c)
        dx, dy = np.dot(q[1] - q[0], a), np.dot(q[2] - q[0], a)
        if abs(dx) >= abs(dy):
            share = mask.mean(axis=0)
            cols = np.nonzero(share > 0.5 * share.max())[0] if share.max() > 0.05 else []
            if len(cols) == 0:
                return None
            x = (cols.max() + 1 if dx > 0 else cols.min()) * 2.0
            return float(x), h / 2
        share = mask.mean(axis=1)
        rows = np.nonzero(share > 0.5 * share.max())[0] if share.max() > 0.05 else []
        if len(rows) == 0:
            return None
        y = (rows.max() + 1 if dy > 0 else rows.min()) * 2.0
        return w / 2, float(y)

    def frame(self, t_frame: float, gray: np.ndarray) -> dict | None:
        """A frame as stamped on arrival. Returns the sample when it was a parcel's first frame."""
        px = self.head_px(gray)
        if px is None:
            self._empty = True
            return None
        if not self._empty:
            return None  # not the first frame of this parcel
        self._empty = False
        x_mm = self.position_mm + self.calibration.offset_mm([px], gray.shape[:2])
        travel_s = (x_mm - self.induct_mm) / self.speed_mm_s
        # the parcel this is: the latest head edge that could have got there by t_frame
        cands = [e for e in self.edges if -0.1 <= t_frame - (e + travel_s) <= self.max_latency_s]
        if not cands:
            return None
        e = max(cands)
        s = {"t_frame": t_frame, "t_edge": e, "head_mm": round(x_mm, 1),
             "latency_ms": round(1000 * (t_frame - (e + travel_s)), 1)}
        self.samples.append(s)
        return s

    def result(self) -> dict | None:
        if not self.samples:
            return None
        lat = [s["latency_ms"] for s in self.samples]
        return {"latency_ms": round(statistics.median(lat), 1), "n": len(lat),
                "spread_ms": round(max(lat) - min(lat), 1)}


def save_latency(path, result: dict, source: str) -> object:
    """Write the measured latency into the camera's calibration file (atomic, dated backup): the
    worker applies it where the config sets no ``latency_ms``. Returns the backup's path."""
    import time

    from sorter.vision.geometry import Calibration

    cal = Calibration.load(path)
    cal.meta["latency_ms"] = float(result["latency_ms"])
    cal.meta["latency"] = {**result, "source": source, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return cal.save(path)
