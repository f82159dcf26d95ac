"""How late a camera's frames arrive, measured on a running line (tracker.read_offsets, shown in
/api/status and by `sorter calibrate latency`): a camera that stamps its frames late reads parcels
that seem to have gone on by belt speed x the latency."""

from __future__ import annotations

import pytest

from sorter.plc.sim.parcels import ParcelPlan
from tests.virtual_line import VirtualLine


@pytest.mark.parametrize("late_ms", [0, 60])
def test_the_reads_say_how_late_the_frames_are(example_config, late_ms):
    cfg = example_config(overrides={"sim.rate_pph": 6000})
    line = VirtualLine(cfg, ParcelPlan(cfg, 4), 40, stamp_late_s=late_ms / 1000)
    run = line.run()
    got = line.loop.tracker.read_offsets()["top"]
    assert got["n"] >= 20
    assert abs(got["latency_ms"] - late_ms) < 5, got
    assert abs(got["median_mm"] - late_ms * cfg.line.belt_speed_mps) < 10, got
    if late_ms == 0:
        assert run.outcomes().get("sorted", 0) >= 30
