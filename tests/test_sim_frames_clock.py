"""The simulated cameras follow the line's clocks: the line process tells every stop, start and
entry (plc/sim/clock_feed.py), the frames process replays them and times its frames from them.

The first tests drive LinePhysics at explicit times (no wall clock) and check the replica, the
triggered schedule and the free-running renderer against the physics; the last runs the real
processes with a pause of induction and an e-stop, and checks the truth and the capture times."""

from __future__ import annotations

import pytest

from sorter.messages import SimLineNews
from sorter.plc.sim.belt_clock import INF
from sorter.plc.sim.belt_frames import BeltRenderer, view_of
from sorter.plc.sim.clock_feed import NEWS_MAX_EVENTS, ClockPublisher, LineClocks
from sorter.plc.sim.frames import TriggeredSchedule
from sorter.plc.sim.modbus_server import SimIOModule
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from tests.conftest import load_line_config

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

T0 = 1000.0
STATE_IO = {
    "io.estop_ok": {"table": "discrete_input", "address": 60},
    "io.induct_enable": {"table": "coil", "address": 43},
    "plc.estop_signal": "estop_ok",
    "plc.induct_enable": "induct_enable",
}


@pytest.fixture
def cfg(config_dir):
    return load_line_config(config_dir, overrides={"sim.rate_pph": 9000, **STATE_IO})


def drive(cfg, n=30, seed=4, events=(), until=40.0, dt=0.005):
    """A line driven at explicit times, with its news published every dt as the line process does:
    events are (run s, "induct"|"estop", on). Returns physics, the replica and the news sent."""
    plan = ParcelPlan(cfg, seed)
    ph = LinePhysics(cfg, plan, T0, n, induct_enabled=False)
    module = SimIOModule(cfg, ph, clock=lambda: T0)
    pub = ClockPublisher(ph)
    clocks = LineClocks(plan, T0, n, cfg.line.induct.position_mm, line_mono=-INF)
    todo = sorted(events)
    news = []
    t = T0
    while t < T0 + until:
        t += dt
        while todo and T0 + todo[0][0] <= t:
            at, what, on = todo.pop(0)
            if what == "induct":
                module.write_coil("induct_enable", on, T0 + at)
            else:
                ph.set_estop(not on, T0 + at)  # estop on = the circuit closed (healthy)
        ph.advance(t)
        msg = pub.news()
        news.append(msg)
        clocks.apply(msg)
    return ph, clocks, news, plan


EVENTS = [(0.2, "induct", True), (3.0, "induct", False), (5.5, "induct", True),
          (8.0, "estop", False), (9.7, "estop", True), (12.0, "induct", False), (12.4, "induct", True)]


def test_the_replica_is_the_physics_bit_for_bit(cfg):
    ph, clocks, news, plan = drive(cfg, events=EVENTS)
    assert ph.next_index == 30 and clocks.entered == ph.entered
    assert clocks.belt.stops() == ph.belt.stops() and clocks.infeed.stops() == ph.infeed.stops()
    assert len(ph.belt.stops()) == 1 and len(ph.infeed.stops()) >= 4
    cam = cfg.cameras[0]
    for i in range(30):
        p = plan.get(i)
        assert clocks.point_time(i, cam.position_mm, p.length_mm / 2) == \
            ph.point_time(i, cam.position_mm, p.length_mm / 2, ph.t)
    # the news never exceed one atomic pipe write, and the watermark only grows
    marks = [m.line_mono for m in news]
    assert marks == sorted(marks) and all(len(m.events) <= NEWS_MAX_EVENTS for m in news)


def test_late_entries_and_a_stopped_belt_move_the_capture(cfg):
    """The camera crossing is the entry (late by the time induction was off) plus the belt's run."""
    ph, clocks, _, plan = drive(cfg, events=EVENTS)
    cam = cfg.cameras[0]
    v, induct = plan.speed_mm_s, cfg.line.induct.position_mm
    (b0, b1), = ph.belt.stops()
    late = 0
    for i in range(30):
        p = plan.get(i)
        t_in = ph.entered[i]
        assert t_in >= T0 + p.head_s + 0.2 - 1e-9  # no parcel before induction was first enabled
        late += t_in > T0 + p.head_s + 0.25
        t_free = t_in + (cam.position_mm - induct + p.length_mm / 2) / v
        t_cap = clocks.point_time(i, cam.position_mm, p.length_mm / 2)
        if t_free <= b0 or t_in >= b1:
            assert t_cap == pytest.approx(t_free, abs=1e-9)
        elif t_in <= b0:  # under way when the belt stopped: late by the stop
            assert t_cap == pytest.approx(t_free + (b1 - b0), abs=1e-9)
    assert late > 10


def test_the_triggered_schedule_waits_while_the_belt_stands_and_its_watermark_is_a_lower_bound(cfg):
    plan = ParcelPlan(cfg, 4)
    induct = cfg.line.induct.position_mm
    ph = LinePhysics(cfg, plan, T0, 10)
    pub = ClockPublisher(ph)
    clocks = LineClocks(plan, T0, 10, induct, line_mono=-INF)
    sched = TriggeredSchedule(cfg.cameras, plan, clocks)
    p0 = plan.get(0)
    cams = sched.cams
    t_planned = T0 + p0.head_s + (cams[0].position_mm - induct + p0.length_mm / 2) / plan.speed_mm_s
    k, i, t_lb = sched.first()
    assert (k, i) == (0, 0) and t_lb == sched.capture_time(0, 0) == t_planned  # nothing stopped: exact
    t_stop = t_planned - 0.05
    ph.set_estop(True, t_stop)
    ph.advance(t_stop + 1.0)
    clocks.apply(pub.news())
    assert sched.capture_time(0, 0) == INF  # standing: nobody knows when
    k, i, t_lb = sched.first()
    assert (k, i) == (0, 0) and t_lb == pytest.approx(t_stop + 1.0 + 0.05)  # if it ran again from now
    ph.set_estop(False, t_stop + 2.0)
    ph.advance(t_stop + 2.01)
    clocks.apply(pub.news())
    t_cap = sched.capture_time(0, 0)
    assert t_cap == pytest.approx(t_stop + 2.05) and t_cap >= t_lb
    assert t_cap == ph.point_time(0, cams[0].position_mm, p0.length_mm / 2, ph.t)


def test_the_triggered_schedule_skips_parcels_the_watchdog_held_back(cfg):
    plan = ParcelPlan(cfg, 4)
    clocks = LineClocks(plan, T0, 5, cfg.line.induct.position_mm)
    from sorter.messages import SimHeld
    clocks.apply(SimLineNews((SimHeld(0), SimHeld(1)), T0))
    sched = TriggeredSchedule(cfg.cameras, plan, clocks)
    assert sched.first()[1] == 2 and clocks.entry(0) == INF


def test_free_running_frames_show_no_parcel_before_it_entered_and_none_moving_while_the_belt_stands(cfg):
    ph, clocks, _, plan = drive(cfg, n=20, events=EVENTS, until=30.0)
    cam = cfg.cameras[0]
    r = BeltRenderer(view_of(cam, cfg.sim), plan, cfg.line.induct.position_mm, 20, seed=3, clocks=clocks)
    (b0, b1), = ph.belt.stops()
    seen_during_stop = {}
    t = T0
    while t < T0 + 30.0:
        t += 0.05
        for p, head in r.in_view(t):
            t_in = ph.entered[p.index]
            assert t_in <= t                            # it has really entered
            assert head == pytest.approx(ph.head_mm(p, t), abs=1e-6)
            if b0 + 0.01 < t < b1:
                seen_during_stop.setdefault(p.index, set()).add(round(head, 6))
    assert seen_during_stop and all(len(h) == 1 for h in seen_during_stop.values())


def test_without_a_line_to_follow_the_renderer_is_the_plan(cfg):
    """The renderer's own tests give run seconds: the plan's line that never stops."""
    plan = ParcelPlan(cfg, 4)
    r = BeltRenderer(view_of(cfg.cameras[0], cfg.sim), plan, cfg.line.induct.position_mm, None, seed=3)
    for t in (1.0, 2.5, 7.25):
        for p, head in r.in_view(t):
            assert head == cfg.line.induct.position_mm + (t - p.head_s) * plan.speed_mm_s


# ---------------------------------------------------------------------------------- real processes
def test_a_paused_and_e_stopped_sim_puts_no_parcel_in_a_wrong_chute_and_frames_follow_the_line(tmp_path):
    import time

    from sorter.controller.config.load import load_config
    from sorter.controller.harness import SimHarness
    from tests.conftest import write_line_config

    cfg = load_config(write_line_config(tmp_path, overrides={"sim.rate_pph": 7200, **STATE_IO}))
    h = SimHarness(cfg, parcels=14, seed=5)
    h.start()
    try:
        time.sleep(2.5)
        h.svc.pause()                   # induction off: parcels wait on the infeed
        time.sleep(2.0)
        h.svc.resume()
        time.sleep(2.0)
        h.force("estop_ok", 0)          # the belt stops with parcels on it
        time.sleep(1.0)
        h.force("estop_ok", None)
        for _ in range(50):             # a person resets once the controller saw the input healthy
            time.sleep(0.2)
            if h.svc.reset("test")[0]:
                break
        truth = h.run_until_done(120)
        h.sim.cameras_report()
        captures = h.sim.camera_captures
    finally:
        h.stop()
    assert truth["infeed_stops"] and truth["belt_stops"], truth
    assert truth["inducted"] == 14, truth
    assert truth["wrong_chute"] == 0, truth["mis_sorts"]
    # each triggered capture is when the parcel's centre really was under the camera: its real entry
    # plus its run on the belt (the belt's stops are in the truth to the millisecond)
    plan = ParcelPlan(cfg, 5, **h.sim.plan_kwargs)
    entered = {p["index"]: p["induct_mono"] for p in truth["parcels"]}
    stops = [(h.t0 + a, h.t0 + b) for a, b in truth["belt_stops"]]
    pos = {c.name: c.position_mm for c in cfg.cameras}
    assert len(captures) == 14 * len(cfg.cameras)
    shifted = 0
    for name, i, t_cap in captures:
        p = plan.get(i)
        travel = (pos[name] - cfg.line.induct.position_mm + p.length_mm / 2) / plan.speed_mm_s
        t = entered[i] + travel
        for a, b in stops:  # a stop between its entry and the crossing delays it by the stop
            if entered[i] < a < t:
                t += b - a
        assert t_cap == pytest.approx(t, abs=0.003), (name, i)
        shifted += t_cap > h.t0 + p.head_s + travel + 0.1
    assert shifted >= 3  # the pause and the stop really moved some captures


# ---------------------------------------------------------------------------------- PLC tracking
def test_the_tracking_plc_posts_real_entries_and_switches_where_the_parcel_is(tmp_path):
    """The simulated tracking PLC posts a parcel when its tail really clears the eye (late after an
    infeed stop), and a window it decided on moves with the belt when the belt stops."""
    from sorter.controller.config.load import load_config
    from sorter.plc.sim.mailbox import attach
    from tests.plc_helpers import line_config

    cfg = load_config(line_config(tmp_path, failsafe=False, source="config/wenling-line1-plc-tracking.yaml"))
    plan = ParcelPlan(cfg, 4)
    module = SimIOModule(cfg, None, clock=lambda: T0)
    ph = attach(module, cfg, plan, T0, 3)
    mb, m = module.mailbox, cfg.plc.mailbox
    v = plan.speed_mm_s
    p0 = plan.get(0)
    ph.set_induct_enable(False, T0 + p0.head_s - 0.5)  # induction off before the first parcel
    ph.set_induct_enable(True, T0 + p0.head_s + 1.5)   # ... for 2 s: it enters 2 s late
    ph.advance(T0 + p0.head_s + 2.001)
    t_in = ph.entered[0]
    assert t_in == pytest.approx(T0 + p0.head_s + 2.0)
    t_tail = t_in + p0.length_mm / v
    assert mb.value(m.new_seq, t_tail - 0.001) == 0   # not before its tail really clears the eye
    assert mb.value(m.new_seq, t_tail + 0.001) == 1 and mb.value(m.new_id, t_tail + 0.001) == 1
    assert mb.value(m.new_head_count, t_tail + 0.001) == ph.encoder(t_in)
    # the PC answers a chute on a diverter; then the belt stops before the parcel gets there
    chute = next(c for c in cfg.line.chutes if c.diverter)
    d = cfg.diverter(chute.diverter)
    number = mb.numbers[chute.id]
    mb.written(m.answer_chute, number, t_tail + 0.002)
    mb.written(m.answer_id, 1, t_tail + 0.002)
    assert mb.counts["answers"] == 1
    on_planned = ph.point_time(0, d.position_mm - d.lead_mm, 0.0, ph.t) - d.actuation_ms / 1000
    t_stop = (t_tail + on_planned) / 2
    ph.set_estop(True, t_stop)
    ph.set_estop(False, t_stop + 3.0)
    ph.advance(on_planned + 3.1)
    sig = d.outputs[chute.side]
    assert not ph.outputs[sig].at(on_planned + 0.01)             # not where the plan had it ...
    assert ph.outputs[sig].at(on_planned + 3.0 + 0.001)           # ... but where the parcel is
    ph.advance(on_planned + 20.0)
    assert ph.fates[0].chute == chute.id
