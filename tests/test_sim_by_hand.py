"""People at the belt, on the real-time simulated line (real Modbus TCP, camera workers, records):
someone lifts a parcel off after the induct eye, and later puts another one on. The parcel
taken off ends `lost` (or its reject outcome, "not seen"), without the parcels behind it taking
each other's confirms; the one put on is counted at the chute it reaches and alarmed. The
physics keeps the truth (plc/sim/physics.py: OFF_BELT, extras), not the controller."""

from __future__ import annotations

import pytest

from sorter.controller.config.load import load_config
from sorter.controller.harness import SimHarness
from sorter.controller.routing.manifest import Manifest
from tests.conftest import write_line_config
from tests.test_processes import wait_for

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time


def test_a_parcel_taken_off_and_another_put_on_by_hand(tmp_path):
    path = write_line_config(tmp_path / "config", overrides={"sim.rate_pph": 8000})
    cfg = load_config(path)
    Manifest(cfg.routing.manifest).close()
    h = SimHarness(cfg, parcels=24, seed=5)
    try:
        h.start()
        wait_for(lambda: len(h.records) >= 8, 180, "8 records")
        done = h.by_hand(take_off=-1)
        assert done.taken_off is not None, done
        truth = h.run_until_done(300)
        # (put in the place of the one taken off, a parcel would be it as far as any eye can tell:
        # on the empty belt after the run, it is a stranger wherever it lands)
        put = h.by_hand(put_on_mm=cfg.line.induct.position_mm + 600, length_mm=250)
        assert put.put_on is not None
        wait_for(lambda: h.svc.timing_status["counters"]["unexpected_confirms"] >= 1, 60, "the stranger's confirm")
        status = h.svc.timing_status
    finally:
        h.stop()
    by_pid = {r["parcel_id"]: r for r in h.records}
    assert len(by_pid) == len(h.records) == truth["inducted"]  # the one put on passed no induct eye: no record
    gone = by_pid[done.taken_off + 1]  # ids in induct order from 1; none were noise here
    assert gone["outcome"] == "lost" or "not seen at" in gone["reason"], gone
    # nobody else lost a confirm to it, nothing went astray
    lost = [r for r in h.records if r["outcome"] == "lost"]
    assert [r["parcel_id"] for r in lost] in ([], [gone["parcel_id"]]), lost
    astray = [m for m in truth["mis_sorts"] if m["got"] != cfg.line.reject_chute and m["index"] != done.taken_off]
    assert astray == [], astray
    assert status["counters"]["unexpected_confirms"] >= 1
    assert "unexpected_confirms" in {a["id"] for a in status["alarms"]}
