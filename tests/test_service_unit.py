"""The systemd unit and what `sorter run` tells systemd.

- `systemd/sorter.service` passes `systemd-analyze verify` (no warning either: a misspelt key is
  only a warning there), and has the settings the service depends on.
- `sorter run` on the simulated line's I/O module (a real Modbus TCP server in this process), as
  a subprocess with a NOTIFY_SOCKET this test binds: READY=1 arrives once the I/O is up and the
  camera is open, STATUS= lines with the line state, WATCHDOG=1 while the timing loop runs; the
  timing process stopped (SIGSTOP) stops the pings, SIGCONT brings them back; SIGTERM sends
  STOPPING=1 and leaves no process behind. Its INFO lines are in the journal's format when its
  stderr is the journal stream (JOURNAL_STREAM).
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sorter.controller.config.load import load_config
from sorter.controller.service.notify import Notifier, watchdog_interval_s
from sorter.controller.service.watchdog import Pulse
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from sorter.vision.labels import LabelSpec, render_frame, render_label
from tests.conftest import ROOT, _free_port, write_line_config
from tests.test_plc_modbus import ServerThread
from tests.test_processes import descendants, kill_and_check, status, wait_for

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

UNIT = ROOT / "systemd" / "sorter.service"
SORTER_BIN = Path(sys.executable).parent / "sorter"


def unit_settings(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string(text)
    return cp


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=unit.parent)


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing (scripts/setup.sh test installs systemd)")


@needs_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    # the unit as installed, with ExecStart pointing at this virtualenv's `sorter` (verify checks it exists)
    text = UNIT.read_text(encoding="utf-8").replace("/opt/sorter/venv/bin/sorter", str(SORTER_BIN))
    unit = tmp_path / "sorter.service"
    unit.write_text(text, encoding="utf-8")
    r = verify(unit)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


@needs_analyze
def test_verify_catches_a_misspelt_key(tmp_path):
    """The check above is worth something: a typo is reported (as a warning, on stderr)."""
    text = UNIT.read_text(encoding="utf-8").replace("/opt/sorter/venv/bin/sorter", str(SORTER_BIN))
    unit = tmp_path / "sorter.service"
    unit.write_text(text.replace("WatchdogSec=", "WatchdogSecs="), encoding="utf-8")
    r = verify(unit)
    assert "Unknown key" in r.stderr and "WatchdogSecs" in r.stderr


def test_the_unit_has_what_the_service_depends_on():
    s = unit_settings(UNIT.read_text(encoding="utf-8"))["Service"]
    assert s["Type"] == "notify" and s["Restart"] == "on-failure" and s["StateDirectory"] == "sorter"
    assert int(s["WatchdogSec"]) >= 10
    assert set(s["SupplementaryGroups"].split()) == {"dialout", "video"}
    assert s["ProtectSystem"] == "strict" and s["ProtectHome"] == "yes" and s["PrivateTmp"] == "yes"
    assert s["NoNewPrivileges"] == "yes"
    assert "CAP_SYS_NICE" in s["AmbientCapabilities"] and int(s["LimitRTPRIO"]) > 20  # the timing process's FIFO 20
    assert s["ExecStart"].startswith("/opt/sorter/venv/bin/sorter run --config /etc/sorter/")
    assert s["EnvironmentFile"] == "-/etc/sorter/env" and s["WorkingDirectory"] == "/var/lib/sorter"


# ------------------------------------------------------------------ the protocol, unit level

def test_pulse_pings_only_after_progress_and_says_ready_once():
    t = [0.0]
    p = Pulse(watchdog_s=6, clock=lambda: t[0])
    assert p.step(0, False, "booting") == ["STATUS=booting"]
    t[0] = 1
    assert p.step(1, False, "booting") == ["EXTEND_TIMEOUT_USEC=30000000", "WATCHDOG=1"]
    t[0] = 2
    assert p.step(2, True, "running") == ["READY=1", "STATUS=running", "WATCHDOG=1"]
    t[0] = 2.5
    assert p.step(3, True, "running") == []        # at most one ping per min_ping_s
    t[0] = 3.6
    assert p.step(3, True, "running") == ["WATCHDOG=1"]  # the progress of 2.5 is still owed a ping
    t[0] = 10
    assert p.step(3, True, "running") == []        # no progress: no ping, whatever the time
    assert p.step(3, True, "faulted: link lost") == ["STATUS=faulted: link lost"]


def test_notifier_speaks_the_socket_protocol(tmp_path):
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        n = Notifier(path)
        assert n.ready("running\nsecond line") and n.watchdog()
        assert s.recv(4096) == b"READY=1\nSTATUS=running second line"
        assert s.recv(4096) == b"WATCHDOG=1"
        n.close()
    assert not Notifier("").enabled and not Notifier("").watchdog()
    assert Notifier(str(tmp_path / "nobody.sock")).watchdog() is False  # logged, never raised
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000"}) == 20
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert watchdog_interval_s({}) is None


# ------------------------------------------------------------------ `sorter run` under a test NOTIFY_SOCKET

class NotifyListener:
    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().split("\n"):
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str, since: float = 0.0) -> list[str]:
        return [m for t, m in list(self.messages) if m.startswith(prefix) and t >= since]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def camera_folder(tmp_path: Path) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(frames / "0001.png"), render_frame(render_label(LabelSpec("SF1234567890123"), rng), rng))
    return frames


@pytest.fixture
def sim_io(tmp_path):
    """The simulated line's I/O module on a free port, and a line config that points at it."""
    path = write_line_config(tmp_path / "config", overrides={
        # a folder replayed again and again: the camera stays open (a folder played once ends)
        "cameras": [{"name": "top", "source": f"{camera_folder(tmp_path)}?fps=2&loop=1", "position_mm": 1100}]})
    cfg = load_config(path)
    physics = LinePhysics(cfg, ParcelPlan(cfg, 1), time.monotonic(), 20)
    srv = ServerThread(cfg, physics)
    text = path.read_text(encoding="utf-8").replace("tcp://127.0.0.1:1502", f"tcp://127.0.0.1:{srv.port}")
    path.write_text(text, encoding="utf-8")
    yield path
    srv.stop()


def start_run(tmp_path: Path, cfg: Path, port: int, env: dict) -> subprocess.Popen:
    log = open(tmp_path / "sorter.log", "w")
    st = os.fstat(log.fileno())
    env = dict(os.environ, **env, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")  # stderr is "the journal"
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "sorter", "run", "--config", str(cfg), "--port", str(port),
                             "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
                            start_new_session=True)


def test_sorter_run_notifies_ready_status_and_a_watchdog_fed_by_the_timing_loop(tmp_path, sim_io):
    listener = NotifyListener(tmp_path / "notify.sock")
    port = _free_port()
    proc = start_run(tmp_path, sim_io, port, {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                              "WATCHDOG_USEC": "6000000"})
    stopped_pid = None
    try:
        wait_for(lambda: listener.lines("READY=1"), 120, "READY=1 from sorter run")
        st = status(port)
        # READY means the line's I/O is up and the camera open, and the page is up already
        assert st["line"]["plc"]["connected"] and all(c["alive"] for c in st["cameras"]), st
        assert st["retention"]["records_days"] == 400 and st["retention"]["next_wall"] > time.time()
        states = {"booting", "ready", "running", "paused", "faulted", "estop", "stopping"}
        assert any(m[7:].split(":")[0].split(" ")[0] in states for m in listener.lines("STATUS="))
        t_ready = time.monotonic()
        wait_for(lambda: len(listener.lines("WATCHDOG=1", t_ready)) >= 3, 30, "watchdog pings after READY")

        # the timing loop stalls: the pings stop, though the service process itself runs on
        stopped_pid = st["line"]["timing_pid"]
        assert stopped_pid in descendants(proc.pid)
        os.kill(stopped_pid, signal.SIGSTOP)
        t_sigstop = time.monotonic()

        def quiet_for(s: float) -> bool:  # no ping for s seconds (they come every second while it runs)
            last = max([t for t, m in list(listener.messages) if m == "WATCHDOG=1"], default=0.0)
            return time.monotonic() - max(last, t_sigstop) >= s

        # its last status messages (in the pipe at the SIGSTOP) are read and earn a last ping; then none
        wait_for(lambda: quiet_for(3), 60, "the pings to stop after SIGSTOP of the timing process")
        t_stall = time.monotonic()
        time.sleep(3)
        assert not listener.lines("WATCHDOG=1", t_stall), "pings went on while the timing loop was stopped"
        assert status(port) is not None  # the service and its page are alive: only the loop is stuck

        os.kill(stopped_pid, signal.SIGCONT)
        stopped_pid, t_cont = None, time.monotonic()
        wait_for(lambda: listener.lines("WATCHDOG=1", t_cont), 30, "pings once the loop runs again")
    except BaseException:
        if stopped_pid is not None:
            os.kill(stopped_pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the children go with it
        proc.wait(10)
        raise
    kill_and_check(proc, signal.SIGTERM, 30, 2, tmp_path)  # the timing process and the camera worker
    listener.close()
    assert listener.lines("STOPPING=1")
    journal = (tmp_path / "sorter.log").read_text(encoding="utf-8")
    # INFO lines, from the service process and from the timing process, in the journal's format
    # (no timestamp of our own: the journal stamps every line)
    assert any(l.startswith("sorter: INFO ") and "ready: the line's I/O is up" in l for l in journal.splitlines()), journal
    assert any(" INFO " in l and "connected to the line's I/O" in l and not l[:1].isdigit()
               for l in journal.splitlines()), journal


def test_status_text_says_the_state_why_the_counts_and_what_is_down():
    from types import SimpleNamespace

    from sorter.controller.service.camera_health import CameraHealth
    from sorter.controller.service.stats import LineStats
    from sorter.controller.service.watchdog import status_text
    from tests.test_records import rec
    stats = LineStats()
    for i in range(3):
        stats.add(rec(i, outcome="sorted" if i else "no_read"))
    cams = {"top": CameraHealth("top"), "side": CameraHealth("side")}
    cams["top"].up = True
    svc = SimpleNamespace(timing_status={"line": {"state": "faulted", "reason": "link lost: reset by peer"}},
                          cameras=cams, status=lambda: {"counts": stats.snapshot()["counts"],
                                                        "alarms": [{"code": "plc_link"}, {"code": "camera_side"}]})
    assert status_text(svc) == "faulted: link lost: reset by peer · 3 parcels, 2 sorted · cameras down: side · 2 alarms"
    svc.timing_status = {"line": {"state": "running", "reason": "", "test_mode": "fixed:C05"}}
    cams["side"].up = True
    assert status_text(svc).startswith("running · TEST MODE fixed:C05 · 3 parcels")
