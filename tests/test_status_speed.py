"""The status snapshot is serialised once per change and served as the same bytes to every reader
(service/status_cache.py): what keeps `GET /api/status` fast with a room of screens polling.
Speed itself is measured by bench/status_load.py; these tests check the behaviour it rests on."""

from __future__ import annotations

import copy
import json
import threading

import httpx
import pytest

from sorter.controller.api.app import create_app
from sorter.controller.records.store import RecordStore
from sorter.controller.service import status_cache
from sorter.controller.service.status_cache import PulledStatus, StatusCache
from tests.test_api import make_status, serve


class CountingDumps:
    """json.dumps as status_cache calls it, counted."""

    def __init__(self, monkeypatch):
        self.n = 0
        real = json.dumps

        def dumps(*a, **kw):
            self.n += 1
            return real(*a, **kw)
        monkeypatch.setattr(status_cache.json, "dumps", dumps)


def test_publish_makes_the_bytes_once_and_keeps_unchanged_snapshots(monkeypatch):
    dumps = CountingDumps(monkeypatch)
    cache = StatusCache(clock=lambda: 1000.0)
    assert cache.latest() is None
    snap = make_status()
    pub = cache.publish(snap)
    assert pub.version == 1 and dumps.n == 1
    assert json.loads(pub.body)["recent"][2]["fire_error_ms"] is None  # NaN -> null: valid JSON
    for _ in range(50):
        assert cache.latest() is pub  # readers share one object: nothing made per read
    assert dumps.n == 1
    again = cache.publish(copy.deepcopy(snap))  # equal content: no new version, SSE clients get nothing new
    assert again is pub and cache.latest().version == 1
    changed = copy.deepcopy(snap)
    changed["counts"]["total"] += 1
    assert cache.publish(changed).version == 2


def test_subscribers_are_told_and_a_failing_one_does_not_stop_the_publisher():
    cache = StatusCache()
    seen = []

    def broken(_pub):
        raise RuntimeError("a reader's bug")
    cache.subscribe(broken)
    cache.subscribe(lambda pub: seen.append(pub.version))
    cache.publish({"a": 1})
    cache.publish({"a": 2})
    assert seen == [1, 2]
    cache.unsubscribe(broken)
    cache.publish({"a": 3})
    assert seen == [1, 2, 3]


def test_a_value_json_has_no_type_for_does_not_stop_the_publisher():
    import numpy as np
    from pathlib import Path

    cache = StatusCache()
    pub = cache.publish({"count": np.int64(7), "share": np.float32("nan"), "db": Path("/var/lib/sorter/r.db")})
    assert json.loads(pub.body) == {"count": 7, "share": None, "db": "/var/lib/sorter/r.db"}


def test_pulled_status_serialises_only_a_new_snapshot(monkeypatch):
    dumps = CountingDumps(monkeypatch)
    state = {"st": make_status()}
    pulled = PulledStatus(lambda: state["st"])
    first = pulled.latest()
    assert pulled.latest() is first and dumps.n == 1
    state["st"] = dict(state["st"], throughput_pph=1.0)  # replaced, as the service does
    second = pulled.latest()
    assert second.version == first.version + 1 and dumps.n == 2
    assert json.loads(second.body)["throughput_pph"] == 1.0


@pytest.fixture()
def store(tmp_path):
    s = RecordStore(tmp_path / "records.db")
    yield s
    s.close()


def test_the_endpoint_serves_the_published_bytes_with_an_etag(store, monkeypatch):
    cache = StatusCache()
    cache.publish(make_status())
    srv = serve(create_app(lambda: {}, store, published=cache))
    try:
        dumps = CountingDumps(monkeypatch)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            bodies = set()
            for _ in range(20):
                r = c.get("/api/status")
                assert r.status_code == 200 and r.headers["content-type"] == "application/json"
                bodies.add(r.content)
            assert bodies == {cache.latest().body} and dumps.n == 0  # no serialising per request
            etag = r.headers["etag"]
            r = c.get("/api/status", headers={"If-None-Match": etag})
            assert r.status_code == 304 and r.content == b""  # a screen that has it gets no body
            assert r.headers["cache-control"] == "no-store"
            new = make_status()
            new["line"]["state"] = "paused"
            cache.publish(new)
            r = c.get("/api/status", headers={"If-None-Match": etag})
            assert r.status_code == 200 and r.json()["line"]["state"] == "paused" and r.headers["etag"] != etag
    finally:
        srv.stop()


def test_no_snapshot_yet_is_503(store):
    srv = serve(create_app(lambda: {}, store, published=StatusCache()))
    try:
        r = httpx.get(srv.url + "/api/status", timeout=10)
        assert r.status_code == 503 and "not published" in r.json()["detail"]
    finally:
        srv.stop()


def test_concurrent_readers_while_publishing_see_whole_snapshots(store):
    """A reader never gets half of one snapshot and half of another."""
    cache = StatusCache()
    cache.publish({"n": 0, "same": [0] * 200})
    srv = serve(create_app(lambda: {}, store, published=cache))
    stop = threading.Event()

    def publisher():
        i = 0
        while not stop.is_set():
            i += 1
            cache.publish({"n": i, "same": [i] * 200})

    t = threading.Thread(target=publisher)
    t.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            for _ in range(100):
                st = c.get("/api/status").json()
                assert set(st["same"]) == {st["n"]}
    finally:
        stop.set()
        t.join(5)
        srv.stop()
