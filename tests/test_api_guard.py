"""The API against hostile or careless requests, on the real app (create_app with the routing
endpoints): a short 422 for NaN, 1e309, lone surrogates and deep JSON (never a 500); no 4xx that
echoes the input; body limits by endpoint (413); the manifest's advice behind the token; wrong
tokens limited per client address with one log line per round; the same answers on every
control endpoint."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from sorter.controller.api.app import create_app
from sorter.controller.api.guard import BodyLimits, TokenGuard, check_json
from sorter.controller.api.routing import router as routing_router
from sorter.controller.records.store import RecordStore
from sorter.controller.routing.manifest import Manifest

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEEP = b'{"waybill":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


class Control:
    def __init__(self):
        self.calls = []

    def set_chute_enabled(self, chute_id, enabled):
        self.calls.append(("chute", chute_id, enabled))
        return True

    def pause(self):
        self.calls.append(("pause",))

    def resume(self):
        self.calls.append(("resume",))

    def reload_routes(self, force=False):
        self.calls.append(("reload", force))
        return True, "ok"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def line(example_config, tmp_path):
    cfg = example_config()
    m = Manifest(cfg.routing.manifest)
    m.upsert([("SF1423456789012", None, None, "浙江省台州市温岭市某某路1号 张三 13800000000")])
    m.close()
    store = RecordStore(tmp_path / "records.db")
    yield cfg, store
    store.close()


def make_app(cfg, store, token=TOKEN, control=None, **kw):
    svc = SimpleNamespace(cfg=cfg, token=token, status=lambda: {"line": {"routing_version": "v"}})
    app = create_app(lambda: {"line": {}}, store, control or Control(), token=token,
                     routers=[routing_router(svc)], **kw)
    return app, TestClient(app)


def post_test(c, body: bytes, headers=AUTH):
    return c.post("/api/routes/test", content=body, headers=headers | {"Content-Type": "application/json"})


@pytest.mark.parametrize("body, field", [
    (b'{"waybill": "SF1423456789012", "weight_kg": 1e309}', "weight_kg"),
    (b'{"waybill": "SF1423456789012", "weight_kg": NaN}', "weight_kg"),
    (b'{"waybill": "SF1423456789012", "weight_kg": -Infinity}', "weight_kg"),
    (b'{"waybill": "\\ud800abc"}', "waybill"),
    (b'{"waybill": "SF1423456789012", "address": "\\udfff"}', "address"),
    (DEEP, None),
    (b'{"waybill": ' + b"9" * 5000 + b"}", None),        # past Python's int digit limit
    (b'{"waybill": "SF14\xff"}', None),                  # not UTF-8
])
def test_bad_json_is_a_short_422_naming_the_field(line, body, field):
    # a limit the 100,000-level body fits in (with the default 64 KB it is a 413)
    app, c = make_app(*line, body_limits=BodyLimits(default=1 << 20))
    r = post_test(c, body)
    assert r.status_code == 422, r.text
    j = r.json()
    assert len(r.content) < 600 and "Traceback" not in r.text
    if field is not None:
        assert j["field"] == field and field in j["detail"]
    else:
        assert j["detail"]


def test_check_json_counts_brackets_outside_strings_only():
    assert check_json(b'{"a": "' + b"[" * 1000 + b'"}') is None
    assert "deeper than 32" in check_json(b"[" * 33 + b"]" * 33)[0]
    assert check_json(b"[" * 32 + b"]" * 32) is None


def test_no_4xx_echoes_a_big_input(line):
    app, c = make_app(*line)
    big = "x" * 50_000
    for r in (
        c.post("/api/routes/test", json={"waybill": big}, headers=AUTH),
        c.post("/api/routes/test", json={"waybill": "SF1423456789012", "town": big}, headers=AUTH),
        c.post("/api/routes/test", json={"waybill": "SF1423456789012", "weight_kg": big}, headers=AUTH),
        c.post("/api/routes/test", json={"waybill": "SF1423456789012", "sort_code": "!" * 40}, headers=AUTH),
        c.get("/api/parcels", params={"waybill": big}),
        c.get("/api/parcels", params={"outcome": big[:30]}),
    ):
        assert 400 <= r.status_code < 500 and len(r.content) < 700, (r.status_code, len(r.content))
        assert "detail" in r.json() and big[:300] not in r.text
    r = c.post("/api/routes/test", json={"waybill": big}, headers=AUTH)
    assert r.json()["field"] == "waybill" and "at most 64" in r.json()["detail"]


def test_body_limits_by_endpoint(line):
    app, c = make_app(*line)
    ten_mb = b'{"waybill": "' + b"x" * (10 << 20) + b'"}'
    r = post_test(c, ten_mb)
    assert r.status_code == 413 and len(r.content) < 300 and "/api/routes/test" in r.json()["detail"]
    # without a Content-Length (chunked): refused once the limit is passed
    r = c.post("/api/routes/test", content=iter([b'{"waybill": "', b"x" * (1 << 20), b'"}']),
               headers=AUTH | {"Content-Type": "application/json"})
    assert r.status_code == 413
    # the manifest takes big uploads: 1 MB is fine there
    rows = b"waybill,town\n" + b"".join(b"75%012d,\xe6\xb3\xbd\xe5\x9b\xbd\xe9\x95\x87\n" % i for i in range(60_000))
    assert len(rows) > 1 << 20
    r = c.post("/api/manifest", content=rows, headers=AUTH | {"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["imported"] == 60_000
    # configurable
    app, c = make_app(*line, body_limits=BodyLimits(default=100, by_path={"/api/manifest": 1000}))
    assert post_test(c, b'{"waybill": "' + b"7" * 200 + b'"}').status_code == 413
    assert c.post("/api/manifest", content=rows[:2000], headers=AUTH | {"Content-Type": "text/csv"}).status_code == 413


def test_deep_json_manifest_upload_is_a_clean_error(line):
    app, c = make_app(*line)
    r = c.post("/api/manifest", content=b"[" * 100_000 + b"]" * 100_000, headers=AUTH | {"Content-Type": "application/json"})
    assert r.status_code == 400 and "deep" in r.json()["detail"] and len(r.content) < 400


def test_routes_test_reveals_advice_only_with_the_token(line):
    app, c = make_app(*line)
    body = {"waybill": "SF1423456789012"}
    for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
        r = c.post("/api/routes/test", json=body, headers=h)
        assert r.status_code == 401 and "13800000000" not in r.text and "某某路" not in r.text
    r = c.post("/api/routes/test", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["waybill"] == "SF1423456789012"


def test_wrong_tokens_are_limited_per_client_with_one_log_line_per_round(line, caplog):
    ctl = Control()
    app, c = make_app(*line, control=ctl)
    clock = Clock()
    app.state.token_guard = TokenGuard(TOKEN, clock=clock)
    wrong = {"Authorization": "Bearer guess"}
    caplog.set_level(logging.WARNING, logger="sorter.api.guard")
    codes = [c.post("/api/pause", headers=wrong).status_code for _ in range(300)]
    assert codes[:TokenGuard.FREE_TRIES] == [401] * TokenGuard.FREE_TRIES
    assert set(codes[TokenGuard.FREE_TRIES:]) == {429}
    r = c.post("/api/pause", headers=AUTH)                 # blocked: not even the right token is tried
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and ctl.calls == []
    # every endpoint behind the token counts the same guesses
    assert c.post("/api/manifest", content=b"[]", headers=AUTH).status_code == 429
    assert c.post("/api/routes/test", json={"waybill": "SF1423456789012"}, headers=AUTH).status_code == 429
    records = [r for r in caplog.records if r.name == "sorter.api.guard"]
    assert 1 <= len(records) <= 2, [r.getMessage() for r in records]
    clock.t += TokenGuard.FIRST_BLOCK_S + 0.1
    # the next round of guesses blocks for twice as long, with one more line that counts the refused
    codes = [c.post("/api/pause", headers=wrong).status_code for _ in range(TokenGuard.FREE_TRIES + 50)]
    assert codes.count(401) == TokenGuard.FREE_TRIES
    r = c.post("/api/pause", headers=AUTH)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 2 * TokenGuard.FIRST_BLOCK_S
    records = [r for r in caplog.records if r.name == "sorter.api.guard"]
    assert len(records) <= 3 and "refused while it was blocked" in records[-1].getMessage()
    clock.t += 2 * TokenGuard.FIRST_BLOCK_S + 0.1
    assert c.post("/api/pause", headers=AUTH).status_code == 200 and ctl.calls == [("pause",)]


def test_guard_keeps_clients_apart():
    clock = Clock()
    g = TokenGuard(TOKEN, clock=clock)
    for _ in range(TokenGuard.FREE_TRIES):
        with pytest.raises(Exception):
            g.check("10.0.0.9", "Bearer nope")
    assert g.blocked("10.0.0.9") and not g.blocked("10.0.0.7")
    g.check("10.0.0.7", f"Bearer {TOKEN}")               # another address is not refused


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_the_same_403_on_every_control_endpoint(line, token):
    app, c = make_app(*line, token=token)
    for path, kw in (("/api/pause", {}), ("/api/routes/reload", {}), ("/api/chutes/C01/disable", {}),
                     ("/api/manifest", {"content": b"[]"}), ("/api/routes/test", {"json": {"waybill": "SF1423456789012"}})):
        for h in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            r = c.post(path, headers=h, **kw)
            assert r.status_code == 403 and r.json()["detail"] == "control disabled: set api token", (path, h)


def test_empty_bearer_is_the_same_401_everywhere(line):
    app, c = make_app(*line)
    for path, kw in (("/api/pause", {}), ("/api/manifest", {"content": b"[]"}),
                     ("/api/routes/test", {"json": {"waybill": "SF1423456789012"}})):
        r = c.post(path, headers={"Authorization": "Bearer "}, **kw)
        assert r.status_code == 401 and r.json()["detail"] == "bearer token required"
