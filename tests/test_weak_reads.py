"""A weak read (only one decoding attempt made it) is kept on the record, flagged and counted, and
decides the parcel's chute only where the camera's config allows it (cameras[].weak_reads_sort)."""

from __future__ import annotations

from sorter.controller.timing.tracker import Parcel, Tracker
from sorter.messages import Read


def tracker(example_config, weak_sorts: bool) -> Tracker:
    cfg = example_config(overrides={"cameras.0.weak_reads_sort": weak_sorts})
    records = []
    t = Tracker(cfg, lambda reads, available: None, records.append, "run1", wall=lambda: 0.0)
    t.records = records
    t.clock.add(0.0, 0)  # an encoder that has been seen (a record gives its scan window in belt time)
    t.clock.add(0.1, 2000)
    return t


def test_a_weak_read_is_kept_but_does_not_sort_by_default(example_config):
    t = tracker(example_config, weak_sorts=False)
    p = Parcel(1, 0.0, 0.0, 0.0, None)
    p.reads = [Read("top", "code128", "SF1234567890123", 0.0, weak=True), Read("top", "ean13", "6901234567892", 0.0)]
    assert t.votes(p) == [("ean13", "6901234567892")]
    assert t.counters["weak_reads"] == 1 and t.counters["weak_reads_held_back"] == 1
    p.state, p.outcome, p.reason = "travelling", "no_read", "no waybill"
    t._finish(p)
    assert t.records[0]["reads"][0] == {"camera": "top", "symbology": "code128", "text": "SF1234567890123", "weak": True}
    assert "weak" not in t.records[0]["reads"][1]


def test_a_camera_may_let_weak_reads_sort(example_config):
    t = tracker(example_config, weak_sorts=True)
    p = Parcel(1, 0.0, 0.0, 0.0, None)
    p.reads = [Read("top", "code128", "SF1234567890123", 0.0, weak=True)]
    assert t.votes(p) == [("code128", "SF1234567890123")]
    assert t.counters["weak_reads_held_back"] == 0
