"""Routing while the simulated line runs (reloads that fail and succeed between parcels), the
routing HTTP endpoints, and manifest files: GBK/UTF-8 CSV with every column, JSON, old files."""

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import tests.linedrive as linedrive
from sorter.controller.api.routing import router as routing_router
from sorter.controller.config.load import load_config
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import Router

ROOT = Path(__file__).resolve().parents[1]


def line_in(tmp: Path, **sim):
    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    shutil.copy(ROOT / "config/wenling-routes.yaml", tmp / "routes.yaml")
    cfg = linedrive.tmp_config(cfg, tmp, **sim)
    routing = cfg.routing.model_copy(update={"routes": tmp / "routes.yaml"})
    return cfg.model_copy(update={"routing": routing})


def test_reload_fails_then_succeeds_while_the_line_runs(tmp_path, monkeypatch):
    cfg = line_in(tmp_path, p_sort_code=0.2, p_address=0.2)
    routes = tmp_path / "routes.yaml"
    good = routes.read_text(encoding="utf-8")
    results = []

    class Reloading(Router):
        n = 0

        def decide(self, reads, available=lambda c: True):
            Reloading.n += 1
            if Reloading.n == 60:      # a bad edit: refused, the table in force stays
                routes.write_text(good.replace("chute: C06}", "chute: C66}", 1), encoding="utf-8")
                results.append(self.reload())
            if Reloading.n == 120:     # a good edit: swapped in between two parcels
                routes.write_text(good + "# edited\n", encoding="utf-8")
                results.append(self.reload())
            return super().decide(reads, available)

    monkeypatch.setattr(linedrive, "Router", Reloading)
    d = linedrive.drive(cfg, 200)
    (ok1, msg1), (ok2, msg2) = results
    assert not ok1 and f"{routes}:" in msg1 and "C66" in msg1
    assert ok2
    versions = Counter(r["routing_version"] for r in d.records)
    assert len(versions) == 2 and min(versions.values()) > 40, versions
    assert d.truth["mis_sorted"] == 0, d.truth["mis_sorts"][:5]
    dests = {r["destination"] for r in d.records if r["outcome"] == "sorted"}
    assert any(x and x.startswith("576-W") for x in dests)     # parcels advised by sort code only
    outcomes = Counter(r["outcome"] for r in d.records)
    assert outcomes["sorted"] >= d.truth["expected_sorted"] - 2, (outcomes, d.truth["expected_sorted"])


def test_sim_advice_kinds(tmp_path):
    cfg = line_in(tmp_path, p_sort_code=0.3, p_address=0.3)
    from sorter.plc.sim.advice import SimAdvice
    from sorter.plc.sim.parcels import ParcelPlan
    adv, plan = SimAdvice(cfg, 5), ParcelPlan(cfg, 5)
    rows = [adv.row(plan.get(i)) for i in range(300)]
    kinds = Counter("town" if r[1] else "sort_code" if r[2] else "address" for r in rows)
    assert kinds["town"] > 60 and kinds["sort_code"] > 60 and kinds["address"] > 60
    assert all(len(r) == 4 for r in rows)


# ---- HTTP ------------------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    cfg = line_in(tmp_path)
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
    r = c.post("/api/routes/test", json={"waybill": "75123456789012", "sort_code": "576-W06 11"})
    assert r.status_code == 200 and r.json()["chute"] == "C06"
    r = c.post("/api/routes/test", json={"waybill": "75123456789012"})
    assert r.json()["outcome"] == "no_route"
    assert c.post("/api/routes/test", json={"waybill": "x", "sort_code": "!!"}).status_code == 422
    assert c.post("/api/routes/test", json={"nope": 1}).status_code == 422


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
    r = c.post("/api/routes/test", json={"waybill": "SF1423456789012"})
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
    assert m.import_csv(tmp_path / "b.csv").imported == 1
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
