"""The HTTP API and status page, served by uvicorn on a real port."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn

from sorter.controller.api.app import create_app
from sorter.controller.records.store import OUTCOMES, RecordStore
from tests import browser

EVIL = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
TOKEN = "s3cret-token"


def make_status() -> dict:
    now = time.time()
    outcomes = {o: 0 for o in OUTCOMES}
    outcomes.update(sorted=1234, no_read=17, no_route=5, lost=1)
    return {
        "line": {"name": "Line 1 · 城关分拣线", "state": "running", "mode": "sim",
                 "plc": {"url": "tcp://127.0.0.1:1502", "connected": True, "errors": 2},
                 "belt_speed_mps": 2.01, "uptime_s": 3725.0, "routing_version": "routes-2026-11-03#4"},
        "counts": {"total": sum(outcomes.values()), "outcomes": outcomes},
        "throughput_pph": 5812.4, "read_rate": 0.9866,
        "fire_error_ms": {"p50": 0.42, "p99": 1.31, "p999": 4.2, "max": 7.9, "n": 1234},
        "decision_ms": {"p50": 2.1, "p99": 6.0, "p999": 9.0, "max": 11.0, "n": 1257},
        "chutes": [
            {"id": "C1", "name": "城关镇 Chengguan", "count": 402, "full": False, "enabled": True},
            {"id": "C2", "name": "河口镇 Hekou", "count": 311, "full": True, "enabled": True},
            {"id": "C3", "name": "石桥乡 Shiqiao", "count": 0, "full": False, "enabled": False},
            {"id": "C4", "name": "南山村 Nanshan", "count": 521, "full": False, "enabled": True},
            {"id": "R", "name": "异常口 Reject", "count": 23, "full": False, "enabled": True},
        ],
        "cameras": [
            {"name": "top", "alive": True, "fps": 29.8, "frames": 110233, "dropped": 3,
             "decode_ms_p50": 18.2, "decode_ms_p99": 41.0, "reads": 2450},
            {"name": "side", "alive": False, "fps": 0.0, "frames": 5012, "dropped": 0,
             "decode_ms_p50": 20.1, "decode_ms_p99": 55.3, "reads": 301},
        ],
        "alarms": [{"id": "camera.side", "text": "相机 side 无图像 · camera side stopped, restarting",
                    "since_wall": now - 42}],
        "recent": [
            {"parcel_id": 1257, "run_id": "r1", "induct_wall": now - 3, "decided_wall": now - 2.5,
             "ended_wall": now - 1, "length_mm": 300.0, "reads": [], "waybill": "SF1234567890123",
             "carrier": "SF", "destination": "城关镇 Chengguan", "chute": "C1", "actual_chute": "C1",
             "outcome": "sorted", "reason": "", "routing_version": "v4", "fire_error_ms": 0.3,
             "decision_ms": 2.0},
            {"parcel_id": 1256, "run_id": "r1", "induct_wall": now - 4, "decided_wall": now - 3.5,
             "ended_wall": now - 2, "length_mm": 410.0,
             "reads": [{"camera": "top", "symbology": "qrcode", "text": EVIL}], "waybill": EVIL,
             "carrier": None, "destination": None, "chute": None, "actual_chute": "R",
             "outcome": "no_route", "reason": "unknown carrier format", "routing_version": "v4",
             "fire_error_ms": None, "decision_ms": 1.1},
            {"parcel_id": 1255, "run_id": "r1", "induct_wall": now - 5, "decided_wall": None,
             "ended_wall": now - 3, "length_mm": 250.0, "reads": [], "waybill": None,
             "carrier": None, "destination": None, "chute": None, "actual_chute": "R",
             "outcome": "no_read", "reason": "no barcode read", "routing_version": "v4",
             "fire_error_ms": float("nan"), "decision_ms": None},
        ],
    }


class FakeControl:
    def __init__(self):
        self.calls: list[tuple] = []
        self.reload_result = (True, "routes reloaded: version 5")

    def set_chute_enabled(self, chute_id: str, enabled: bool) -> bool:
        self.calls.append(("chute", chute_id, enabled))
        return chute_id.startswith("C")

    def pause(self) -> None:
        self.calls.append(("pause",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def reload_routes(self) -> tuple[bool, str]:
        self.calls.append(("reload",))
        return self.reload_result


class Served:
    def __init__(self, app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


def serve(app):
    return Served(app)


@pytest.fixture()
def store(tmp_path):
    s = RecordStore(tmp_path / "records.db")
    t0 = time.time() - 100
    recs = []
    for i in range(30):
        outcome = "sorted" if i % 3 else "no_read"
        recs.append({"parcel_id": i, "run_id": "r1", "ended_wall": t0 + i, "outcome": outcome,
                     "waybill": f"ZTO{i:010d}" if outcome == "sorted" else None, "reads": [],
                     "reason": "", "carrier": "ZTO", "chute": "C1"})
    recs.append({"parcel_id": 99, "run_id": "r1", "ended_wall": t0 + 50, "outcome": "no_route",
                 "waybill": EVIL, "reads": [{"camera": "top", "symbology": "qrcode", "text": EVIL}],
                 "reason": "unknown carrier"})
    s.write_many(recs)
    yield s
    s.close()


@pytest.fixture()
def control():
    return FakeControl()


@pytest.fixture()
def server(store, control):
    state = {"status": make_status()}
    srv = serve(create_app(lambda: state["status"], store, control, token=TOKEN))
    srv.state = state
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_status_json(client):
    r = client.get("/api/status")
    assert r.status_code == 200
    st = r.json()
    assert st["line"]["name"] == "Line 1 · 城关分拣线"
    assert st["counts"]["outcomes"]["sorted"] == 1234
    assert st["recent"][2]["fire_error_ms"] is None  # NaN becomes null, the JSON stays valid
    assert r.headers["cache-control"] == "no-store"
    assert client.get("/api/chutes").json()[1] == {"id": "C2", "name": "河口镇 Hekou", "count": 311,
                                                  "full": True, "enabled": True}
    stats = client.get("/api/stats").json()
    assert set(stats) == {"counts", "throughput_pph", "read_rate", "fire_error_ms", "decision_ms"}
    assert stats["fire_error_ms"]["p99"] == 1.31


def test_status_failure_is_503(store):
    def broken():
        raise RuntimeError("boom")

    srv = serve(create_app(broken, store))
    try:
        r = httpx.get(srv.url + "/api/status")
        assert r.status_code == 503 and "boom" in r.json()["detail"]
    finally:
        srv.stop()


def test_parcels_filters(client):
    rows = client.get("/api/parcels").json()
    assert len(rows) == 31 and rows[0]["parcel_id"] == 99  # newest first
    rows = client.get("/api/parcels", params={"limit": 5, "outcome": "no_read"}).json()
    assert len(rows) == 5 and {r["outcome"] for r in rows} == {"no_read"}
    rows = client.get("/api/parcels", params={"waybill": "ZTO0000000007"}).json()
    assert [r["parcel_id"] for r in rows] == [7]
    rows = client.get("/api/parcels", params={"waybill": EVIL}).json()
    assert rows[0]["waybill"] == EVIL and rows[0]["reads"][0]["text"] == EVIL


@pytest.mark.parametrize(
    "params, needle",
    [
        ({"outcome": "exploded"}, "unknown outcome"),
        ({"limit": 1001}, "less than or equal to 1000"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": "ten"}, "integer"),
        ({"waybill": "x" * 200}, "at most 128"),
        ({"since_wall": "nan"}, "since_wall"),
    ],
)
def test_parcels_bad_params(client, params, needle):
    r = client.get("/api/parcels", params=params)
    assert 400 <= r.status_code < 500
    assert needle in r.text


def test_control_requires_token(client, control):
    for path in ("/api/pause", "/api/resume", "/api/routes/reload", "/api/chutes/C1/disable"):
        r = client.post(path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = client.post(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = client.post(path, headers={"Authorization": "Basic " + TOKEN})
        assert r.status_code == 401
    assert control.calls == []


def test_control_with_token(client, control):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/chutes/C2/disable", headers=auth).json() == {"ok": True, "chute": "C2", "enabled": False}
    assert client.post("/api/chutes/C2/enable", headers=auth).status_code == 200
    r = client.post("/api/chutes/R9/enable", headers=auth)
    assert r.status_code == 404 and "R9" in r.json()["detail"]
    assert client.post("/api/chutes/<b>/enable", headers=auth).status_code == 422
    assert client.post("/api/pause", headers=auth).json() == {"ok": True}
    assert client.post("/api/resume", headers=auth).json() == {"ok": True}
    r = client.post("/api/routes/reload", headers=auth)
    assert r.status_code == 200 and r.json() == {"ok": True, "message": "routes reloaded: version 5"}
    control.reload_result = (False, "routes.yaml line 12: no chute 'C99'")
    r = client.post("/api/routes/reload", headers=auth)
    assert r.status_code == 422 and r.json()["ok"] is False and "line 12" in r.json()["message"]
    assert control.calls == [("chute", "C2", False), ("chute", "C2", True), ("chute", "R9", True),
                             ("pause",), ("resume",), ("reload",), ("reload",)]
    # GET on a control path is not allowed
    assert client.get("/api/pause").status_code == 405


def test_control_disabled_without_token(store, control):
    srv = serve(create_app(make_status, store, control, token=None))
    try:
        for path in ("/api/pause", "/api/chutes/C1/enable", "/api/routes/reload"):
            r = httpx.post(srv.url + path, headers={"Authorization": "Bearer anything"})
            assert r.status_code == 403
            assert r.json()["detail"] == "control disabled: set api token"
        assert control.calls == []
        assert httpx.get(srv.url + "/api/status").status_code == 200  # reading stays open
    finally:
        srv.stop()


def test_metrics(client):
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    # Prometheus's conventions (api/metrics.py; more in tests/test_metrics.py)
    assert 'sorter_parcels_total{outcome="sorted"} 1234.0' in text
    assert 'sorter_parcels_total{outcome="gap_too_small"} 0.0' in text
    assert 'sorter_fire_error_recent_seconds{quantile="0.99"} 0.00131' in text
    assert "sorter_throughput_parcels_per_hour 5812.4" in text
    assert 'sorter_plc_connected{url="tcp://127.0.0.1:1502"} 1.0' in text
    assert 'sorter_camera_up{camera="top"} 1.0' in text and 'sorter_camera_up{camera="side"} 0.0' in text
    assert 'sorter_line_state{sorter_line_state="running"} 1.0' in text


def test_page_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in r.text and "http" not in r.text.replace("http-equiv", "")  # no CDN
    assert "script-src 'self'" in r.headers["content-security-policy"]
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "textContent" in js.text and ".innerHTML" not in js.text and "insertAdjacentHTML" not in js.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/api/parcels" in client.get("/openapi.json").text


def test_script_waybill_is_json_data(client):
    r = client.get("/api/status")
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["recent"][1]["waybill"] == EVIL
    assert "<script>" in r.text  # plain data inside a JSON string, rendered with textContent


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_page_renders_in_headless_chromium(server):
    # Playwright on Debian's chromium (tests/browser.py): the page keeps its live stream open, so
    # `chromium --dump-dom --virtual-time-budget` would never finish
    with browser.chromium() as b:
        p = browser.Page(b, server.url)
        try:
            pg = p.page
            pg.goto("/", wait_until="domcontentloaded")
            pg.get_by_text("SF1234567890123").first.wait_for()  # (the strict CSP forbids evaluated strings)
            text = pg.locator("body").inner_text()
            dom = pg.content()
            assert "Line 1 · 城关分拣线" in text
            assert "河口镇" in text
            # the hostile waybill is shown as text (escaped in the serialised DOM), never as an element
            assert "&lt;script&gt;document.title=\"pwned\"&lt;/script&gt;" in dom
            assert "<script>document.title" not in dom
            assert "<img src=\"x\"" not in dom and "<img src=x" not in dom
            assert "pwned" not in pg.title()
            assert p.unexpected_dialogs == [] and p.errors == []
        finally:
            p.close()
