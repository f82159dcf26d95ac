"""The simulated line's line-state signals, on LinePhysics and SimIOModule at explicit times: the
induct_enable coil and the infeed clock, the e-stop stopping the belt (and its encoder, its
parcels, its diverters), the run input, the watchdog, and the truth report's accounting. No wall
clock: every time is given."""

from __future__ import annotations

import pytest

from sorter.plc.sim.belt_clock import INF, RunClock
from sorter.plc.sim.line import SimLine
from sorter.plc.sim.modbus_server import SimIOModule
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from tests.conftest import load_line_config
from tests.virtual_line import ListPlan

T0 = 1000.0
STATE_IO = {
    "io.estop_ok": {"table": "discrete_input", "address": 60},
    "io.belt_running": {"table": "discrete_input", "address": 61},
    "io.induct_enable": {"table": "coil", "address": 43},
    "io.heartbeat": {"table": "holding_register", "address": 100},
    "plc.estop_signal": "estop_ok",
    "plc.run_signal": "belt_running",
    "plc.induct_enable": "induct_enable",
    "plc.heartbeat": {"signal": "heartbeat", "period_ms": 20},
    "sim.watchdog_ms": 60,
}


@pytest.fixture
def cfg(config_dir):
    return load_line_config(config_dir, overrides={"sim.rate_pph": 9000, **STATE_IO})


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def step_through(ph: LinePhysics, t_from: float, t_to: float, dt: float = 0.001):
    """Advance as a poller would; yields each sample time."""
    t = t_from
    while t < t_to:
        t = min(t + dt, t_to)
        ph.advance(t)
        yield t


def centre_at(cfg, p, at_mm: float) -> float:
    """The old constant-speed formula: run seconds when the parcel's centre is at at_mm."""
    return p.head_s + (at_mm - cfg.line.induct.position_mm + p.length_mm / 2) / (cfg.line.belt_speed_mps * 1000)


# ---------------------------------------------------------------------------------- the clock
def test_run_clock_stands_still_while_stopped():
    c = RunClock(10.0)
    assert c.after(10.5, 1.0) == 11.5 and c.run_s(12.0) == 2.0
    c.stop(12.0)
    assert c.run_s(13.0) == 2.0
    assert c.after(11.0, 0.5) == 11.5            # reached before the stop: exact
    assert c.after(11.0, 2.0) == INF             # beyond a stop still going on: unknown
    assert c.after(11.0, 2.0, resume_at=13.0) == 14.0
    c.start(14.0)
    assert c.run_s(15.0) == pytest.approx(3.0)
    assert c.after(11.0, 2.0) == pytest.approx(15.0)
    assert c.mono_at(2.0) == 12.0 and c.mono_at(2.5) == pytest.approx(14.5)
    assert c.stops() == [(12.0, 14.0)]


# ---------------------------------------------------------------------------------- no events
def test_a_run_without_events_is_the_constant_speed_line(cfg):
    """Fates, the encoder and the latch exactly as the old formulas say (t0 + head_s + d / v)."""
    plan = ParcelPlan(cfg, 3)
    ph = LinePhysics(cfg, plan, T0, 30)
    v, ppmm, d2 = plan.speed_mm_s, cfg.line.encoder_pulses_per_mm, cfg.diverter("D2")
    # every third parcel into D2's left chute: the output on around its centre's crossing
    for i in range(0, 30, 3):
        p = plan.get(i)
        t_c = T0 + centre_at(cfg, p, d2.position_mm)
        ph.write_output("D2_left", True, t_c - 0.1)
        ph.write_output("D2_left", False, t_c + 0.05)
    for t in step_through(ph, T0, T0 + plan.get(29).head_s + 8.0, 0.0007):
        assert ph.encoder(t) == (cfg.sim.encoder_start + int((t - T0) * v * ppmm)) % 2**32
    assert ph.next_index == 30 and not ph.on_belt and len(ph.fates) == 30
    d2_left = next(c.id for c in cfg.line.chutes if c.diverter == "D2" and c.side == "left")
    for i in range(30):
        p, f = plan.get(i), ph.fates[i]
        assert ph.entered[i] == T0 + p.head_s
        if i % 3 == 0:
            assert (f.chute, f.t_mono) == (d2_left, T0 + p.head_s + (d2.position_mm - 0 + p.length_mm / 2) / v)
        else:
            assert (f.chute, f.t_mono) == ("REJECT", T0 + p.head_s + (cfg.line.end_mm - 0 + 0.0) / v)
    last = plan.get(29)
    assert ph.head_latch == (cfg.sim.encoder_start + int(((T0 + last.head_s) - T0) * v * ppmm)) % 2**32
    t_tail = T0 + last.head_s + last.length_mm / v
    assert ph.tail_latch == (cfg.sim.encoder_start + int((t_tail - T0) * v * ppmm)) % 2**32
    assert ph.head_seq == ph.tail_seq == 30


# ---------------------------------------------------------------------------------- induction
def test_no_parcel_enters_while_induction_is_disabled_and_spacing_is_kept_after(cfg):
    plan = ParcelPlan(cfg, 4)
    clock = Clock()
    ph = LinePhysics(cfg, plan, T0, 40, induct_enabled=cfg.plc.induct_enable is None)
    module = SimIOModule(cfg, ph, clock=clock)
    assert not module.induct_enabled() and not ph.infeed.running
    for t in step_through(ph, T0, T0 + 5.0):
        assert not module.input_bits(t)["pe_induct"]
    assert ph.next_index == 0 and ph.waiting(T0 + 5.0) > 5  # due, waiting on the infeed
    module.write_coil("induct_enable", True, T0 + 5.0)       # the controller enables induction
    list(step_through(ph, T0 + 5.0, T0 + 8.0))
    module.write_coil("induct_enable", False, T0 + 8.0)      # ... pauses it for 2 s
    list(step_through(ph, T0 + 8.0, T0 + 10.0))
    n_before = ph.next_index
    assert all(ph.entered[i] <= T0 + 8.0 for i in range(n_before))
    module.write_coil("induct_enable", True, T0 + 10.0)
    list(step_through(ph, T0 + 10.0, T0 + 30.0))
    assert ph.next_index == 40
    for i in range(40):
        shift = 5.0 if i < n_before else 7.0  # the time induction was off before it came
        assert ph.entered[i] == pytest.approx(T0 + plan.get(i).head_s + shift, abs=1e-9)
    assert module.bit_value("induct_enable", T0 + 30.0)      # reads back as written


def test_a_bare_module_nobody_enables_inducts_as_before(cfg):
    ph = LinePhysics(cfg, ParcelPlan(cfg, 4), T0, 5)          # the default: on (driver and CLI tests)
    ph.advance(T0 + 1.0)
    assert ph.next_index == 1


# ---------------------------------------------------------------------------------- e-stop
def test_estop_stops_belt_encoder_and_parcels_and_they_resume_where_they_stopped(cfg):
    plan = ParcelPlan(cfg, 5)
    clock = Clock()
    ph = LinePhysics(cfg, plan, T0, 20)
    module = SimIOModule(cfg, ph, clock=clock)
    t_stop, stop_s = T0 + 4.0, 1.5
    list(step_through(ph, T0, t_stop - 0.0005))
    clock.t = t_stop
    module.forced["estop_ok"] = 0                             # the e-stop circuit opens
    on_belt = {c.p.index: c for c in ph.on_belt}
    assert on_belt
    bits = module.input_bits(t_stop + 0.001)
    assert bits["estop_ok"] is False and bits["belt_running"] is False
    heads = {i: ph.head_mm(c.p, t_stop) for i, c in on_belt.items()}
    enc = ph.encoder(t_stop)
    n_in, latch = ph.next_index, (ph.head_seq, ph.tail_seq)
    for t in step_through(ph, t_stop + 0.001, t_stop + stop_s):
        assert ph.encoder(t) == enc
        assert not module.input_bits(t)["belt_running"]
        assert {i: ph.head_mm(c.p, t) for i, c in on_belt.items()} == heads
    assert ph.next_index == n_in and (ph.head_seq, ph.tail_seq) == latch  # nothing entered, no eye edge
    assert not (set(ph.fates) & set(on_belt))                 # nothing landed while stopped
    clock.t = t_stop + stop_s
    module.forced.pop("estop_ok")                             # the circuit closes: the belt runs again
    assert module.input_bits(t_stop + stop_s + 0.001)["belt_running"] is True
    list(step_through(ph, t_stop + stop_s + 0.001, T0 + 30.0))
    assert ph.encoder(T0 + 30.0) == cfg.sim.encoder_start + int((30.0 - stop_s) * plan.speed_mm_s * 10)
    v = plan.speed_mm_s
    for i in range(20):
        p, f = plan.get(i), ph.fates[i]
        end = T0 + p.head_s + cfg.line.end_mm / v
        # parcels on the belt land late by the stop; those still on the infeed enter late by it too
        assert f.t_mono == pytest.approx(end + (stop_s if end > t_stop else 0.0), abs=1e-9), i
    assert ph.belt.stops() == [(t_stop, t_stop + stop_s)]
    assert ph.infeed.stops() == [(t_stop, t_stop + stop_s)]


def test_run_input_can_still_be_forced(cfg):
    ph = LinePhysics(cfg, ParcelPlan(cfg, 5), T0, 5)
    module = SimIOModule(cfg, ph, clock=Clock())
    assert module.input_bits(T0 + 0.1)["belt_running"] is True
    module.forced["belt_running"] = 0                         # a broken run contact: the belt runs on
    assert module.input_bits(T0 + 0.2)["belt_running"] is False and ph.belt_running
    assert ph.encoder(T0 + 0.3) > ph.encoder(T0 + 0.2)


def _one_parcel_line(cfg):
    plan = ListPlan(cfg, 1, [{"length_mm": 300}, {"length_mm": 300, "gap_mm": 1500}])
    ph = LinePhysics(cfg, plan, T0, 2)
    d1 = min(cfg.line.diverters, key=lambda d: d.position_mm)
    chute = next(c.id for c in cfg.line.chutes if c.diverter == d1.name and c.side == "left")
    return plan, ph, d1, chute


def test_a_diverter_acts_on_nothing_while_the_belt_stands(cfg):
    """The belt stops with parcel 0's centre 20 mm short of D1; D1_left goes on during the stop and
    off again before the belt runs: parcel 0 passes D1 (the diverter had nothing under it)."""
    plan, ph, d1, chute = _one_parcel_line(cfg)
    t_c = T0 + centre_at(cfg, plan.get(0), d1.position_mm)
    t_stop = t_c - 0.01
    list(step_through(ph, T0, t_stop))
    ph.set_estop(True, t_stop)
    ph.write_output("D1_left", True, t_stop + 0.1)
    ph.write_output("D1_left", False, t_stop + 0.5)
    list(step_through(ph, t_stop, t_stop + 1.0))
    ph.set_estop(False, t_stop + 1.0)
    list(step_through(ph, t_stop + 1.0, T0 + 20.0))
    assert ph.fates[0].chute == "REJECT"
    assert ph.chutes[chute].count == 0


def test_a_parcel_diverted_before_the_stop_is_diverted_once_and_the_next_one_at_its_real_crossing(cfg):
    """D1_left on for parcel 0, which crosses D1 just before the e-stop; the output stays on through
    the stop: parcel 0 lands once; parcel 1 (upstream, stopped too) meets D1 only after the belt runs
    again, at its real crossing, which the constant-speed formula puts during the stop."""
    plan, ph, d1, chute = _one_parcel_line(cfg)
    t_c0 = T0 + centre_at(cfg, plan.get(0), d1.position_mm)
    t_c1 = T0 + centre_at(cfg, plan.get(1), d1.position_mm)
    ph.write_output("D1_left", True, t_c0 - 0.1)
    t_stop, stop_s = t_c0 + 0.005, 2.0
    assert t_c1 < t_stop + stop_s  # at constant speed parcel 1 would cross during the stop
    list(step_through(ph, T0, t_stop))
    assert ph.fates[0].chute == chute and ph.fates[0].t_mono == t_c0
    ph.set_estop(True, t_stop)
    list(step_through(ph, t_stop, t_stop + stop_s))
    assert 1 not in ph.fates
    ph.set_estop(False, t_stop + stop_s)
    list(step_through(ph, t_stop + stop_s, T0 + 20.0))
    assert ph.chutes[chute].count == 2 and len(ph.chutes[chute].confirms) <= 2
    assert ph.fates[0].t_mono == t_c0                          # not touched again
    assert ph.fates[1].chute == chute
    assert ph.fates[1].t_mono == pytest.approx(t_c1 + stop_s, abs=1e-9)


def test_an_estop_posted_from_another_thread_takes_effect_at_its_time(cfg):
    ph = LinePhysics(cfg, ParcelPlan(cfg, 5), T0, 5)
    ph.advance(T0 + 1.0)
    ph.post_estop(True, T0 + 1.2)                              # nothing happens until the next advance
    assert ph.belt_running
    ph.advance(T0 + 1.5)
    assert not ph.belt_running and ph.belt.stops() == [(T0 + 1.2, None)]
    assert ph.encoder(T0 + 1.5) == ph.encoder(T0 + 1.2)


# ---------------------------------------------------------------------------------- watchdog
def test_parcels_due_while_the_watchdog_is_tripped_are_held_back_and_the_rest_keep_their_times(cfg):
    """The watchdog does not shift anyone (the camera frame process places parcels by the plan):
    parcels due while it is tripped never enter, the others enter exactly as planned."""
    plan = ParcelPlan(cfg, 6)
    ph = LinePhysics(cfg, plan, T0, 30)

    def beat(t_from, t_to):
        for t in step_through(ph, t_from, t_to, 0.02):
            ph.heartbeat(t)
    beat(T0, T0 + 3.0)                                         # the last heartbeat at 3.0 s
    list(step_through(ph, T0 + 3.0, T0 + 6.0))
    t_trip = ph.hb_last + cfg.sim.watchdog_ms / 1000
    assert ph.trips == [(t_trip, None)] and ph.infeed.running and ph.belt_running
    beat(T0 + 6.0, T0 + 30.0)                                  # the controller is back
    assert ph.trips == [(t_trip, T0 + 6.02)]
    assert ph.next_index == 30 and ph.waiting(T0 + 30.0) == 0
    due_tripped = {i for i in range(30) if t_trip <= T0 + plan.get(i).head_s < T0 + 6.02}
    assert due_tripped and ph.held == due_tripped
    for i in set(range(30)) - due_tripped:
        assert ph.entered[i] == T0 + plan.get(i).head_s
    assert ph.point_time(min(due_tripped), 1100.0, 0.0, T0 + 30.0) == INF  # no camera ever sees it


# ---------------------------------------------------------------------------------- the report
def test_the_truth_report_accounts_for_every_planned_parcel(cfg, tmp_path):
    sim = SimLine(cfg, 7, 25, ParcelPlan(cfg, 7), inbox=tmp_path / "inbox")
    sim.module.clock = Clock()
    sim.module.write_coil("induct_enable", True, T0 - 1.0)     # the controller enabled it before the start
    sim.start(T0)
    ph = sim.physics
    assert ph.infeed.running
    list(step_through(ph, T0, T0 + 4.0))
    sim.module.write_coil("induct_enable", False, T0 + 4.0)    # paused for good
    list(step_through(ph, T0 + 4.0, T0 + 30.0, 0.003))
    r = sim.report()
    assert r["inducted"] == ph.next_index > 0
    assert r["inducted"] + r["waiting"] == 25 and r["waiting"] > 0 and r["held"] == 0
    assert r["landed"] == r["inducted"] and r["on_belt"] == 0
    assert r["infeed_stops"] == [(4.0, None)] and r["belt_stops"] == []
    assert [p["induct_mono"] for p in r["parcels"]] == [ph.entered[i] for i in range(ph.next_index)]


def test_heartbeats_before_the_run_starts_do_not_trip_the_watchdog_or_delay_induction(cfg):
    """The run's t0 may lie a little ahead of the first heartbeats (the harness sets it so)."""
    ph = LinePhysics(cfg, ParcelPlan(cfg, 6), T0, 5)
    for k in range(30):
        ph.heartbeat(T0 - 0.3 + k * 0.01)
    ph.heartbeat(T0 + 0.01)
    ph.advance(T0 + 0.02)
    assert ph.trips == [] and ph.infeed.stops() == []
    for k in range(3, 60):
        ph.heartbeat(T0 + k * 0.02)
    assert ph.entered[0] == T0 + ph.plan.get(0).head_s
