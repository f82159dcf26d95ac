"""LineStats with an injected clock."""

from __future__ import annotations

import json

import pytest

from sorter.controller.records.store import OUTCOMES
from sorter.controller.service.stats import LineStats, percentiles


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def parcel(outcome="sorted", waybill="SF1", chute="C1", actual="C1", fire=0.5, decision=2.0, carrier="SF"):
    return {"outcome": outcome, "waybill": waybill, "chute": chute, "actual_chute": actual,
            "fire_error_ms": fire, "decision_ms": decision, "carrier": carrier}


def test_empty_snapshot_has_every_key():
    s = LineStats(Clock())
    snap = s.snapshot()
    assert set(snap["counts"]["outcomes"]) == set(OUTCOMES)
    assert snap["counts"]["total"] == 0
    assert snap["throughput_pph"] == 0.0
    assert snap["read_rate"] is None
    assert snap["fire_error_ms"] == {"p50": None, "p99": None, "p999": None, "max": None, "n": 0}
    json.dumps(snap, allow_nan=False)


def test_counts_read_rate_and_chutes():
    clock = Clock()
    s = LineStats(clock)
    for _ in range(8):
        s.add(parcel())
    s.add(parcel("no_read", waybill=None, chute=None, actual="R", fire=None))
    s.add(parcel("unconfirmed", chute="C2", actual=None))
    s.add(parcel("bogus"))  # counted as fault
    snap = s.snapshot()
    oc = snap["counts"]["outcomes"]
    assert oc["sorted"] == 8 and oc["no_read"] == 1 and oc["unconfirmed"] == 1 and oc["fault"] == 1
    assert oc["lost"] == 0 and "bogus" not in oc
    assert snap["counts"]["total"] == 11
    assert snap["read_rate"] == pytest.approx(10 / 11, abs=1e-4)
    assert snap["chute_counts"] == {"C1": 9, "R": 1}  # the unconfirmed one went nowhere known
    assert snap["carrier_counts"]["SF"] == 11
    json.dumps(snap, allow_nan=False)


def test_throughput_since_start_then_window():
    clock = Clock()
    s = LineStats(clock)
    # 60 parcels over the first 60 s -> 3600 per hour
    for _ in range(60):
        clock.t += 1.0
        s.add(parcel())
    assert s.snapshot()["throughput_pph"] == pytest.approx(3600, rel=0.01)
    # run to 10 minutes at one parcel every 2 s: the window is the last 5 minutes only
    while clock.t < 1000 + 600:
        clock.t += 2.0
        s.add(parcel())
    assert s.snapshot()["throughput_pph"] == pytest.approx(1800, rel=0.02)
    # the line stops: throughput decays to zero after the window
    clock.t += 301
    assert s.snapshot()["throughput_pph"] == 0.0
    assert s.snapshot()["counts"]["total"] == 60 + 270


def test_percentiles_over_last_values():
    clock = Clock()
    s = LineStats(clock, percentile_n=1000)
    for i in range(2000):
        s.add(parcel(fire=1000.0 if i < 1000 else float(i % 100), decision=float("nan")))
    snap = s.snapshot()
    fe = snap["fire_error_ms"]
    assert fe["n"] == 1000  # only the last 1000: the early 1000 ms values are gone
    assert fe["max"] == 99.0
    assert fe["p50"] == pytest.approx(49.5, abs=1)
    assert 97 <= fe["p99"] <= 99 and fe["p99"] <= fe["p999"] <= fe["max"]
    assert snap["decision_ms"]["n"] == 0  # NaN is not a measurement


def test_percentiles_helper():
    p = percentiles([1.0, 2.0, 3.0])
    assert p["p50"] == 2.0 and p["max"] == 3.0 and p["n"] == 3
