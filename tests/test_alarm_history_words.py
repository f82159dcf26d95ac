"""The alarm history keeps each alarm's detail key and parameters as the live alarms carry them, so
the page says a past alarm in its language too; a row kept before they were stored (schema 7) is
migrated in place and still answered, with its English text and the code's own parameters."""

from __future__ import annotations

import sqlite3

import httpx

from sorter.controller.api.app import create_app
from sorter.controller.records.schema import SCHEMA_VERSION
from sorter.controller.records.store import RecordStore
from sorter.controller.service.alarm_book import REOPEN_S, AlarmBook
from tests.test_api import make_status, serve

# alarm_history as schema version 7 made it (no detail, no params)
V7_ALARMS = """CREATE TABLE alarm_history (id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_id TEXT NOT NULL,
    code TEXT NOT NULL, severity TEXT NOT NULL, text TEXT NOT NULL, first_wall REAL NOT NULL,
    last_wall REAL NOT NULL, count INTEGER NOT NULL, cleared_wall REAL, acked_by TEXT, acked_wall REAL,
    shelved_by TEXT, shelved_until REAL)"""


def test_a_cleared_alarm_keeps_its_detail_and_parameters(tmp_path):
    t = {"now": 1_700_000_000.0}
    with RecordStore(tmp_path / "records.db") as store:
        book = AlarmBook(store.save_alarm, wall=lambda: t["now"])
        book.update([{"id": "camera_top_drops", "text": "camera top: 80% of frames dropped",
                      "detail": "camera_drops.share", "params": {"share": "80%"}},
                     {"id": "records", "text": "the record database cannot be written"}])  # no key: text only
        t["now"] += 5
        book.update([])
        t["now"] += REOPEN_S + 1
        book.update([])
        assert book.lives == {}
        hist = {h["alarm_id"]: h for h in store.alarm_history()}
    cam = hist["camera_top_drops"]
    assert cam["detail"] == "camera_drops.share" and cam["params"] == {"share": "80%", "camera": "top"}
    assert cam["text"] == "camera top: 80% of frames dropped" and cam["cleared_wall"] is not None
    assert hist["records"]["detail"] is None and hist["records"]["params"] == {}


def test_a_version_7_history_is_migrated_and_answered_with_its_text(tmp_path):
    path = tmp_path / "records.db"
    RecordStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE alarm_history")
    conn.execute(V7_ALARMS)
    conn.execute("INSERT INTO alarm_history (alarm_id, code, severity, text, first_wall, last_wall, count, "
                 "cleared_wall) VALUES ('camera_side', 'camera_down', 'warning', 'camera side: no frames', "
                 "1.0, 2.0, 1, 3.0)")
    conn.execute("PRAGMA user_version=7")
    conn.commit()
    conn.close()
    store = RecordStore(path)
    srv = None
    try:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # a new alarm after the migration is kept with its key, beside the old row
        book = AlarmBook(store.save_alarm, wall=lambda: 10.0)
        book.update([{"id": "plc_link", "text": "lost the line's I/O (reset)", "detail": "plc_link.lost",
                      "params": {"error": "reset"}}])
        srv = serve(create_app(make_status, store))
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = c.get("/api/alarms/history")
        assert r.status_code == 200
        rows = {h["alarm_id"]: h for h in r.json()}
        old, new = rows["camera_side"], rows["plc_link"]
        # the old row: its English text, and the camera from its id for the title
        assert old["detail"] is None and old["text"] == "camera side: no frames"
        assert old["params"] == {"camera": "side"} and old["cleared_wall"] == 3.0
        assert new["detail"] == "plc_link.lost" and new["params"] == {"error": "reset"}
    finally:
        if srv is not None:
            srv.stop()
        store.close()
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(alarm_history)")]
    assert cols[-2:] == ["detail", "params"]
