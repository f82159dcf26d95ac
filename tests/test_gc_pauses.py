"""The timing process freezes what start-up made out of the garbage collector's walks, and times the
collections that remain: a full collection of its modules stalls a process for 15-22 ms here, over
the fire-timing budget (controller/timing/gc_pauses.py)."""

from __future__ import annotations

import gc

from sorter.controller.timing.gc_pauses import GcPauses


class Ticks:
    """A clock that moves 4 ms each time it is read: every collection then takes 4 ms."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.004
        return self.t


def test_start_up_objects_are_frozen_and_full_collections_are_timed():
    objects = [[i] for i in range(20_000)]  # what start-up made: modules, tables
    p = GcPauses(clock=Ticks())
    try:
        p.install()
        assert gc.get_freeze_count() >= 20_000
        left_to_walk = len(gc.get_objects())
        assert left_to_walk < 20_000, left_to_walk      # a full collection no longer walks them
        gc.collect(0)
        gc.collect()
        c = p.counters()
        assert c["gc_collections"] == 2 and c["gc_full_collections"] == 1
        assert abs(c["gc_longest_pause_ms"] - 4.0) < 0.01
    finally:
        p.uninstall()
    assert gc.get_freeze_count() == 0 and p._on_gc not in gc.callbacks
    del objects


def test_the_timing_status_carries_the_pauses(example_config):
    from sorter.controller.timing.loop import TimingLoop
    cfg = example_config()
    tl = TimingLoop(cfg, None, "run-gc")
    assert "gc_full_collections" not in tl._status()["counters"]   # in-process (tests): not installed
    tl.gc_pauses = GcPauses()
    counters = tl._status()["counters"]
    assert counters["gc_full_collections"] == 0 and "gc_longest_pause_ms" in counters
