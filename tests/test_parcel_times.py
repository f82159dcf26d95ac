"""A record says where and when: each read's place on the parcel and time after its induct, when
the diverter fired and when the chute's photo-eye saw the parcel (records schema 7), so that a
parcel's story on the page answers "was it read late, did the diverter fire in time, did it
arrive". Checked against the simulated line's own account on the virtual clock: the camera
captures each parcel as its centre passes (tests/virtual_line.py), the physics knows when each
parcel left the belt and when its chute's eye saw its head."""

from __future__ import annotations

import pytest

from sorter.plc.sim.parcels import ParcelPlan
from tests.conftest import load_line_config
from tests.virtual_line import VirtualLine, check_invariants


def test_records_keep_read_positions_fire_and_confirm_times(config_dir):
    cfg = load_line_config(config_dir, overrides={"sim.rate_pph": 6000})
    plan = ParcelPlan(cfg, 3)
    run = VirtualLine(cfg, plan, 40, 3).run()
    check_invariants(run)
    line, ph = cfg.line, run.physics
    v = line.belt_speed_mps * 1000
    cam = cfg.cameras[0]
    by_pid = {r["parcel_id"]: r for r in run.records}
    sorted_ = [t for t in run.parcels if t.record and t.record["outcome"] == "sorted" and t.record["actual_chute"]
               and t.landed != line.reject_chute]
    assert len(sorted_) >= 25, [t.record["outcome"] for t in run.parcels if t.record]
    for t in sorted_:
        rec, p = t.record, plan.get(t.index)
        induct_mono = ph.entered[t.index]
        # the read: made as the parcel's centre passed the camera
        reads = [r for r in rec["reads"] if r["camera"] == cam.name]
        assert reads and all("at_mm" in r and "t_s" in r for r in reads), rec["reads"]
        for r in reads:
            assert r["at_mm"] == pytest.approx(p.length_mm / 2, abs=3), (t.index, r, p.length_mm)
            assert r["t_s"] == pytest.approx((cam.position_mm - line.induct.position_mm + p.length_mm / 2) / v,
                                             abs=0.003)
        # the switch-on: as planned (head lead_mm before the diverter, actuation_ms early), give or take
        # its fire error; the chute's eye: when the physics had the head arrive
        fate = ph.fates[t.index]
        d = next(x for x in line.diverters if x.name == fate.diverter)
        planned = (d.position_mm - d.lead_mm - line.induct.position_mm) / v - d.actuation_ms / 1000
        fired = rec["fired_wall"] - rec["induct_wall"]
        assert fired == pytest.approx(planned + rec["fire_error_ms"] / 1000, abs=0.002), (t.index, fired, planned)
        slide = cfg.sim.chute_slide_ms / 1000
        seen = fate.t_mono - p.length_mm / 2 / v + slide - induct_mono
        confirmed = rec["confirmed_wall"] - rec["induct_wall"]
        assert confirmed == pytest.approx(seen, abs=0.003), (t.index, confirmed, seen)
        assert rec["induct_wall"] < rec["fired_wall"] < rec["confirmed_wall"] <= rec["ended_wall"] + 1e-3
    # a parcel sent to reject: nothing fired, no chute eye saw it
    rejects = [r for r in by_pid.values() if r["chute"] is None or r["outcome"] != "sorted"]
    assert all(r["fired_wall"] is None for r in rejects if r["fire_error_ms"] is None)
