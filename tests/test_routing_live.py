"""Routing while the real timing loop runs (reloads that fail and succeed between parcels, on a
virtual clock), the routing HTTP endpoints, and manifest files: GBK/UTF-8 CSV with every column,
JSON, old files."""

import json
import sqlite3
from collections import Counter
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sorter.controller.api.routing import router as routing_router
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import Router
from sorter.messages import InstallRouting
from sorter.plc.sim.parcels import ParcelPlan
from tests.virtual_line import WALL0, VirtualLine, check_invariants


def test_reload_fails_then_succeeds_while_the_line_runs(example_config):
    """As the service does it: the routing files are parsed in the service process (here, a Router
    of its own); a refused file changes nothing, a good one reaches the timing loop as InstallRouting
    and routes every parcel decided after it."""
    cfg = example_config(sim__p_sort_code=0.2, sim__p_address=0.2, sim__rate_pph=12000)
    routes = cfg.routing.routes
    good = routes.read_text(encoding="utf-8")
    plan = ParcelPlan(cfg, 1)
    line = VirtualLine(cfg, plan, 200, 1)
    service = Router.from_config(cfg)
    results = []

    def bad_edit():     # refused: the table in force stays, nothing is sent
        routes.write_text(good.replace("chute: C06}", "chute: C66}", 1), encoding="utf-8")
        results.append((line.now_s, *service.reload()))

    def good_edit():    # swapped in between two parcels
        routes.write_text(good + "# edited\n", encoding="utf-8")
        ok, msg = service.reload()
        results.append((line.now_s, ok, msg))
        if ok:
            line.send(InstallRouting(service.state))

    t_bad, t_good = plan.get(60).head_s, plan.get(120).head_s
    line.at(t_bad, bad_edit)
    line.at(t_good, good_edit)
    run = line.run()
    service.close()
    check_invariants(run)
    (_, ok1, msg1), (_, ok2, _) = results
    assert not ok1 and f"{routes}:" in msg1 and "C66" in msg1
    assert ok2
    first = run.records[0]["routing_version"]
    assert service.version != first
    # decided before the good edit: the first version; after it: the new one
    for p in run.parcels:
        if p.record["decided_wall"] is None:
            continue
        decided_s = p.record["decided_wall"] - WALL0 - line.t0
        assert p.record["routing_version"] == (first if decided_s < t_good else service.version), p.index
    versions = Counter(r["routing_version"] for r in run.records)
    assert len(versions) == 2 and min(versions.values()) > 40, versions
    dests = {r["destination"] for r in run.records if r["outcome"] == "sorted"}
    assert any(x and x.startswith("576-W") for x in dests)     # parcels advised by sort code only
    assert {p.index for p in run.sortable()} <= {p.index for p in run.with_outcome("sorted")}


def test_sim_advice_kinds(example_config):
    cfg = example_config(sim__p_sort_code=0.3, sim__p_address=0.3)
    from sorter.plc.sim.advice import SimAdvice
    adv, plan = SimAdvice(cfg, 5), ParcelPlan(cfg, 5)
    rows = [adv.row(plan.get(i)) for i in range(300)]
    kinds = Counter("town" if r[1] else "sort_code" if r[2] else "address" for r in rows)
    assert kinds["town"] > 60 and kinds["sort_code"] > 60 and kinds["address"] > 60
    assert all(len(r) == 4 for r in rows)


# ---- HTTP ------------------------------------------------------------------------------------
@pytest.fixture
def client(example_config):
    cfg = example_config()
    svc = SimpleNamespace(cfg=cfg, token="s3cret", status=lambda: {"line": {"routing_version": "abc"}})
    app = FastAPI()
    app.include_router(routing_router(svc))
    return TestClient(app), cfg


def test_api_routes_and_test(client):
    c, cfg = client
    r = c.get("/api/routes")
    body = r.json()
    assert r.status_code == 200 and body["ok"] and len(body["version"]) == 12 and body["version_in_force"] == "abc"
    assert body["rules"][5]["town"] == ["泽国镇"] and body["default"] == "MANUAL"
    # it tells what the manifest says of a waybill (town, address, phone): the token is needed
    assert c.post("/api/routes/test", json={"waybill": "75123456789012"}).status_code == 401
    h = {"Authorization": "Bearer s3cret"}
    r = c.post("/api/routes/test", json={"waybill": "75123456789012", "sort_code": "576-W06 11"}, headers=h)
    assert r.status_code == 200 and r.json()["chute"] == "C06"
    r = c.post("/api/routes/test", json={"waybill": "75123456789012"}, headers=h)
    assert r.json()["outcome"] == "no_route"
    assert c.post("/api/routes/test", json={"waybill": "x", "sort_code": "!!"}, headers=h).status_code == 422
    assert c.post("/api/routes/test", json={"nope": 1}, headers=h).status_code == 422


def test_api_manifest_upload(client):
    c, cfg = client
    rows = [{"waybill": "75123456789012", "town": "泽国镇"}, {"运单号": "SF1423456789012", "三段码": "576-W07-01"},
            {"waybill": "bad!", "town": "x"}]
    assert c.post("/api/manifest", json=rows).status_code == 401
    assert c.post("/api/manifest", json=rows, headers={"Authorization": "Bearer nope"}).status_code == 401
    h = {"Authorization": "Bearer s3cret"}
    r = c.post("/api/manifest", json=rows, headers=h)
    assert r.status_code == 200 and r.json()["imported"] == 2 and r.json()["bad_rows"][0]["line"] == 3
    csv_gbk = "运单号,目的地\n75000000000009,大溪镇\n".encode("gbk")
    r = c.post("/api/manifest", content=csv_gbk, headers=h | {"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["imported"] == 1 and r.json()["encoding"] == "gb18030"
    r = c.post("/api/manifest", content=b"{not json", headers=h | {"Content-Type": "application/json"})
    assert r.status_code == 400
    r = c.post("/api/manifest", content=b"x" * 10, headers=h | {"Content-Length": str(1 << 30)})
    assert r.status_code == 413
    m = Manifest(cfg.routing.manifest, readonly=True)
    assert m.lookup("75000000000009") == "大溪镇" and m.lookup_row("SF1423456789012").sort_code == "576-W07-01"
    m.close()
    r = c.post("/api/routes/test", json={"waybill": "SF1423456789012"}, headers=h)
    assert r.json()["chute"] == "C07"


# ---- manifest files --------------------------------------------------------------------------
FULL = ("运单号,快递公司,乡镇,三段码,收件地址,服务类型,重量(kg),拦截\n"
        "75123456789012,ZTO,泽国,,,标快,1.25,否\n"
        "SF1423456789012,SF,,571-W30 02,,特快,0.4,\n"
        "YT7512345678901,,,,浙江省台州市温岭市泽国镇横径村18号,,,\n"
        "JT0012345678901,JT,大溪镇,,,,,是\n"
        "JD0012345678901,JD,大溪镇,,,,heavy,\n"
        "JDX123456789012,JD,大溪镇,,,,,maybe\n"
        "EA123456785CN,,,,,,,\n"
        "RR123456785CN,cn post,温峤镇,,,,,\n"
        "9812345678901,,,57*1,,,,\n")


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig"])
def test_import_every_column(tmp_path, encoding):
    p = tmp_path / "full.csv"
    p.write_bytes(FULL.encode(encoding))
    m = Manifest(tmp_path / "m.db")
    seen = []
    rep = m.import_csv(p, progress=lambda done, total, rows: seen.append((done, total, rows)))
    assert rep.imported == 4, rep.summary()
    assert [n for n, _ in rep.bad_rows] == [6, 7, 8, 9, 10]
    probs = dict(rep.bad_rows)
    assert "bad weight" in probs[6] and "bad intercept" in probs[7] and "empty town" in probs[8]
    assert "carrier" in probs[9] and "sort code" in probs[10]
    assert seen and seen[-1][0] == seen[-1][1] == p.stat().st_size
    row = m.lookup_row("75123456789012")
    assert (row.town, row.carrier, row.service, row.weight_kg, row.intercept) == ("泽国", "ZTO", "标快", 1.25, 0)
    assert m.lookup_row("SF1423456789012").sort_code == "571-W30-02"
    assert m.lookup_row("YT7512345678901").address.endswith("横径村18号")
    assert m.lookup_row("JT0012345678901").intercept == 1
    # re-import replaces the whole row: the newest advice counts
    (tmp_path / "b.csv").write_text("waybill,address\n75123456789012,温岭市松门镇1号\n", encoding="utf-8")
    rep = m.import_csv(tmp_path / "b.csv")
    assert (rep.imported, rep.updated) == (0, 1)     # a waybill the manifest had: updated, not new
    row = m.lookup_row("75123456789012")
    assert row.town is None and row.address == "温岭市松门镇1号" and row.carrier is None
    assert m.count() == 4
    m.close()


def test_import_json_array_and_lines(tmp_path):
    m = Manifest(tmp_path / "m.db")
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"rows": [{"waybill": "75123456789012", "town": "泽国镇", "weight_kg": 2, "intercept": True},
                                      {"waybill": "", "town": "x"}, [1, 2]]}, ensure_ascii=False), encoding="utf-8")
    rep = m.import_json(a)
    assert rep.imported == 1 and [n for n, _ in rep.bad_rows] == [2, 3]
    assert m.lookup_row("75123456789012").intercept == 1
    b = tmp_path / "b.jsonl"
    b.write_text('{"waybill": "SF1423456789012", "sort_code": "576-W07-02"}\n{oops\n\n'
                 '{"waybill": "YT7512345678901", "address": "温岭市横径村"}\n', encoding="utf-8")
    rep = m.import_json(b)
    assert rep.imported == 2 and rep.bad_rows[0][0] == 2
    c = tmp_path / "c.json"
    c.write_text("[{]", encoding="utf-8")
    assert m.import_json(c).error
    m.close()


def test_old_manifest_file_is_migrated(tmp_path):
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("CREATE TABLE manifest (waybill TEXT PRIMARY KEY, town TEXT NOT NULL, sort_code TEXT, address TEXT, "
               "updated REAL NOT NULL DEFAULT (julianday('now'))) WITHOUT ROWID")
    db.execute("INSERT INTO manifest (waybill, town) VALUES ('75123456789012', '泽国镇')")
    db.commit()
    db.close()
    r = Manifest(tmp_path / "m.db", readonly=True)     # the controller may be the first to open it
    assert r.lookup_row("75123456789012").town == "泽国镇"
    w = Manifest(tmp_path / "m.db")
    w.upsert([("SF1423456789012", None, "576-W07-01")])
    assert r.lookup_row("SF1423456789012").sort_code == "576-W07-01"
    r.close()
    w.close()
