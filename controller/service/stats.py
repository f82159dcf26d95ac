"""Line statistics from finished parcel records: what the status page and /metrics show.

Lives outside the timing process (see DESIGN.md). Thread-safe: ``add()`` from the record
consumer, ``snapshot()`` from the API.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import numpy as np

from sorter.controller.records.store import OUTCOMES

WINDOW_S = 300.0  # throughput is measured over the last five minutes
PERCENTILE_N = 10_000  # percentiles over the last this-many values


def percentiles(values: "deque[float] | list[float]") -> dict[str, Any]:
    """{p50, p99, p999, max, n}; None values when there are none."""
    n = len(values)
    if n == 0:
        return {"p50": None, "p99": None, "p999": None, "max": None, "n": 0}
    arr = np.fromiter(values, dtype=float, count=n)
    p50, p99, p999 = np.percentile(arr, [50, 99, 99.9])
    return {
        "p50": round(float(p50), 3),
        "p99": round(float(p99), 3),
        "p999": round(float(p999), 3),
        "max": round(float(arr.max()), 3),
        "n": n,
    }


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class LineStats:
    """Counts, throughput, read rate and timing percentiles of one run.

    ``clock`` is a monotonic clock (seconds); tests inject a fake one.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float = WINDOW_S,
        percentile_n: int = PERCENTILE_N,
    ):
        self._clock = clock
        self.window_s = window_s
        self._lock = threading.Lock()
        self._start = clock()
        self._outcomes: Counter[str] = Counter({o: 0 for o in OUTCOMES})
        self._total = 0
        self._with_waybill = 0
        self._ended: deque[float] = deque()  # monotonic end times inside the window
        self._fire: deque[float] = deque(maxlen=percentile_n)
        self._decision: deque[float] = deque(maxlen=percentile_n)
        self._chutes: Counter[str] = Counter()
        self._carriers: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        """Count one finished parcel.

        Per-chute counts are where the parcel went: ``actual_chute`` when confirmed, otherwise
        the target ``chute`` of a sorted parcel; an unconfirmed exception counts nowhere.
        An unknown outcome is counted as ``fault`` (the record store does the same).
        """
        now = self._clock()
        outcome = record.get("outcome")
        if outcome not in self._outcomes:
            outcome = "fault"
        fire = _finite(record.get("fire_error_ms"))
        decision = _finite(record.get("decision_ms"))
        chute = record.get("actual_chute") or (record.get("chute") if outcome == "sorted" else None)
        with self._lock:
            self._total += 1
            self._outcomes[outcome] += 1
            if record.get("waybill"):
                self._with_waybill += 1
            carrier = record.get("carrier")
            if carrier:
                self._carriers[str(carrier)] += 1
            self._ended.append(now)
            self._expire(now)
            if fire is not None:
                self._fire.append(fire)
            if decision is not None:
                self._decision.append(decision)
            if chute:
                self._chutes[str(chute)] += 1

    def _expire(self, now: float) -> None:
        cut = now - self.window_s
        ended = self._ended
        while ended and ended[0] < cut:
            ended.popleft()

    def throughput_pph(self) -> float:
        """Parcels per hour over the last window (or since start while that is shorter)."""
        with self._lock:
            return self._throughput(self._clock())

    def _throughput(self, now: float) -> float:
        self._expire(now)
        span = min(now - self._start, self.window_s)
        if span <= 0 or not self._ended:
            return 0.0
        span = max(span, 1.0)  # one parcel in the first millisecond is not 3.6 M/h
        return round(len(self._ended) * 3600.0 / span, 1)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able picture of the run so far."""
        with self._lock:
            now = self._clock()
            fire = list(self._fire)
            decision = list(self._decision)
            snap = {
                "counts": {"total": self._total, "outcomes": dict(self._outcomes)},
                "throughput_pph": self._throughput(now),
                "read_rate": round(self._with_waybill / self._total, 4) if self._total else None,
                "chute_counts": dict(self._chutes),
                "carrier_counts": dict(self._carriers),
                "since_start_s": round(now - self._start, 3),
            }
        snap["fire_error_ms"] = percentiles(fire)
        snap["decision_ms"] = percentiles(decision)
        return snap
