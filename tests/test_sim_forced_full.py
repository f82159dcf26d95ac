"""A chute's full input forced on (the chute-full storm drill) is full for the simulated line's own
truth too: the controller rightly sends the chute's parcels elsewhere meanwhile, and the drill must
not count them as parcels in a wrong chute."""

from __future__ import annotations

import time

from sorter.controller.config.load import load_config
from sorter.plc.sim.modbus_server import SimIOModule
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from tests.plc_helpers import line_config


def test_a_forced_full_input_is_full_in_the_truth_until_released(tmp_path):
    cfg = load_config(line_config(tmp_path, failsafe=False))
    chute = next(c for c in cfg.line.chutes if c.full_signal)
    physics = LinePhysics(cfg, ParcelPlan(cfg, 3, rate_pph=3600), time.monotonic(), 50)
    now = [100.0]
    module = SimIOModule(cfg, physics, clock=lambda: now[0])
    module.use(physics, now[0])
    assert not physics.full_between(chute.id, 0, 1e9)
    module.forced[chute.full_signal] = 1
    now[0] = 105.0
    assert module.input_bits(now[0])[chute.full_signal]
    assert physics.full_between(chute.id, 101, 102)  # still forced: open-ended
    module.forced.pop(chute.full_signal)  # released the way the drill's SimForce(None) does
    assert physics.full_between(chute.id, 101, 104)
    assert not physics.full_between(chute.id, 106, 200)
    assert not physics.full_between(chute.id, 0, 99)
