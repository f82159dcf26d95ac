"""Processes we start, we stop: `kill -TERM` of `sorter sim` or `sorter run` stops every child with
it (within 10 s), and `kill -KILL` of the parent leaves none behind either (within 5 s): each child
asked Linux for a death signal. A port in use is one clear line, not a traceback.

The children are looked up in /proc while the parent runs, then checked by PID after the kill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from sorter.vision.labels import LabelSpec, render_frame, render_label
from tests.conftest import _children, _free_port, write_line_config

pytestmark = [pytest.mark.line, pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")]


def descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        for k in _children(todo.pop()):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended: only its exit status is left


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def config_copy(tmp_path: Path, overrides: dict | None = None) -> Path:
    return write_line_config(tmp_path / "config", overrides=overrides)


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    log = open(tmp_path / "sorter.log", "w")
    return subprocess.Popen([sys.executable, "-m", "sorter", *args], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path, start_new_session=True)


def kill_and_check(proc: subprocess.Popen, sig: int, within: float, expect_children: int, tmp_path: Path) -> None:
    kids = wait_for(lambda: len(k := descendants(proc.pid)) >= expect_children and k,
                    60, f"{expect_children} child processes of pid {proc.pid}")
    os.kill(proc.pid, sig)
    end = time.monotonic() + within
    while time.monotonic() < end and (proc.poll() is None or any(alive(k) for k in kids)):
        time.sleep(0.1)
    left = [k for k in kids if alive(k)]
    parent_left = proc.poll() is None
    for k in left:
        os.kill(k, signal.SIGKILL)
    if parent_left:
        proc.kill()
    proc.wait(5)
    assert not left and not parent_left, (
        f"after {signal.Signals(sig).name} of pid {proc.pid} (children {sorted(kids)}): still running "
        f"{'the parent and ' if parent_left else ''}{left}\n" + (tmp_path / "sorter.log").read_text()[-3000:])


# SIGTERM first drains the belt (plc.drain_s, 10 s at most), then stops every child
@pytest.mark.parametrize("sig, within", [(signal.SIGTERM, 25), (signal.SIGKILL, 5)])
def test_sorter_sim_leaves_no_process_behind(tmp_path, sig, within):
    port = _free_port()
    cfg = config_copy(tmp_path)
    proc = start(["sim", "--config", str(cfg), "--port", str(port), "--modbus-port", "0", "--host", "127.0.0.1"],
                 tmp_path)
    # the page answers once every part has started: sim line, sim cameras, timing process, camera worker
    wait_for(lambda: status(port), 90, "the status page")
    kill_and_check(proc, sig, within, 4, tmp_path)


def test_sorter_sim_says_which_port_is_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = config_copy(tmp_path)
        r = subprocess.run([sys.executable, "-m", "sorter", "sim", "--config", str(cfg), "--parcels", "5",
                            "--modbus-port", str(port)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "--modbus-port" in last and "sim.modbus_port" in last, r.stderr


def _run_config(tmp_path: Path) -> Path:
    """A line with its I/O at an address where nothing answers, and a camera replaying a folder."""
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(frames / "0001.png"), render_frame(render_label(LabelSpec("SF1234567890123"), rng), rng))
    return config_copy(tmp_path, {"plc.url": f"tcp://127.0.0.1:{_free_port()}",
                                  "cameras": [{"name": "top", "source": str(frames), "position_mm": 1100}]})


@pytest.mark.parametrize("sig, within", [(signal.SIGTERM, 10), (signal.SIGKILL, 5)])
def test_sorter_run_leaves_no_process_behind(tmp_path, sig, within):
    port = _free_port()
    cfg = _run_config(tmp_path)
    proc = start(["run", "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1"], tmp_path)
    wait_for(lambda: status(port), 90, "the status page")
    kill_and_check(proc, sig, within, 2, tmp_path)  # the timing process and the camera worker
