"""A route table that would stop the line is refused at the first start too, not only on reload:
a route file with no rules or no default, when the line starts, is never sorted on silently. With
a last good table kept, the line sorts on that and says so; with none, it is `faulted` with the
reason on the status page until the file is repaired or a person forces the table in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from sorter.controller.config.load import load_config
from sorter.controller.routing import last_good
from sorter.controller.service.service import Service
from tests.conftest import _free_port, write_line_config
from tests.test_processes import alive, descendants, status, wait_for
from tests.test_routes_safety import cut_after

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

TOKEN = "first-start-token"
CUTS = {
    "empty file": (lambda text: "", "no rules"),
    "cut after 3 rules": (lambda text: cut_after(text, 3), "no default"),
}


def service(tmp_path, **over):
    cfg = load_config(write_line_config(tmp_path / "config", overrides={"cameras": [], **over}))
    return cfg, Service(cfg)


@pytest.mark.parametrize("cut", list(CUTS))
def test_an_unsafe_table_with_no_last_good_is_not_put_in_force(tmp_path, cut):
    cfg, svc = service(tmp_path)
    routes = cfg.routing.routes
    make, why = CUTS[cut]
    routes.write_text(make(routes.read_text(encoding="utf-8")), encoding="utf-8")
    svc.open_routing()
    try:
        assert svc.router is None
        assert svc.routing_error and why in svc.routing_error and "no last good table" in svc.routing_error
        assert why in svc.alarms.active["routes"]["text"]
        assert last_good.load_kept(cfg) is None      # and it is not kept as a good table either
    finally:
        svc.close_routing()


@pytest.mark.parametrize("cut", list(CUTS))
def test_an_unsafe_table_at_start_runs_on_the_last_good_one(tmp_path, cut):
    cfg, svc = service(tmp_path)
    svc.open_routing()
    good = svc.router.version
    svc.close_routing()
    svc.router.close()
    routes = cfg.routing.routes
    make, why = CUTS[cut]
    routes.write_text(make(routes.read_text(encoding="utf-8")), encoding="utf-8")

    svc = Service(cfg)
    svc.open_routing()
    try:
        assert svc.router is not None and svc.router.version == good
        assert len(svc.router.table.rules) > 3 and svc.router.table.default
        alarm = svc.alarms.active["routes"]["text"]
        assert why in alarm and f"last good table, version {good}" in alarm
        kept, _ = last_good.load_kept(cfg)
        assert kept.version == good
    finally:
        svc.close_routing()
        svc.router.close()


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def _post(port: int, path: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_sorter_sim_on_an_empty_route_file_is_faulted_and_says_why(tmp_path):
    port = _free_port()
    cfg_path = write_line_config(tmp_path / "config")
    routes = load_config(cfg_path).routing.routes
    routes.write_text("", encoding="utf-8")
    log = open(tmp_path / "sorter.log", "w")
    # the simulated line: with its I/O up, the missing table is what holds the line
    proc = subprocess.Popen([sys.executable, "-m", "sorter", "sim", "--config", str(cfg_path), "--port", str(port),
                             "--modbus-port", "0", "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                            start_new_session=True, env={**os.environ, "SORTER_API_TOKEN": TOKEN})
    kids: set[int] = set()
    try:
        st = wait_for(lambda: (s := status(port)) and (s.get("line") or {}).get("state") == "faulted" and s,
                      90, "the line faulted on its status page")
        kids = descendants(proc.pid)
        reason = st["line"]["state_reason"]
        assert "no rules" in reason, st["line"]
        # the API says the same: no table in force, and why (not ok: true with an empty table)
        routes = _get(port, "/api/routes")
        assert routes["ok"] is False and any("no rules" in p for p in routes["problems"]), routes
        # a person decides the empty table is right: forced in, the line is no longer faulted for it
        assert _post(port, "/api/routes/reload?force=true") == 200
        st = wait_for(lambda: (s := status(port)) and "no rules" not in ((s.get("line") or {}).get("state_reason")
                                                                           or "") and s, 30, "the forced table")
        assert _get(port, "/api/routes")["rules"] == []
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
    end = time.monotonic() + 10
    while time.monotonic() < end and any(alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)], (tmp_path / "sorter.log").read_text()[-3000:]
