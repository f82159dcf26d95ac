"""Keying a no-read by hand and the manual-sort station, over real HTTP against the real service:
the keyed waybill is routed by the routing table in force (its manifest row), the record is
completed (keyed code, destination, chute, who, when) and keeps its original outcome."""

from __future__ import annotations

import time
from contextlib import closing

import numpy as np
import pytest

from sorter.controller.cli import users as users_cli
from sorter.controller.config.load import load_config
from sorter.controller.config.vision import noread_dir
from sorter.controller.routing.manifest import Manifest
from tests.conftest import load_line_config
from tests.test_auth import PASSWORDS, Line

EVIL = "<img src=x onerror=alert(1)>"


def records(now: float) -> list[dict]:
    base = {"run_id": "r1", "reads": [], "reason": "", "routing_version": "v1"}
    return [
        {**base, "parcel_id": 1, "ended_wall": now - 30, "outcome": "no_read", "reason": "no waybill among 0 reads",
         "actual_chute": "REJECT"},
        {**base, "parcel_id": 2, "ended_wall": now - 20, "outcome": "multi_read",
         "reads": [{"camera": "top", "symbology": "code128", "text": "SF1423456789012"},
                   {"camera": "top", "symbology": "code128", "text": "YT7512345678901"}],
         "reason": "2 different waybills", "actual_chute": "REJECT"},
        {**base, "parcel_id": 3, "ended_wall": now - 10, "outcome": "sorted", "waybill": "YT7512345678901",
         "carrier": "YTO", "destination": "泽国镇", "chute": "C06", "actual_chute": "C06", "rule": "rule 6"},
        {**base, "parcel_id": 4, "ended_wall": now - 5, "outcome": "no_route", "waybill": "JT0012345678901",
         "carrier": "JT", "reason": "waybill JT0012345678901 not in manifest", "actual_chute": "REJECT"},
    ]


@pytest.fixture
def line(tmp_path):
    cfg = load_line_config(tmp_path / "line")
    m = Manifest(cfg.routing.manifest)
    m.upsert([("SF1423456789012", "泽国镇"), ("JT0012345678901", "大溪镇"), ("YT7512345678901", "泽国镇")])
    m.close()
    path = tmp_path / "line" / "line.yaml"
    users_cli.add_user(load_config(path), "sam", "supervisor", PASSWORDS["sam"])
    users_cli.add_user(load_config(path), "vera", "viewer", PASSWORDS["vera"])
    ln = Line(load_config(path))
    ln.svc.store.write_many(records(time.time()))
    # the frames a camera kept of the no-read (NoReadKeeper's names: run_parcel_camera_k.jpg)
    d = noread_dir(ln.cfg)
    d.mkdir(parents=True, exist_ok=True)
    import cv2
    ok, buf = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))
    (d / "r1_1_top_0.jpg").write_bytes(buf.tobytes())
    (d / "r1_9_top_0.jpg").write_bytes(buf.tobytes())   # another parcel's
    yield ln
    ln.close()


def test_review_lists_what_needs_keying_with_its_frames(line):
    rows = line.get("/api/review").json()
    assert [(r["parcel_id"], r["outcome"]) for r in rows] == [(2, "multi_read"), (1, "no_read")]
    frames = {r["parcel_id"]: [f["file"] for f in r["frames"]] for r in rows}
    assert frames == {1: ["r1_1_top_0.jpg"], 2: []}
    assert line.get(rows[1]["frames"][0]["url"]).headers["content-type"] == "image/jpeg"


def test_keying_completes_the_record_and_keeps_the_outcome(line):
    c, csrf = line.login("sam")
    with closing(c):
        r = c.post("/api/parcels/r1/1/key", json={"waybill": " SF1423456789012 "}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        d = r.json()["decision"]
        assert d["outcome"] == "sorted" and d["chute"] == "C06" and d["destination"] == "泽国镇"
        rec = r.json()["record"]
        assert rec["outcome"] == "no_read" and rec["waybill"] is None           # what the line did stays
        assert rec["keyed_waybill"] == "SF1423456789012" and rec["keyed_chute"] == "C06"
        assert rec["keyed_destination"] == "泽国镇" and rec["keyed_carrier"] == "SF"
        assert rec["keyed_by"] == "sam" and rec["keyed_via"] == "review" and rec["keyed_wall"] > time.time() - 60
        # keyed: no longer to review; found by the keyed waybill
        assert [x["parcel_id"] for x in c.get("/api/review").json()] == [2]
        assert [x["parcel_id"] for x in c.get("/api/search", params={"waybill": "SF1423456789012"}).json()] == [1]
        # text that is no waybill, a parcel that has no record
        r = c.post("/api/parcels/r1/2/key", json={"waybill": EVIL}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 422 and "not a waybill" in r.json()["detail"]
        r = c.post("/api/parcels/r1/77/key", json={"waybill": "SF1423456789012"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404
    audit = line.get("/api/audit").json()
    keyed = [(a["target"], a["result"]) for a in audit if a["action"] == "key"]
    assert ("r1/1 SF1423456789012", "ok") in keyed and ("r1/2 " + EVIL, "refused") in keyed
    story = line.get("/api/parcels/r1/1").json()
    assert story["keyed"]["by"] == "sam" and story["keyed"]["chute_name"] == "泽国镇"
    assert [a["action"] for a in story["audit"]] == ["key"]


def test_a_viewer_cannot_key(line):
    c, csrf = line.login("vera")
    with closing(c):
        r = c.post("/api/parcels/r1/1/key", json={"waybill": "SF1423456789012"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403
    assert line.get("/api/parcels/r1/1").json()["keyed"] is None


def test_station_scan_shows_the_chute_and_completes_the_record(line):
    c, csrf = line.login("sam")
    with closing(c):
        # a no_route parcel whose advice has arrived since: now it has a chute
        r = c.post("/api/station/scan", json={"waybill": "JT0012345678901"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["chute"] == "C07" and b["chute_name"] == "大溪镇"
        assert b["record"]["parcel_id"] == 4 and b["record"]["keyed_via"] == "station"
        assert b["record"]["outcome"] == "no_route"
        # a waybill this line never saw: the chute, and no record to update
        r = c.post("/api/station/scan", json={"waybill": "SF1423456789012"}, headers={"X-CSRF-Token": csrf})
        assert r.json()["chute"] == "C06" and r.json()["record"] is None
        # the station names the no-read it holds
        r = c.post("/api/station/scan", json={"waybill": "SF1423456789012", "run_id": "r1", "parcel_id": 2},
                   headers={"X-CSRF-Token": csrf})
        assert r.json()["record"]["parcel_id"] == 2 and r.json()["record"]["keyed_chute"] == "C06"
    assert line.get("/station").status_code == 200
