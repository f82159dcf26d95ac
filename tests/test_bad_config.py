"""`sorter run` with a config it refuses: nothing is driven (no timing process, no camera worker),
the status page says what is wrong and where (file:line), systemd is told (READY, a STATUS saying
why, watchdog pings: a refused config is not a crash loop); once the file is repaired the line
starts by itself. A busy API port is one line, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sorter.controller.api.refused import parse_problem
from tests.conftest import _free_port, write_line_config
from tests.test_processes import descendants, kill_and_check, status, wait_for
from tests.test_service_unit import NotifyListener

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")


def page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def good_config(tmp_path: Path) -> Path:
    # I/O where nothing answers (the line stays faulted, but runs), no camera
    return write_line_config(tmp_path / "config", overrides={"plc.url": f"tcp://127.0.0.1:{_free_port()}",
                                                             "cameras": []})


def break_it(path: Path) -> tuple[str, int]:
    """A belt speed out of bounds; returns (the good text, the line of the mistake)."""
    good = path.read_text(encoding="utf-8")
    lines = good.splitlines()
    n = next(i for i, l in enumerate(lines) if l.lstrip().startswith("belt_speed_mps:"))
    lines[n] = lines[n].split(":")[0] + ": 99"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return good, n + 1


def start(tmp_path: Path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    log = open(tmp_path / "sorter.log", "w")
    return subprocess.Popen([sys.executable, "-m", "sorter", *args], stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp_path, env=dict(os.environ, **(env or {})), start_new_session=True)


def test_a_refused_config_serves_the_error_drives_nothing_and_starts_once_repaired(tmp_path):
    cfg = good_config(tmp_path)
    good, line_no = break_it(cfg)
    listener = NotifyListener(tmp_path / "notify.sock")
    port = _free_port()
    proc = start(tmp_path, ["run", "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1"],
                 {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "4000000"})
    try:
        st = wait_for(lambda: status(port), 120, "the refusal page")
        assert st["line"]["state"] == "faulted" and "configuration refused" in st["line"]["state_reason"]
        where = st["config_error"]["problems"][0]
        assert (where["file"], where["line"]) == (str(cfg), line_no) and "line.belt_speed_mps" in where["text"]
        html = page(port)
        assert "FAULTED" in html and f"{cfg}" in html and f"<td>{line_no}</td>" in html and "belt_speed_mps" in html
        assert not descendants(proc.pid)  # no timing process, no camera worker: nothing drives the line
        wait_for(lambda: listener.lines("READY=1") and len(listener.lines("WATCHDOG=1")) >= 2, 30,
                 "READY and watchdog pings while refused")
        assert any("configuration refused" in m for m in listener.lines("STATUS="))

        # the technician repairs the file: the controller starts as itself, same PID
        cfg.write_text(good, encoding="utf-8")
        wait_for(lambda: (s := status(port)) and s["line"].get("mode") == "run", 90, "the real status page")
        assert proc.poll() is None
        wait_for(lambda: descendants(proc.pid), 30, "the timing process")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    kill_and_check(proc, signal.SIGTERM, 30, 1, tmp_path)  # the timing process
    listener.close()
    log = (tmp_path / "sorter.log").read_text(encoding="utf-8")
    assert f"{cfg}:{line_no}: line.belt_speed_mps" in log and "is valid now: starting the line" in log


def test_html_in_a_config_error_is_escaped(tmp_path):
    from fastapi.testclient import TestClient

    from sorter.controller.api.refused import refused_app
    app = refused_app("/etc/sorter/line.yaml", ["/etc/sorter/line.yaml:7: line.name: <script>alert(1)</script>"])
    body = TestClient(app).get("/").text
    assert "<script>alert" not in body and "&lt;script&gt;" in body


def test_problems_are_split_into_file_line_and_text():
    assert parse_problem("/etc/sorter/line.yaml:42: line.x: bad") == \
        {"file": "/etc/sorter/line.yaml", "line": 42, "text": "line.x: bad"}
    assert parse_problem("/etc/sorter/line.yaml: cannot read: [Errno 2]") == \
        {"file": "/etc/sorter/line.yaml", "line": None, "text": "cannot read: [Errno 2]"}


def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def test_a_busy_port_is_one_line_when_the_config_is_refused_too(tmp_path):
    cfg = good_config(tmp_path)
    break_it(cfg)
    s, port = busy_port()
    with s:
        r = subprocess.run([sys.executable, "-m", "sorter", "run", "--config", str(cfg), "--port", str(port),
                            "--host", "127.0.0.1"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "api.port" in last and "--port" in last, r.stderr


def test_a_busy_api_port_is_one_line_and_stops_the_line(tmp_path):
    cfg = good_config(tmp_path)
    s, port = busy_port()
    with s:
        r = subprocess.run([sys.executable, "-m", "sorter", "run", "--config", str(cfg), "--port", str(port),
                            "--host", "127.0.0.1"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "api.port" in last and "--port" in last, r.stderr
