"""The line state machine (controller/timing/line_state.py): only `running` lets parcels in, the
e-stop latches until a person resets it after the input has cleared, a test mode shows with every
state. The loop's use of it runs in the scenarios (estop_holds_safe_state, pause_stops_induction)."""

from __future__ import annotations

from sorter.controller.timing.line_state import STATES, LineState


def machine(**kw) -> LineState:
    kw.setdefault("estop_mapped", True)
    kw.setdefault("run_mapped", False)
    return LineState(wall=lambda: 1000.0, **kw)


def test_booting_until_the_io_is_up_then_running():
    m = machine()
    assert m.state == "booting" and not m.induct_enable and m.tower(False) == "red"
    m.link(True)
    m.estop_input(True)
    assert m.state == "running" and m.induct_enable and m.tower(False) == "green"
    assert m.tower(True) == "amber"  # an active alarm shows on the tower


def test_only_running_enables_induction():
    for state in STATES:
        m = machine(run_mapped=True)
        m.link(True)
        m.estop_input(True)
        m.belt_input(True)
        {"booting": lambda: m.link(False), "ready": lambda: m.belt_input(False), "running": lambda: None,
         "paused": lambda: m.set_paused(True), "faulted": lambda: m.set_config_fault("no routing table"),
         "estop": lambda: m.estop_input(False), "stopping": m.stop}[state]()
        want = "faulted" if state == "booting" else state  # lost after it was up: faulted, not booting
        assert m.state == want, (state, m.state)
        assert m.induct_enable == (state == "running"), state


def test_estop_latches_until_reset_after_release():
    m = machine()
    m.link(True)
    m.estop_input(True)
    assert m.estop_input(False) is True  # it just opened
    assert m.state == "estop" and m.estops == 1
    ok, why = m.reset()
    assert not ok and "still pressed" in why and m.state == "estop"
    m.estop_input(True)
    assert m.state == "estop" and "press reset" in m.reason and not m.induct_enable
    ok, _ = m.reset()
    assert ok and m.state == "running" and m.induct_enable
    assert [h["state"] for h in m.history][-3:] == ["estop", "estop", "running"]


def test_estop_pressed_at_start_latches_too():
    m = machine()
    m.link(True)
    assert m.estop_input(False) is True
    assert m.state == "estop"
    assert m.estop_input(False) is False  # still open: not a new press


def test_estop_wins_over_everything_but_stopping():
    m = machine()
    m.link(True)
    m.estop_input(True)
    m.set_paused(True)
    m.estop_input(False)
    m.link(False, "link lost")
    assert m.state == "estop"
    m.stop()
    assert m.state == "stopping" and not m.induct_enable


def test_pause_resume_and_a_lost_link_come_back_by_themselves():
    m = machine(estop_mapped=False)
    m.link(True)
    m.set_paused(True)
    assert m.state == "paused" and m.tower(False) == "amber"
    m.set_paused(False)
    m.link(False, "link lost: reset by peer")
    assert m.state == "faulted" and m.reason == "link lost: reset by peer" and m.tower(False) == "red"
    m.link(True)
    assert m.state == "running"


def test_a_test_mode_never_shows_plain_green():
    m = machine(estop_mapped=False, test_mode="round_robin")
    m.link(True)
    assert m.state == "running" and m.snapshot()["test_mode"] == "round_robin"
    assert m.tower(False) == "amber"
