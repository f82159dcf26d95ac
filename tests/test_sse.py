"""`GET /api/events`: the status snapshot as Server-Sent Events on a real uvicorn server, the
page's live.js helper, and `sorter sim --parcels N --port P` serving the API (and the events)
while a finite run goes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from sorter.controller.api import events as api_events
from sorter.controller.api.app import create_app
from sorter.controller.records.store import RecordStore
from sorter.controller.service.status_cache import StatusCache
from tests.conftest import write_line_config
from tests.test_api import make_status

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

ROOT = Path(__file__).resolve().parents[1]


class Events:
    """Reads one SSE stream line by line in a thread: events (id, data) and comments. A raw socket,
    so that close() really hangs up (the server sees the client leave)."""

    def __init__(self, url: str):
        self.events: list[tuple[int, dict]] = []
        self.comments: list[str] = []
        self.retry: int | None = None
        self.status: int | None = None
        self.headers: dict = {}
        u = urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.conn.request("GET", u.path, headers={"Accept": "text/event-stream"})
        resp = self.conn.getresponse()
        self.status, self.headers = resp.status, {k.lower(): v for k, v in resp.getheaders()}
        self.resp = resp
        self.thread = threading.Thread(target=self._run, daemon=True)
        if resp.status == 200:
            self.thread.start()

    def _run(self) -> None:
        ev_id = None
        try:
            while True:
                raw = self.resp.readline()  # http.client undoes the chunked encoding
                if not raw:
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith("retry:"):
                    self.retry = int(line.split(":", 1)[1])
                elif line.startswith("id:"):
                    ev_id = int(line.split(":", 1)[1])
                elif line.startswith("data:"):
                    self.events.append((ev_id, json.loads(line.split(":", 1)[1])))
                elif line.startswith(":"):
                    self.comments.append(line)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return  # closed (AttributeError: http.client reading on after close())

    def wait(self, pred, what: str, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.02)
        raise AssertionError(f"waited for {what}: events {[(i, e.get('n')) for i, e in self.events]}, "
                             f"comments {self.comments}")

    def close(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conn.close()
        if self.thread.is_alive():
            self.thread.join(10)


class Served:
    """uvicorn on a free port; its stop cuts the event streams after a second (as ApiServer's)."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < end and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the server did not stop"


def serve(app) -> Served:
    return Served(app)


@pytest.fixture()
def store(tmp_path):
    s = RecordStore(tmp_path / "records.db")
    yield s
    s.close()


def events_app(source, **kw) -> tuple[FastAPI, object]:
    app = FastAPI()
    r = api_events.router(source, **kw)
    app.include_router(r)
    return app, r


def test_events_push_each_published_snapshot_then_heartbeats():
    cache = StatusCache()
    cache.publish({"n": 1})
    app, r = events_app(cache, min_interval_s=0.05, heartbeat_s=0.3)
    srv = serve(app)
    ev = Events(srv.url + "/api/events")
    try:
        assert ev.status == 200 and ev.headers["content-type"].startswith("text/event-stream")
        assert ev.headers["cache-control"] == "no-store"
        ev.wait(lambda: ev.events, "the snapshot on connecting")
        assert ev.events[0] == (1, {"n": 1}) and ev.retry == api_events.RETRY_MS
        cache.publish({"n": 2})
        ev.wait(lambda: len(ev.events) >= 2, "the second snapshot")
        assert ev.events[1] == (2, {"n": 2})
        # nothing new: comment lines keep the connection alive, and no event repeats
        ev.wait(lambda: len(ev.comments) >= 2, "heartbeats")
        assert len(ev.events) == 2
        cache.publish({"n": 3})
        ev.wait(lambda: len(ev.events) >= 3, "the snapshot after a silence")
        assert [i for i, _e in ev.events] == [1, 2, 3]
    finally:
        ev.close()
        srv.stop()


def test_a_burst_of_snapshots_is_sent_at_the_client_pace_ending_on_the_latest():
    cache = StatusCache()
    cache.publish({"n": 0})
    app, _r = events_app(cache, min_interval_s=0.5, heartbeat_s=30)
    srv = serve(app)
    ev = Events(srv.url + "/api/events")
    try:
        ev.wait(lambda: ev.events, "the first snapshot")
        for i in range(1, 40):
            cache.publish({"n": i})
        ev.wait(lambda: ev.events and ev.events[-1][1]["n"] == 39, "the latest snapshot")
        # the intermediate ones were skipped, not queued: a slow screen gets the newest
        assert len(ev.events) < 10
    finally:
        ev.close()
        srv.stop()


def test_too_many_clients_are_refused_and_leaving_frees_a_place():
    cache = StatusCache()
    cache.publish({"n": 1})
    app, r = events_app(cache, min_interval_s=0.05, heartbeat_s=5, max_clients=2)
    srv = serve(app)
    clients = [Events(srv.url + "/api/events") for _ in range(2)]
    try:
        for c in clients:
            c.wait(lambda c=c: c.events, "a first event")
        third = Events(srv.url + "/api/events")
        assert third.status == 503
        third.close()
        clients.pop().close()
        end = time.monotonic() + 20
        while r.sse_clients["n"] > 1 and time.monotonic() < end:
            cache.publish({"n": time.monotonic()})  # a write finds the closed connection
            time.sleep(0.05)
        assert r.sse_clients["n"] == 1
        again = Events(srv.url + "/api/events")
        assert again.status == 200
        again.close()
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_the_app_serves_events_of_a_status_callable(store):
    """create_app with a plain status() (no cache): its new snapshots are pushed on the tick."""
    state = {"st": make_status()}
    srv = serve(create_app(lambda: state["st"], store))
    ev = Events(srv.url + "/api/events")
    try:
        ev.wait(lambda: ev.events, "the first snapshot")
        assert ev.events[0][1]["line"]["name"] == "Line 1 · 城关分拣线"
        state["st"] = dict(make_status(), throughput_pph=42.0)
        ev.wait(lambda: ev.events[-1][1]["throughput_pph"] == 42.0, "the changed snapshot")
        assert ev.events[-1][1]["recent"][1]["waybill"].startswith("<script>")  # data, as JSON
    finally:
        ev.close()
        srv.stop()


def test_live_js_is_served_and_uses_eventsource_with_the_poll_as_fallback(store):
    srv = serve(create_app(make_status, store))
    try:
        js = httpx.get(srv.url + "/static/live.js", timeout=10)
        assert js.status_code == 200 and "script-src 'self'" in js.headers["content-security-policy"]
        assert "window.sorterLive" in js.text and "EventSource(\"/api/events\")" in js.text
        assert "fetch(\"/api/status\"" in js.text and ".innerHTML" not in js.text
        page = httpx.get(srv.url + "/", timeout=10).text
        assert '<script src="/static/live.js" defer></script>' in page
    finally:
        srv.stop()


def test_sorter_sim_with_parcels_serves_the_api_and_events(tmp_path, free_port):
    """`sorter sim --parcels N --port P`: the page, the status and the events during the run, and
    the run still ends with its summary when the parcels are done."""
    cfg = write_line_config(tmp_path, overrides={"sim.rate_pph": 12000})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sorter", "sim", "--config", str(cfg), "--parcels", "25",
                             "--port", str(port), "--host", "127.0.0.1", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ev = None
    try:
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 120
        st = None
        while time.monotonic() < end and proc.poll() is None:
            try:
                st = httpx.get(base + "/api/status", timeout=5).json()
                if st["line"]["state"] == "running" and st.get("sim"):  # (the run's progress comes a moment later)
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        assert st is not None and st["line"]["state"] == "running", proc.stderr.read() if proc.poll() else st
        assert st["line"]["mode"] == "sim" and st["sim"]["parcels"] == 25
        ev = Events(base + "/api/events")
        ev.wait(lambda: ev.events, "an event from the running sim", timeout=30)
        assert ev.events[0][1]["line"]["run_id"] == st["line"]["run_id"]
        ev.close()
        ev = None
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["parcels"] >= 25 and summary["unrecorded"] == 0
        with pytest.raises(httpx.HTTPError):  # the API stopped with the run
            httpx.get(base + "/api/status", timeout=2)
    finally:
        if ev is not None:
            ev.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
