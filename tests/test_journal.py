"""The parcel journal (controller/records/journal.py): a row from induct until the record, so a
parcel on the belt when the controller dies still gets its record; and no record is ever replaced
by another parcel's."""

from __future__ import annotations

import sqlite3

from sorter.controller.records.journal import RESTARTED
from sorter.controller.records.store import RecordStore, RecordWriter
from sorter.controller.records.writer import close_open_journal


def rec(pid: int, run_id: str = "run1", outcome: str = "sorted", **kw) -> dict:
    r = {"run_id": run_id, "parcel_id": pid, "induct_wall": 100.0 + pid, "ended_wall": 200.0 + pid, "reads": [],
         "waybill": f"SF{pid:013d}", "outcome": outcome, "reason": "" if outcome == "sorted" else "why"}
    r.update(kw)
    return r


def journal(db) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT run_id, parcel_id FROM journal ORDER BY parcel_id").fetchall()


def test_a_record_closes_its_journal_row(tmp_path):
    db = tmp_path / "r.db"
    with RecordWriter(db) as w:
        w.open("run1", 1, 101.0)
        w.open("run1", 2, 102.0)
        w.submit(rec(1))
        assert w.flush()
        assert journal(db) == [("run1", 2)]  # parcel 2 is still on the belt
        w.submit(rec(2, outcome="no_read"))
    assert journal(db) == []
    assert RecordStore(db).counts_by_outcome("run1")["no_read"] == 1


def test_parcels_open_when_the_run_died_are_recorded_as_fault_at_the_next_start(tmp_path):
    db = tmp_path / "r.db"
    w = RecordWriter(db)
    for pid in (1, 2, 3):
        w.open("dead-run", pid, 100.0 + pid)
    w.submit(rec(1, run_id="dead-run"))
    assert w.flush()
    # (the process is killed here: parcels 2 and 3 were on the belt)
    recs = close_open_journal(db, RESTARTED, now=500.0)
    assert [(r["parcel_id"], r["outcome"], r["reason"]) for r in recs] == [(2, "fault", RESTARTED), (3, "fault", RESTARTED)]
    assert journal(db) == []
    store = RecordStore(db)
    rows = {r["parcel_id"]: r for r in store.recent(limit=10)}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["outcome"] == "sorted" and rows[2]["induct_wall"] == 102.0 and rows[3]["ended_wall"] == 500.0
    assert close_open_journal(db, RESTARTED) == []  # nothing twice
    w.close()


def test_an_id_collision_never_replaces_a_record_and_is_counted(tmp_path, caplog):
    db = tmp_path / "r.db"
    with RecordWriter(db) as w:
        w.open("run1", 1, 101.0)
        w.submit(rec(1, waybill="SF0000000000001"))
        w.open("run1", 1, 105.0)  # a restarted process numbering from 1 again
        w.submit(rec(1, waybill="SF9999999999999", outcome="no_route"))
        assert w.flush()
        assert w.collisions == 2
    store = RecordStore(db)
    [only] = store.recent()
    assert only["waybill"] == "SF0000000000001" and only["outcome"] == "sorted"
    bad = store.bad_records()
    assert len(bad) == 2 and all("collision" in b["error"] for b in bad)
    assert any("SF9999999999999" in b["raw"] for b in bad)  # the second record is kept, not lost
    assert "parcel id collision" in caplog.text
    assert journal(db) == []


def test_an_older_record_file_gains_the_journal(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:  # a version-2 file: parcels and bad_records, no journal
        from sorter.controller.records.schema import FIELDS
        cols = ", ".join(f"{n} {t}" for n, t in FIELDS)
        c.execute(f"CREATE TABLE parcels (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols}, written_wall REAL NOT NULL, "
                  "UNIQUE (run_id, parcel_id))")
        c.execute("CREATE TABLE bad_records (id INTEGER PRIMARY KEY AUTOINCREMENT, written_wall REAL NOT NULL, "
                  "error TEXT NOT NULL, raw TEXT NOT NULL)")
        c.execute("INSERT INTO parcels (run_id, parcel_id, ended_wall, reads, outcome, reason, written_wall) "
                  "VALUES ('old', 1, 1.0, '[]', 'sorted', '', 1.0)")
        c.execute("PRAGMA user_version=2")
    with RecordWriter(db) as w:
        w.open("new", 1, 2.0)
        w.submit(rec(1, run_id="new"))
    assert sum(RecordStore(db).counts_by_outcome().values()) == 2 and journal(db) == []
