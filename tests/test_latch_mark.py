"""The latch mark (controller/records/journal.py, line_marks): how far the encoder latch's head-edge
counter had been accounted for, kept in the same transactions as the journal rows. After a crash
of the whole service (``kill -9``, a power cut) the parcels that crossed the induct eye in the last
batch before it, or while nothing ran, are counted by the latch and get records at the next start;
after a clean stop nothing is counted twice."""

from __future__ import annotations

from sorter.controller.records.journal import RESTARTED
from sorter.controller.records.writer import RecordWriter, close_open_journal, drop_latch_mark, take_latch_mark
from sorter.controller.routing.router import RouteDecision
from sorter.controller.timing.latch import UNMATCHED_POLLS, PlcTracker


def test_the_mark_is_kept_with_the_journal_rows_and_a_clean_stop_drops_it(tmp_path):
    db = tmp_path / "r.db"
    w = RecordWriter(db)
    w.open("run1", 1, 101.0, latch_seq=41)
    w.open("run1", 2, 102.0, latch_seq=42)
    assert w.flush()
    # killed here: the next start finds the mark of the last committed journal row
    assert take_latch_mark(db) == 42
    w.mark_latch(45)  # three parcels recorded unseen by the latch move it on
    assert w.flush()
    assert take_latch_mark(db) == 45
    assert w.close()
    assert len(close_open_journal(db, RESTARTED)) == 2
    drop_latch_mark(db)  # what Service.close_records does after a clean stop
    assert take_latch_mark(db) is None


def _tracker(cfg, baseline):
    records = []
    t = PlcTracker(cfg, lambda reads, available: RouteDecision("no_read", None, None, None, None, "x", ""),
                   records.append, "run2", wall=lambda: 0.0)
    t.setup_latch(cfg.plc.latch)
    t.latch_baseline = baseline
    return t, records


def _poll(t, cfg, now, head_seq, tail_seq, enc):
    lt = cfg.plc.latch
    values = {cfg.line.encoder_signal: enc, cfg.line.induct.signal: 0, lt.head_seq: head_seq,
              lt.tail_seq: tail_seq, lt.head_count: enc, lt.tail_count: enc}
    for c in cfg.line.chutes:
        if c.confirm_signal:
            values[c.confirm_signal] = 0
        if c.full_signal:
            values[c.full_signal] = 0
    t.on_latch(values)
    t.on_inputs(now, values)
    t.after_poll()


def test_parcels_the_latch_counted_after_the_mark_are_recorded_at_the_start_after_a_crash(example_config):
    cfg = example_config()
    t, records = _tracker(cfg, baseline=42)
    # the device's counter went on to 45 while the service was down (or after its last commit)
    for i in range(UNMATCHED_POLLS + 2):
        _poll(t, cfg, 1.0 + i * 0.001, 45, 45, 1000 + i)
    assert [(r["outcome"], "latch counter" in r["reason"]) for r in records] == [("fault", True)] * 3
    assert t.accounted_seq == 45


def test_after_a_clean_stop_no_mark_so_nothing_is_counted_twice(example_config):
    cfg = example_config()
    t, records = _tracker(cfg, baseline=None)
    for i in range(UNMATCHED_POLLS + 2):
        _poll(t, cfg, 1.0 + i * 0.001, 45, 45, 1000 + i)
    assert records == []


def test_a_counter_far_from_the_mark_is_another_device_and_not_taken_for_parcels(example_config):
    cfg = example_config()
    t, records = _tracker(cfg, baseline=42)
    for i in range(UNMATCHED_POLLS + 2):
        _poll(t, cfg, 1.0 + i * 0.001, 7, 7, 1000 + i)  # the PLC was replaced or restarted at 0
    assert records == []
