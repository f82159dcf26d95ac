"""Real-time lookup (controller/routing/lookup.py) against real HTTP servers on 127.0.0.1: one that
answers, a slow one (it holds each request until the test ends), a dead one; the decision in the
timing process is never delayed by it. No test here times anything: "never waits" is shown by a
decision made, or a call returning, while the service still holds the request."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from sorter.controller.routing.lookup import (BAD_ANSWER, CIRCUIT_OPEN, ERROR, FOUND, NOT_FOUND, TIMEOUT, LookupClient, LookupService, decision_budget_s, parse_answer)
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import Router
from sorter.controller.config.routing import LookupConfig

WB = "75123456789012"          # ZTO, 14 digits
WB2 = "YT7512345678901"        # YTO


class Api(BaseHTTPRequestHandler):
    hits: list = []
    entered = threading.Event()   # a request reached the slow service ...
    release = threading.Event()   # ... which holds it until this is set (at the end of the test)

    def do_GET(self):  # noqa: N802
        Api.hits.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        kind, wb = parts[0], parts[-1]
        if kind == "slow":
            Api.entered.set()
            Api.release.wait(60)
        if kind == "garbage":
            body, status = b"<html>oops</html>", 200
        elif kind == "empty_town":
            body, status = json.dumps({"town": "  "}).encode(), 200
        elif wb.startswith("75") or wb.startswith("YT"):
            body, status = json.dumps({"乡镇": "泽国镇", "carrier": "ZTO" if wb.startswith("75") else "YTO"}).encode(), 200
        else:
            body, status = b'{"error": "unknown"}', 404
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *a):
        pass


@pytest.fixture
def api():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    srv.daemon_threads = True
    Api.hits = []
    Api.entered.clear()
    Api.release.clear()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    Api.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def dead_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    return f"http://127.0.0.1:{port}"


def test_found_then_cached(api):
    c = LookupClient(api + "/wb/{waybill}?carrier={carrier}", timeout_s=1.0)
    r = c.query(WB, "ZTO")
    assert r.state == FOUND and r.row[0] == WB and r.row[1] == "泽国镇" and r.row[4] == "ZTO"
    r2 = c.query(WB, "ZTO")
    assert r2.state == FOUND and r2.cached
    assert c.counters["queries"] == 1 and c.counters["cache_hits"] == 1 and len(Api.hits) == 1
    assert Api.hits[0] == f"/wb/{WB}?carrier=ZTO"


def test_not_found_is_cached_and_not_a_failure(api):
    c = LookupClient(api + "/wb/{waybill}", timeout_s=1.0, breaker_failures=1)
    assert c.query("SF1234567890123").state == NOT_FOUND
    assert c.query("SF1234567890123").cached
    assert not c.circuit_open() and len(Api.hits) == 1


def test_cache_ttl_and_lru():
    now = [0.0]
    c = LookupClient("http://127.0.0.1:9/{waybill}", cache_size=2, ttl_s=10, clock=lambda: now[0])
    from sorter.controller.routing.lookup import LookupResult
    for k in "abc":
        c._remember(k, LookupResult(FOUND, ("X", "t")))
    assert c._cached("a") is None and c._cached("b") is not None  # a evicted (LRU)
    now[0] = 11
    assert c._cached("b") is None  # expired


def test_bad_answers(api):
    c = LookupClient(api + "/garbage/{waybill}", timeout_s=1.0)
    assert c.query(WB).state == BAD_ANSWER
    c = LookupClient(api + "/empty_town/{waybill}", timeout_s=1.0)
    r = c.query(WB)
    assert r.state == BAD_ANSWER and "empty town" in r.reason
    assert parse_answer(WB, {"found": False}).state == NOT_FOUND
    assert parse_answer(WB, {"data": {"sort_code": "571-w30 02"}}).row[2] == "571-W30-02"
    assert parse_answer(WB, {"waybill": "75999999999999", "town": "x"}).state == BAD_ANSWER
    assert parse_answer(WB, [1, 2]).state == BAD_ANSWER


def test_slow_service_times_out_on_time(api):
    """The query gives up at its deadline: it returns TIMEOUT while the service still holds it."""
    c = LookupClient(api + "/slow/{waybill}", timeout_s=0.1)
    r = c.query(WB)
    assert r.state == TIMEOUT and r.reason == "no answer within 100 ms"
    assert Api.entered.is_set() and not Api.release.is_set()
    assert c.counters[TIMEOUT] == 1 and not r.cached


def test_dead_service_opens_the_circuit(dead_url):
    now = [100.0]
    c = LookupClient(dead_url + "/{waybill}", timeout_s=0.2, breaker_failures=3, breaker_cooldown_s=5,
                     clock=lambda: now[0])
    states = [c.query(f"7512345678901{i}").state for i in range(5)]
    assert states == [ERROR, ERROR, ERROR, CIRCUIT_OPEN, CIRCUIT_OPEN]
    assert c.counters["circuit_opened"] == 1 and c.counters["queries"] == 3
    now[0] += 6  # cool-down over: one trial query, which fails again and reopens
    assert c.query("75123456789019").state == ERROR
    assert c.query("75123456789018").state == CIRCUIT_OPEN


def test_config_block():
    lc = LookupConfig(url="http://10.0.0.5/api/{waybill}?c={carrier}", carriers=["zto"])
    assert lc.carriers == ["ZTO"] and lc.timeout_ms == 250
    for bad in ("ftp://x/{waybill}", "http://x/no-placeholder", "http://x/{waybill}/{other}"):
        with pytest.raises(ValidationError):
            LookupConfig(url=bad)


def test_service_answers_into_the_manifest_and_the_decision_routes(api, example_config):
    cfg = example_config(**{"routing.lookup": {"url": api + "/wb/{waybill}", "timeout_ms": 5000,
                                               "carriers": ["ZTO", "YTO"]}})
    router = Router.from_config(cfg)       # the timing process's router (read-only manifest)
    svc_router = Router.from_config(cfg)   # the service process's
    svc = LookupService.from_config(cfg, svc_router)
    try:
        budget = decision_budget_s(cfg)
        assert budget < 5.0 and svc.client.timeout_s == pytest.approx(budget)  # capped at the budget
        d = router.decide([("code128", WB)])
        assert d.outcome == "no_route" and "not in manifest" in d.reason
        svc.submit_codes([("ean13", "6901234567892", []), ("code128", WB, []), ("code128", WB, []),
                          ("code128", "SF1234567890123", [])])  # SF is not looked up; WB once
        assert svc.wait_idle(5)
        d = router.decide([("code128", WB)])
        assert d.outcome == "sorted" and d.destination == "泽国镇", d
        st = svc.stats()
        assert st["submitted"] == 1 and st["stored"] == 1 and st[FOUND] == 1 and st["late"] == 0
        svc.submit("qrcode", f"https://x.cn/q?no={WB2}")
        assert svc.wait_idle(5)
        assert router.decide([("qrcode", f"https://x.cn/q?no={WB2}")]).outcome == "sorted"
        svc.submit("code128", WB)   # already asked (and in the manifest now): nothing new
        assert svc.wait_idle(5) and len(Api.hits) == 2
    finally:
        svc.close()
        router.close()
        svc_router.close()


def test_decision_is_never_delayed_by_a_slow_or_dead_service(api, dead_url, example_config):
    # slow: the query is in flight (the service holds it) while the parcel is decided
    cfg = example_config(**{"routing.lookup": {"url": api + "/slow/{waybill}", "timeout_ms": 300,
                                               "breaker_failures": 100}})
    router = Router.from_config(cfg)
    svc = LookupService.from_config(cfg, Router.from_config(cfg))
    try:
        wb = "75123456789017"
        svc.submit("code128", wb)            # returns at once: a worker asks the service
        assert Api.entered.wait(30)          # the query is in flight, and stays so
        d = router.decide([("code128", wb)])
        assert d.outcome == "no_route" and "lookup pending" in d.reason, d.reason
        assert not Api.release.is_set()      # decided while the service still held the query
        assert svc.wait_idle(30)             # the query times out on its own
        d = router.decide([("code128", wb)])
        assert d.outcome == "no_route" and "real-time lookup timeout" in d.reason, d.reason
        assert svc.stats()["timeout"] == 1
    finally:
        svc.close()
        router.close()
    # dead: refused at once; the decision says so
    cfg = example_config(**{"routing.lookup": {"url": dead_url + "/{waybill}", "timeout_ms": 300,
                                               "breaker_failures": 100}})
    router = Router.from_config(cfg)
    svc = LookupService.from_config(cfg, Router.from_config(cfg))
    try:
        wb = "75123456789016"
        svc.submit("code128", wb)
        assert router.decide([("code128", wb)]).outcome == "no_route"
        assert svc.wait_idle(30)
        d = router.decide([("code128", wb)])
        assert d.outcome == "no_route" and "real-time lookup error" in d.reason, d.reason
        assert svc.stats()["error"] == 1
    finally:
        svc.close()
        router.close()


def test_full_queue_drops_without_blocking(tmp_path, api):
    """The one worker is stuck on a query the service holds and the queue (2) is full: every
    further submit still returns, and is counted as dropped."""
    m = Manifest(tmp_path / "m.db")
    from sorter.controller.routing.carriers import CarrierTable
    svc = LookupService(LookupClient(api + "/slow/{waybill}", timeout_s=60), tmp_path / "m.db",
                        lambda: CarrierTable(), workers=1, max_pending=2)
    try:
        svc.submit("code128", "75123456700000")
        assert Api.entered.wait(30)          # the worker is blocked in its query now
        done = threading.Event()

        def flood():
            for i in range(1, 50):
                svc.submit("code128", f"751234567{i:05d}")
            done.set()
        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(30), "submit blocked on a full queue"   # a bound for a hang, not a speed
        assert svc.counters["submitted"] == 3 and svc.counters["dropped"] == 47
        assert not Api.release.is_set()
    finally:
        Api.release.set()
        svc.close()
        m.close()
