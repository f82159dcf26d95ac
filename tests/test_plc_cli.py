"""`sorter plc probe|watch|pulse` against the simulated line's real Modbus TCP server, and the
`sorter run` test-mode option."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from sorter.controller.cli.plc import add_run_test_args, apply_run_test_args
from sorter.controller.config.load import load_config
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from tests.conftest import ROOT
from tests.plc_helpers import line_config
from tests.test_plc_modbus import ServerThread


@pytest.fixture
def served(tmp_path):
    path = line_config(tmp_path)
    cfg = load_config(path)
    physics = LinePhysics(cfg, ParcelPlan(cfg, 1), time.monotonic() - 0.9, 20)
    srv = ServerThread(cfg, physics)
    yield path, physics, f"tcp://127.0.0.1:{srv.port}"
    srv.stop()


def sorter(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "sorter", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_probe_prints_every_mapped_input(served):
    path, _, url = served
    r = sorter("plc", "probe", "--once", "--config", str(path), "--plc", url)
    assert r.returncode == 0, r.stderr
    for name in ("pe_induct", "C01_confirm", "encoder", "estop_ok", "latch_head_seq", "D1_left"):
        assert name in r.stdout


def test_watch_prints_edges_with_times_and_counts(served):
    path, _, url = served
    r = sorter("plc", "watch", "--seconds", "1.5", "--config", str(path), "--plc", url)
    assert r.returncode == 0, r.stderr
    ons = [l for l in r.stdout.splitlines() if "pe_induct" in l and " on " in l]
    assert ons and all("encoder" in l for l in ons)


def test_pulse_fires_one_diverter(served):
    path, physics, url = served
    r = sorter("plc", "pulse", "--diverter", "D2", "--side", "right", "--ms", "100", "--config", str(path), "--plc", url)
    assert r.returncode == 0, r.stderr
    h = physics.outputs["D2_right"]
    assert len(h.times) == 3 and h.states == [False, True, False]  # on once, then off again
    # it says how long it held the output: never less than the 100 ms asked (a slow machine only
    # makes it longer), and measured from before the switch-on to after the switch-off, so the
    # time the device saw lies inside it (an ordering of events, not a speed)
    on_ms = float(r.stdout.split("on for ")[1].split(" ms")[0])
    device_on_ms = (h.times[2] - h.times[1]) * 1000
    assert on_ms >= 100, on_ms
    assert device_on_ms <= on_ms + 0.1, (on_ms, h.times)  # 0.1: the printed figure's rounding
    r = sorter("plc", "pulse", "--diverter", "D2", "--ms", "5000", "--config", str(path), "--plc", url)
    assert r.returncode == 2 and "max_on_ms" in r.stderr
    r = sorter("plc", "pulse", "--diverter", "D99", "--config", str(path), "--plc", url)
    assert r.returncode == 2


def test_unreachable_plc_is_a_clear_error(tmp_path, free_port):
    path = line_config(tmp_path)
    r = sorter("plc", "probe", "--once", "--config", str(path), "--plc", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot connect" in r.stderr
    r = sorter("plc", "probe", "--once", "--config", str(path), "--plc", "udp://x")
    assert r.returncode == 2 and "--plc" in r.stderr


def test_run_test_mode_option(tmp_path):
    cfg = load_config(line_config(tmp_path, failsafe=False))
    p = argparse.ArgumentParser()
    add_run_test_args(p)
    assert apply_run_test_args(cfg, p.parse_args(["--test-mode", "round-robin"])).plc.test_mode == "round_robin"
    c = apply_run_test_args(cfg, p.parse_args(["--test-mode", "fixed:C03"]))
    assert (c.plc.test_mode, c.plc.test_chute) == ("fixed", "C03")
    with pytest.raises(SystemExit):
        apply_run_test_args(cfg, p.parse_args(["--test-mode", "fixed:C99"]))
