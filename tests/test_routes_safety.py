"""Route tables that cannot silently stop the line: an empty or cut-short route file is refused on
reload (the table in force stays and keeps routing) unless a person forces it; a file that changes
while it is read is read again; `sorter routes check` calls these errors; `/api/routes` shows the
table in force and why the file on disk is refused."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sorter.controller.api.app import create_app
from sorter.controller.api.routing import router as routing_router
from sorter.controller.cli.main import main
from sorter.controller.config.load import ConfigError
from sorter.controller.records.store import RecordStore
from sorter.controller.routing import files
from sorter.controller.routing.files import FileProblems, read_bytes
from sorter.controller.routing.manifest import ManifestRow
from sorter.controller.routing.router import Router
from tests.conftest import load_line_config

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def cut_after(text: str, n_rules: int) -> str:
    """The route file as a truncated save leaves it: the first n rules, nothing after."""
    lines = text.splitlines(keepends=True)
    out, seen = [], 0
    for line in lines:
        if line.lstrip().startswith("- {"):
            seen += 1
            if seen > n_rules:
                break
        out.append(line)
    return "".join(out)


def zeguo(router: Router) -> str | None:
    """The chute the table in force gives a parcel for 泽国镇 (the example table: C06)."""
    row = ManifestRow("泽国镇", None, None, None, None, None, 0)
    return router.route(router.state, "75123456789012", "ZTO", row).chute


@pytest.fixture
def line(example_config):
    cfg = example_config()
    router = Router.from_config(cfg)
    yield cfg, router, cfg.routing.routes, cfg.routing.routes.read_text(encoding="utf-8")
    router.close()


def test_empty_route_file_is_refused_and_the_table_in_force_stays(line):
    cfg, router, routes, good = line
    v0, n0 = router.version, len(router.table.rules)
    routes.write_text("", encoding="utf-8")
    ok, msg = router.reload_if_changed()
    assert not ok and "no rules" in msg and "no default" in msg and f"{v0} stays in force" in msg
    assert router.version == v0 and len(router.table.rules) == n0 and zeguo(router) == "C06"
    assert router.refused and any("no rules" in p for p in router.refused)
    assert router.reload_if_changed() is None          # not retried until the file changes again
    routes.write_text(good, encoding="utf-8")
    ok, _ = router.reload_if_changed()
    assert ok and router.refused is None


def test_cut_short_file_is_refused_unless_forced(line):
    cfg, router, routes, good = line
    v0, n0 = router.version, len(router.table.rules)
    routes.write_text(cut_after(good, 3), encoding="utf-8")
    ok, msg = router.reload()
    assert not ok and "no default" in msg and f"3 rules where the table in force has {n0}" in msg
    assert "reload_max_rule_drop" in msg and "force" in msg
    assert router.version == v0 and zeguo(router) == "C06"
    ok, msg = router.reload(force=True)                  # a person decided: it goes live
    assert ok and "(forced)" in msg and len(router.table.rules) == 3 and router.refused is None
    assert zeguo(router) is None                          # as asked: 泽国镇 has no rule any more


def test_rule_drop_share_is_configured(example_config):
    cfg = example_config(routing__reload_max_rule_drop=1.0)
    router = Router.from_config(cfg)
    try:
        routes = cfg.routing.routes
        good = routes.read_text(encoding="utf-8")
        # keeps its default, loses most rules: allowed by a limit of 100%
        routes.write_text(cut_after(good, 2) + "default: MANUAL\n", encoding="utf-8")
        ok, msg = router.reload()
        assert ok, msg
    finally:
        router.close()
    cfg = example_config(routing__reload_max_rule_drop=0.1)
    router = Router.from_config(cfg)
    try:
        text = cfg.routing.routes.read_text(encoding="utf-8")
        n = len(router.table.rules)
        keep = n - n // 5                                   # a fall of 20%, over a 10% limit
        cfg.routing.routes.write_text(cut_after(text, keep) + "default: MANUAL\n", encoding="utf-8")
        ok, msg = router.reload()
        assert not ok and f"{keep} rules where the table in force has {n}" in msg and "10%" in msg
    finally:
        router.close()


@pytest.mark.parametrize("value", [-0.1, 1.5, "half"])
def test_rule_drop_share_bounds(tmp_path, value):
    with pytest.raises(ConfigError) as ei:
        load_line_config(tmp_path, routing__reload_max_rule_drop=value)
    assert any("routing.reload_max_rule_drop" in p for p in ei.value.problems)


def test_a_file_read_while_it_changes_is_read_again(tmp_path):
    p = tmp_path / "routes.yaml"
    p.write_bytes(b"x")
    versions = iter([b"", b"rules: [", b"rules: []\ndefault: MANUAL\n", b"rules: []\ndefault: MANUAL\n"])
    pauses = []
    assert read_bytes(p, read=lambda _p: next(versions), pause=pauses.append) == b"rules: []\ndefault: MANUAL\n"
    assert len(pauses) == 2
    counter = iter(range(1000))
    with pytest.raises(FileProblems) as ei:
        read_bytes(p, read=lambda _p: str(next(counter)).encode(), pause=lambda _s: None)
    assert "changed while it was read" in ei.value.problems[0] and str(p) in ei.value.problems[0]
    assert files.STABLE_READS >= 3


def test_routes_check_calls_empty_and_defaultless_tables_errors(example_config, capsys):
    cfg = example_config()
    routes = cfg.routing.routes
    line_file = routes.parent / "line.yaml"
    good = routes.read_text(encoding="utf-8")
    assert main(["routes", "check", "--config", str(line_file)]) == 0
    routes.write_text("", encoding="utf-8")
    capsys.readouterr()
    assert main(["routes", "check", "--config", str(line_file)]) == 1
    err = capsys.readouterr().err
    assert "no rules" in err and str(routes) in err and "OK" not in err
    routes.write_text(cut_after(good, 3), encoding="utf-8")
    assert main(["routes", "check", "--config", str(line_file)]) == 1
    assert "no default" in capsys.readouterr().err


# ---- HTTP ------------------------------------------------------------------------------------
def test_api_routes_shows_the_table_in_force_and_the_refused_file(example_config):
    cfg = example_config()
    svc_router = Router.from_config(cfg)
    svc = type("Svc", (), {"cfg": cfg, "token": TOKEN, "router": svc_router,
                           "status": staticmethod(lambda: {"line": {"routing_version": svc_router.version}})})()
    app = FastAPI()
    app.include_router(routing_router(svc))
    c = TestClient(app)
    try:
        n0 = len(svc_router.table.rules)
        body = c.get("/api/routes").json()
        assert body["ok"] is True and body["refused"] == [] and len(body["rules"]) == n0
        cfg.routing.routes.write_text("rules: []\n", encoding="utf-8")
        assert svc_router.reload_if_changed()[0] is False       # as the service's watcher does
        body = c.get("/api/routes").json()
        assert body["ok"] is False and any("no rules" in p for p in body["refused"])
        assert len(body["rules"]) == n0 and body["version"] == svc_router.version   # still in force
    finally:
        svc_router.close()


class _Control:
    def __init__(self):
        self.calls = []

    def set_chute_enabled(self, chute_id, enabled):
        return True

    def pause(self):
        pass

    def resume(self):
        pass

    def reload_routes(self, force: bool = False):
        self.calls.append(force)
        return (True, "forced") if force else (False, "route file refused: no rules")


class _OldControl(_Control):
    def reload_routes(self):       # a control that cannot be forced
        self.calls.append(False)
        return False, "refused"


@pytest.fixture
def store(tmp_path):
    s = RecordStore(tmp_path / "records.db")
    yield s
    s.close()


def test_forced_reload_needs_the_token_and_reaches_the_control(store):
    ctl = _Control()
    c = TestClient(create_app(lambda: {}, store, ctl, token=TOKEN))
    assert c.post("/api/routes/reload?force=true").status_code == 401
    r = c.post("/api/routes/reload", headers=AUTH)
    assert r.status_code == 422 and "no rules" in r.json()["message"]
    r = c.post("/api/routes/reload?force=true", headers=AUTH)
    assert r.status_code == 200 and r.json()["ok"] is True
    assert ctl.calls == [False, True]
    old = _OldControl()
    c = TestClient(create_app(lambda: {}, store, old, token=TOKEN))
    r = c.post("/api/routes/reload?force=true", headers=AUTH)
    assert r.status_code == 501 and old.calls == []
