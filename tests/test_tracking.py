"""The tracker against the simulated line's physics: whole shifts on a simulated clock."""

from __future__ import annotations

from collections import Counter

import pytest

from sorter.controller.config.load import load_config
from sorter.plc.sim.parcels import ParcelPlan
from tests.linedrive import drive, tmp_config

EXAMPLE = "config/wenling-line1.yaml"


@pytest.fixture
def cfg(tmp_path):
    return tmp_config(load_config(EXAMPLE), tmp_path)


def outcomes(d):
    return Counter(r["outcome"] for r in d.records)


def test_every_parcel_sorted_where_it_should_be_at_12000_pph(cfg):
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"rate_pph": 12000})})
    d = drive(cfg, 300)
    assert len(d.records) == 300 == d.truth["inducted"]
    assert len({r["parcel_id"] for r in d.records}) == 300
    assert d.truth["mis_sorted"] == 0, d.truth["mis_sorts"]
    assert outcomes(d)["sorted"] == d.truth["expected_sorted"]
    assert all(r["reason"] for r in d.records)
    # a write made at its due time lands within a few mm of where the parcel really is
    fe = d.truth["fire_error_ms"]
    assert abs(fe["p50"]) < 1.0 and abs(fe["max"]) < 2.5, fe


def test_encoder_wrap_mid_run_changes_nothing(cfg):
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"encoder_start": 2**32 - 150_000})})
    d = drive(cfg, 80)
    assert d.tracker.clock.count > 150_000  # the raw counter wrapped during the run
    assert d.truth["mis_sorted"] == 0
    assert outcomes(d)["sorted"] == d.truth["expected_sorted"]


def test_no_reads_go_to_reject_with_a_reason(cfg):
    d = drive(cfg, 30, reads=False)
    assert outcomes(d) == Counter({"no_read": 30})
    assert all(r["actual_chute"] == "REJECT" and "no waybill" in r["reason"] for r in d.records)
    assert {p["got"] for p in d.truth["parcels"]} == {"REJECT"}


def test_late_cameras_are_waited_for_until_the_last_safe_moment(cfg):
    # decoding takes 250 ms: far longer than the parcel needs to leave the scan zone
    d = drive(cfg, 40, decode_latency_s=0.25)
    assert d.truth["mis_sorted"] == 0
    assert outcomes(d)["sorted"] == d.truth["expected_sorted"]
    assert d.tracker.counters["late_reads"] == 0


def test_a_camera_too_slow_for_the_deadline_makes_no_reads_not_missorts(cfg):
    d = drive(cfg, 30, decode_latency_s=2.0)
    assert outcomes(d)["sorted"] == 0
    assert {p["got"] for p in d.truth["parcels"]} == {"REJECT"}
    assert d.tracker.counters["decisions_without_all_cameras"] > 0


def test_a_blind_confirm_eye_makes_lost_parcels(cfg):
    def blind(physics):
        real = physics.confirm_blocked
        physics.confirm_blocked = lambda chute, t: False if chute == "C06" else real(chute, t)

    d = drive(cfg, 120, tweak=blind)
    lost = [r for r in d.records if r["outcome"] == "lost"]
    assert lost and all(r["chute"] == "C06" for r in lost)
    assert d.truth["mis_sorted"] == 0  # they did reach C06: only the proof is missing


def test_a_full_chute_sends_parcels_to_its_alternate(cfg):
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"chute_capacity": 2, "chute_empty_s": 30})})
    d = drive(cfg, 120)
    assert d.truth["mis_sorted"] == 0
    manual = [r for r in d.records if r["chute"] == "MANUAL" and r["outcome"] == "sorted"]
    assert manual, "parcels for full chutes should go to the manual chute"


def test_touching_parcels_are_gap_too_small_and_rejected(cfg):
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"min_gap_mm": 15, "rate_pph": 16000})})
    d = drive(cfg, 120, plan=ParcelPlan(cfg, 3))
    small = [r for r in d.records if r["outcome"] == "gap_too_small"]
    assert small
    assert all(r["actual_chute"] == "REJECT" for r in small)
    assert len(d.records) == 120


def test_a_parcel_missed_by_its_confirm_eye_does_not_take_the_next_ones_confirm(cfg):
    # parcels 10..12 all go to one chute; the eye misses parcel 10 only
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"towns": ["泽国镇"], "rate_pph": 12000})})
    missed = 10

    def miss_one(physics):
        land = physics._land

        def _land(p, chute_id, t, err, diverter):
            land(p, chute_id, t, err, diverter)
            if p.index == missed:
                physics.chutes[chute_id].confirms.pop()
        physics._land = _land

    d = drive(cfg, 30, tweak=miss_one)
    lost = [r for r in d.records if r["outcome"] == "lost"]
    assert len(lost) == 1
    by_waybill = {p.waybill: i for i, p in ((i, ParcelPlan(cfg, 1).get(i)) for i in range(30))}
    assert by_waybill[lost[0]["waybill"]] == missed


def test_a_parcel_already_on_the_eye_at_start_is_recorded_as_fault(cfg):
    d = drive(cfg, 5, start_late_s=1.05)  # the first parcel's head passed before tracking began
    assert len(d.records) == 5
    unseen = [r for r in d.records if "head not seen" in r["reason"]]
    assert len(unseen) == 1 and unseen[0]["outcome"] == "fault" and unseen[0]["actual_chute"] == "REJECT"
