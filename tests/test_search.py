"""Search and the parcel's story, over real HTTP on a real record database; and the records
migration that adds the keying columns, the audit and the alarm history to an older file."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from sorter.controller.api.app import create_app
from sorter.controller.records.schema import KEYED_NAMES, SCHEMA_VERSION, connect
from sorter.controller.records.store import RecordStore
from tests.test_api import FakeControl, make_status, serve
from tests.test_keying import EVIL


@pytest.fixture
def served(tmp_path):
    store = RecordStore(tmp_path / "records.db")
    now = time.time()
    recs = []
    for i in range(40):
        town, chute = (("泽国镇", "C06") if i % 2 else ("大溪镇", "C07"))
        recs.append({"run_id": "r1", "parcel_id": i, "ended_wall": now - 3600 + i * 60, "reads": [
            {"camera": "top", "symbology": "code128", "text": f"SF14234567{i:05d}"}],
            "waybill": f"SF14234567{i:05d}", "carrier": "SF" if i % 3 else "YTO", "destination": town,
            "chute": chute, "actual_chute": chute, "outcome": "sorted", "reason": "", "rule": f"town={town}",
            "routing_version": "v7", "fire_error_ms": 0.4, "decision_ms": 2.5, "induct_wall": now - 3602 + i * 60,
            "decided_wall": now - 3601 + i * 60})
    recs.append({"run_id": "r1", "parcel_id": 99, "ended_wall": now - 1, "outcome": "no_route", "waybill": EVIL,
                 "destination": EVIL, "reads": [{"camera": "top", "symbology": "qrcode", "text": EVIL}],
                 "reason": "unknown carrier", "actual_chute": "REJECT"})
    store.write_many(recs)
    srv = serve(create_app(make_status, store, FakeControl(), token="t"))
    srv.now = now
    yield srv
    srv.stop()
    store.close()


def test_search_by_each_criterion(served):
    get = lambda **p: httpx.get(served.url + "/api/search", params=p).json()  # noqa: E731
    assert [r["parcel_id"] for r in get(waybill="SF1423456700007")] == [7]
    assert {r["destination"] for r in get(town="泽国镇")} == {"泽国镇"} and len(get(town="泽国镇")) == 20
    assert len(get(carrier="YTO")) == 14
    assert {r["parcel_id"] for r in get(chute="REJECT")} == {99}
    assert [r["parcel_id"] for r in get(outcome="no_route")] == [99]
    rows = get(since_wall=served.now - 3600 + 10 * 60 - 1, until_wall=served.now - 3600 + 13 * 60)
    assert [r["parcel_id"] for r in rows] == [12, 11, 10]                    # newest first, until excluded
    assert len(get(town="泽国镇", carrier="SF", limit=3)) == 3
    assert get(waybill=EVIL)[0]["destination"] == EVIL
    r = httpx.get(served.url + "/api/search", params={"outcome": "exploded"})
    assert r.status_code == 422 and "unknown outcome" in r.json()["detail"]
    assert httpx.get(served.url + "/api/search", params={"since_wall": "nan"}).status_code == 422
    assert httpx.get(served.url + "/api/search", params={"chute": "<b>"}).status_code == 422


def test_the_parcels_story(served):
    s = httpx.get(served.url + "/api/parcels/r1/7").json()
    assert s["reads"] == [{"camera": "top", "symbology": "code128", "text": "SF1423456700007"}]
    assert s["decision"]["rule"] == "town=泽国镇" and s["decision"]["routing_version"] == "v7"
    assert s["decision"]["decided_after_induct_s"] == pytest.approx(1.0, abs=0.01)
    assert s["chute"] == {"chosen": "C06", "chosen_name": None, "reached": "C06", "reached_name": None}
    assert s["fire"]["error_ms"] == 0.4 and s["confirm"] == "confirmed" and s["outcome"] == "sorted"
    assert s["keyed"] is None and "read_position" in s["not_recorded"]
    assert httpx.get(served.url + "/api/parcels/r1/12345").status_code == 404
    assert httpx.get(served.url + "/parcel").status_code == 200


def test_an_older_database_is_migrated_keeping_its_records(tmp_path):
    path = tmp_path / "old.db"
    conn = connect(path)
    conn.execute("INSERT INTO parcels (run_id, parcel_id, ended_wall, reads, outcome, reason, written_wall) "
                 "VALUES ('r0', 1, 1.0, '[]', 'no_read', '', 1.0)")
    # as a version-4 file was: no keying columns, no audit, no alarm history
    for col in KEYED_NAMES:
        conn.execute("DROP INDEX IF EXISTS parcels_keyed_waybill")
        conn.execute(f"ALTER TABLE parcels DROP COLUMN {col}")
    conn.execute("DROP TABLE audit")
    conn.execute("DROP TABLE alarm_history")
    conn.execute("PRAGMA user_version=4")
    conn.close()
    with RecordStore(path) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.key_parcel("r0", 1, waybill="SF1423456789012", carrier="SF", destination="泽国镇",
                                chute="C06", rule="town=泽国镇", reason="", by="sam", via="review")
        rec = store.parcel("r0", 1)
        assert rec["outcome"] == "no_read" and rec["keyed_chute"] == "C06"
        store.add_audit("sam", "supervisor", "key", "r0/1", "ok")
        assert store.recent_audit(1)[0]["action"] == "key"
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(parcels)")]
    assert set(KEYED_NAMES) <= set(cols)
