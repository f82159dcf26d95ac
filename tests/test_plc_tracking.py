"""PLC-tracking mode on the simulated line over real Modbus TCP: the simulated line acts as a PLC
that tracks parcels and drives its own diverters; the controller answers "parcel N -> chute K" in
the mailbox and ends each parcel with the PLC's result. Every parcel one record, none mis-sorted;
answers the PLC gets too late send the parcel to reject, and the record says too_late.

The runs in real time assert safety only; how many parcels a loaded machine answers in time is
the bench's business. The same runs, outcome by outcome, are scenarios on a virtual clock
(tests/scenarios/plc_tracking*.yaml)."""

from __future__ import annotations

import collections

import pytest

from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.config.plc import chute_numbers
from tests.plc_helpers import line_config

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

TRACKING = "config/wenling-line1-plc-tracking.yaml"


def _harness_run(cfg, parcels: int, seed: int, timeout: float = 150):
    from sorter.controller.harness import SimHarness
    h = SimHarness(cfg, parcels=parcels, seed=seed)
    try:
        h.start()
        truth = h.run_until_done(timeout)
        status = h.svc.timing_status
    finally:
        h.stop()
    return h.records, truth, status


def test_example_loads_and_numbers_chutes(tmp_path):
    cfg = load_config(line_config(tmp_path, failsafe=False, source=TRACKING))
    assert cfg.plc.mode == "plc_tracking" and cfg.plc.mailbox.result_code == "mb_result_code"
    nums = chute_numbers(cfg)
    assert nums["C01"] == 1 and nums["MANUAL"] == 17 and nums["REJECT"] == 0


def test_mailbox_mistakes_are_refused(tmp_path):
    path = line_config(tmp_path, failsafe=False, source=TRACKING)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    result_ack: mb_result_ack\n",
                                 "    result_ack: mb_result_ack\n    chute_numbers: {C01: 1, C02: 1, C99: 3}\n"),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "two chutes share a number" in msg and "no chute 'C99'" in msg
    path.write_text(text.replace("mb_answer_id: {table: holding_register, address: 205}",
                                 "mb_answer_id: {table: input_register, address: 205}"), encoding="utf-8")
    with pytest.raises(ConfigError, match="plc.mailbox.answer_id"):
        load_config(path)


def test_plc_tracking_sorts_every_parcel_once(tmp_path):
    cfg = load_config(line_config(tmp_path, failsafe=False, source=TRACKING))
    cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"rate_pph": 9000})})
    recs, truth, status = _harness_run(cfg, parcels=30, seed=3)
    outcomes = collections.Counter(r["outcome"] for r in recs)
    assert truth["inducted"] == 30
    assert len(recs) == 30, outcomes                                     # every parcel recorded ...
    assert len({r["parcel_id"] for r in recs}) == 30                       # ... once
    assert truth["wrong_chute"] == 0, truth["mis_sorts"]                   # none in a wrong chute
    assert all(r["reason"] for r in recs if r["outcome"] != "sorted")
    c = status["counters"]
    assert c["plc_posted"] == 30 and c["plc_results"] == 30 and c["answers"] == 30, c
    assert c["plc_missed"] == 0 and c["plc_no_answer"] <= outcomes["too_late"], c
    # the n-th parcel the PLC posted is the n-th of the plan: compare each record with the truth
    by_index = {p["index"]: p for p in truth["parcels"]}
    starved = 0
    for r in recs:
        t = by_index[r["parcel_id"] - 1]
        if r["outcome"] == "sorted":
            assert r["chute"] == r["actual_chute"] == t["got"] == t["want"], (r, t)
        else:
            assert t["got"] == "REJECT", (r, t)
            if t["want"] is not None and t["expected"] == "sorted":
                # a sortable parcel rejected: only when the cameras had not decoded it in time, or
                # the answer was too late for the PLC (a loaded box)
                assert (r["outcome"] == "no_read" and not r["reads"]) or r["outcome"] == "too_late", (r, t)
                starved += 1
    assert outcomes["sorted"] + starved == truth["expected_sorted"], (outcomes, starved, truth["expected_sorted"])
    if outcomes["sorted"]:
        assert truth["fire_error_ms"]["n"] >= outcomes["sorted"]           # the PLC fired the diverters


def _test_mode(cfg, mode: str, **sim):
    plc = cfg.plc.model_copy(update={"test_mode": mode, "test_chute": "C05" if mode == "fixed" else None})
    return cfg.model_copy(update={"plc": plc, "sim": cfg.sim.model_copy(update={"rate_pph": 9000, **sim})})


def test_plc_puts_each_parcel_where_the_pc_answered(tmp_path):
    # round robin: each parcel to the next chute whatever its reads, so every answer is a chute
    cfg = _test_mode(load_config(line_config(tmp_path, failsafe=False, source=TRACKING)), "round_robin")
    recs, truth, status = _harness_run(cfg, parcels=20, seed=6)
    by_index = {p["index"]: p for p in truth["parcels"]}
    assert truth["inducted"] == 20 and len(recs) == 20 and len({r["parcel_id"] for r in recs}) == 20
    outcomes = collections.Counter(r["outcome"] for r in recs)
    for r in recs:  # where the PC answered, in time; otherwise the reject chute, saying why
        got = by_index[r["parcel_id"] - 1]["got"]
        if r["outcome"] == "sorted":
            assert r["chute"] == r["actual_chute"] == got, r
        else:
            assert r["outcome"] in ("too_late", "fault") and r["reason"] and got == "REJECT", (r, got)
    if outcomes["sorted"]:
        # the PLC switches its diverters at exactly the planned moment
        assert truth["fire_error_ms"]["n"] == outcomes["sorted"] and truth["fire_error_ms"]["max"] == 0.0


def test_answers_too_late_for_the_plc_go_to_reject_as_too_late(tmp_path):
    # this PLC wants every answer a minute before the diverter: every answer the PC gives is late
    cfg = _test_mode(load_config(line_config(tmp_path, failsafe=False, source=TRACKING)), "fixed",
                     plc_answer_lead_ms=60_000)
    recs, truth, status = _harness_run(cfg, parcels=12, seed=5)
    outcomes = collections.Counter(r["outcome"] for r in recs)
    assert truth["inducted"] == 12 and len(recs) == 12, outcomes
    assert len({r["parcel_id"] for r in recs}) == 12
    assert all(p["got"] == "REJECT" for p in truth["parcels"]), truth["parcels"]
    assert outcomes["too_late"] == 12, [(r["outcome"], r["reason"]) for r in recs]
    for r in recs:
        assert "no answer" in r["reason"] and r["actual_chute"] == "REJECT" and r["chute"] is None, r
    assert status["counters"]["plc_no_answer"] == 12


def test_plc_link_lost_and_back_every_parcel_one_record(tmp_path):
    import time
    from sorter.controller.harness import SimHarness
    cfg = _test_mode(load_config(line_config(tmp_path, failsafe=False, source=TRACKING)), "round_robin")
    h = SimHarness(cfg, parcels=36, seed=7)
    try:
        h.start()
        time.sleep(6.0)  # ~12 parcels in, several on the belt
        h.outage(1.2)    # parcels are posted while nobody reads the mailbox
        truth = h.run_until_done(120)
        status = h.svc.timing_status
    finally:
        h.stop()
    recs = h.records
    outcomes = collections.Counter(r["outcome"] for r in recs)
    assert truth["inducted"] == 36
    assert len(recs) == 36 and len({r["parcel_id"] for r in recs}) == 36, outcomes   # one record each
    assert outcomes["fault"] >= 1, outcomes                                          # in flight / unseen
    assert all(r["reason"] for r in recs if r["outcome"] != "sorted")
    c = status["counters"]
    assert c["link_losses"] >= 1 and c["plc_missed"] >= 1, c
    # what the records call sorted really is in the chute the PC answered
    assert status["plc"]["connected"] and not any(a["id"] == "plc_link" for a in status["alarms"])  # recovered
    by_index = {p["index"]: p for p in truth["parcels"]}
    sorted_recs = [r for r in recs if r["outcome"] == "sorted"]
    for r in sorted_recs:  # the n-th parcel the PLC posted (seen or missed) is the n-th of the plan
        assert by_index[r["parcel_id"] - 1]["got"] == r["chute"] == r["actual_chute"], r


def test_mailbox_tracker_handshake_without_io(tmp_path):
    """The controller's side of the handshake, fed register values directly (no I/O, no processes)."""
    from sorter.controller.routing.router import RouteDecision
    from sorter.controller.timing.mailbox import MailboxTracker
    cfg = load_config(line_config(tmp_path, failsafe=False, source=TRACKING))
    m = cfg.plc.mailbox
    recs = []
    decide = lambda reads, available=None: RouteDecision("sorted", "C05", "W1", "ZTO", "横峰街道", "ok", "v1")
    tr = MailboxTracker(cfg, decide, recs.append, "unit", wall=lambda: 0.0)
    regs = {n: 0 for n in cfg.io}
    speed = 2000 * cfg.line.encoder_pulses_per_mm  # counts/s at 2 m/s
    t = 100.0

    def poll(dt: float = 0.001):
        nonlocal t
        t += dt
        regs[cfg.line.encoder_signal] = int((t - 100.0) * speed) + 1000
        tr.on_inputs(t, dict(regs))

    def post(pid: int, n: int = 1, length: int = 300):
        regs[m.new_seq] = (regs[m.new_seq] + n) % 65536
        regs[m.new_id] = pid
        regs[m.new_head_count] = regs[cfg.line.encoder_signal] - length * 10
        regs[m.new_length_mm] = length

    def result(pid: int, chute: int, code: int):
        regs[m.result_seq] += 1
        regs[m.result_id], regs[m.result_chute], regs[m.result_code] = pid, chute, code

    for _ in range(50):
        poll()
    post(11)
    poll()
    assert len(tr.parcels) == 1 and tr.parcels[0].plc_id == 11
    for _ in range(1500):   # the tail leaves the scan zone; no camera has reported: decided after the grace
        poll()
        if tr.outputs.answers:
            break
    a = tr.outputs.answers.popleft()
    assert (a.plc_id, a.number) == (11, 5)            # parcel 11 -> chute C05 (number 5)
    tr.answered(a, t)
    post(12)
    poll()
    result(11, 5, 0)
    poll()
    assert tr.ack_due == regs[m.result_seq]          # the loop writes result_ack next
    regs[m.result_ack] = tr.ack_due
    tr.ack_due = None
    assert recs[-1]["outcome"] == "sorted" and recs[-1]["actual_chute"] == "C05" and recs[-1]["chute"] == "C05"
    result(12, 0, 1)                                  # the PLC had no answer for 12 in time
    poll()
    assert recs[-1]["outcome"] == "too_late" and "no answer" in recs[-1]["reason"]
    assert recs[-1]["actual_chute"] == "REJECT" and recs[-1]["chute"] is None
    post(15, n=3)                                     # two posts the controller never saw
    poll()
    assert [r["outcome"] for r in recs[-2:]] == ["fault", "fault"]
    assert tr.counters["plc_missed"] == 2 and tr.parcels[-1].plc_id == 15
    result(99, 3, 0)                                  # a result for a parcel it does not track
    poll()
    assert tr.counters["plc_unknown_results"] == 1 and len(recs) == 4
    assert len({r["parcel_id"] for r in recs}) == 4
