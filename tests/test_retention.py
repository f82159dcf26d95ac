"""Retention on real SQLite files: old records, journal rows, delivered uploads, audit rows and
manifest rows are deleted in small batches; what is young, pending or not yet forwarded stays;
the record writer commits between two batches (a purge never holds it up for its whole length)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time

import pytest

from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.config.retention import RetentionConfig
from sorter.controller.records.retention import DAY_S, Retention, RetentionThread
from sorter.controller.records.schema import connect
from sorter.controller.records.store import RecordStore, RecordWriter
from sorter.controller.routing.manifest import Manifest
from tests.conftest import write_line_config
from tests.test_records import rec

NOW = time.time()
OLD, YOUNG = NOW - 500 * DAY_S, NOW - 2 * DAY_S


def fill(tmp_path, old=95, young=30):
    db = tmp_path / "records.db"
    with RecordStore(db) as store:
        store.write_many([rec(i, ended=OLD + i) for i in range(old)] + [rec(1000 + i, ended=YOUNG) for i in range(young)])
    conn = connect(db)
    conn.executemany("INSERT INTO journal VALUES (?, ?, ?, ?)",
                     [("run0", 1, OLD, OLD), ("run0", 2, OLD, OLD), ("run9", 1, NOW, NOW)])
    conn.executemany("INSERT INTO outbox (target, key, event, body, created_wall, state) VALUES (?, ?, 'arrival', '{}', ?, ?)",
                     [("sf", "a", OLD, "sent"), ("sf", "b", OLD, "dead"), ("sf", "c", OLD, "pending"),
                      ("sf", "d", YOUNG, "sent")])
    conn.executemany("INSERT INTO audit (wall, user, role, action, result) VALUES (?, 'ops', 'admin', 'pause', 'ok')",
                     [(OLD,), (YOUNG,)])
    conn.close()
    return db


def manifest(tmp_path, old=40, young=15):
    path = tmp_path / "manifest.db"
    m = Manifest(path)
    m.upsert([(f"OLD{i:05d}", "泽国镇") for i in range(old)] + [(f"NEW{i:05d}", "泽国镇") for i in range(young)])
    m.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE manifest SET updated = julianday('now') - 100 WHERE waybill LIKE 'OLD%'")
    conn.commit()
    conn.close()
    return path


def count(db, sql):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


CFG = RetentionConfig(records_days=400, journal_days=7, manifest_days=60, batch_rows=10, pause_ms=0)


def test_old_rows_go_in_batches_young_and_pending_ones_stay(tmp_path):
    db, mdb = fill(tmp_path), manifest(tmp_path)
    batches = []
    r = Retention(db, mdb, CFG, on_batch=lambda table, n: batches.append((table, n)))
    deleted = r.purge()
    assert deleted == {"parcels": 95, "journal": 2, "bad_records": 0, "outbox": 2, "audit": 1,
                       "alarm_history": 0, "manifest": 40}
    assert count(db, "SELECT COUNT(*) FROM parcels") == 30
    assert count(db, "SELECT MIN(ended_wall) FROM parcels") == pytest.approx(YOUNG)
    assert count(db, "SELECT COUNT(*) FROM journal") == 1
    assert count(db, "SELECT group_concat(key) FROM (SELECT key FROM outbox ORDER BY key)") == "c,d"  # pending kept
    assert count(mdb, "SELECT COUNT(*) FROM manifest WHERE waybill LIKE 'NEW%'") == 15
    assert count(mdb, "SELECT COUNT(*) FROM manifest") == 15
    # never more than batch_rows in one transaction
    assert max(n for _, n in batches) <= 10 and sum(n for t, n in batches if t == "parcels") == 95
    assert len([b for b in batches if b[0] == "parcels"]) == 10
    assert r.purge() == {"parcels": 0, "journal": 0, "bad_records": 0, "outbox": 0, "audit": 0,
                         "alarm_history": 0, "manifest": 0}


def test_records_not_yet_forwarded_stay(tmp_path):
    """The site database's forwarder has read up to id 40: the older rows after it must wait."""
    db = fill(tmp_path)
    conn = connect(db)
    conn.execute("INSERT INTO cursors VALUES ('site', 40), ('outbox', 70)")
    conn.close()
    deleted = Retention(db, None, CFG).purge()
    assert deleted["parcels"] == 40
    assert count(db, "SELECT MIN(id) FROM parcels") == 41


def test_zero_days_keeps_everything(tmp_path):
    db, mdb = fill(tmp_path), manifest(tmp_path)
    keep = RetentionConfig(records_days=0, journal_days=0, manifest_days=0)
    assert Retention(db, mdb, keep).purge() == {}
    assert count(db, "SELECT COUNT(*) FROM parcels") == 125 and count(mdb, "SELECT COUNT(*) FROM manifest") == 55


def test_the_writer_commits_between_two_batches(tmp_path):
    """While a long purge goes on, each new record is committed before the next batch: the purge
    takes the write lock one batch at a time (were it one long transaction, the writer's commit
    would wait for its end, and this flush would fail)."""
    db = fill(tmp_path, old=300, young=0)
    writer = RecordWriter(db)
    written = []

    def between(table, n):
        if table == "parcels":
            pid = 5000 + len(written)
            writer.submit(rec(pid))
            written.append(writer.flush(timeout=30))

    try:
        Retention(db, None, RetentionConfig(records_days=400, batch_rows=20, pause_ms=0), on_batch=between).purge()
    finally:
        assert writer.close()
    assert len(written) == 15 and all(written)
    assert count(db, "SELECT COUNT(*) FROM parcels WHERE parcel_id >= 5000") == 15
    assert count(db, "SELECT COUNT(*) FROM parcels") == 15


def test_a_locked_database_is_an_error_in_the_status_not_a_crash(tmp_path):
    """Someone holds the database's write lock all night: the purge gives up, says why on the
    page (`retention.last.error`), and is tried again at the next run."""
    db = fill(tmp_path)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        t = RetentionThread(Retention(db, None, CFG, busy_timeout_s=0.2))
        status = t.run_now()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert status["error"] and "locked" in status["error"]
    assert t.status()["last"]["error"] == status["error"] and not t.status()["running"]
    assert t.status()["next_wall"] > time.time()
    assert count(db, "SELECT COUNT(*) FROM parcels") == 125  # nothing half-done


def test_next_run_is_the_next_time_of_day():
    r = Retention("x.db", None, RetentionConfig(at="03:30"))
    at = lambda *a: dt.datetime(*a).timestamp()  # noqa: E731 - local time, as the purge runs
    assert r.next_run(at(2026, 12, 2, 2, 0)) == at(2026, 12, 2, 3, 30)
    assert r.next_run(at(2026, 12, 2, 3, 30)) == at(2026, 12, 3, 3, 30)
    assert r.next_run(at(2026, 12, 31, 23, 59)) == at(2027, 1, 1, 3, 30)


def test_a_bad_time_of_day_names_its_line(tmp_path):
    path = write_line_config(tmp_path, overrides={"retention": {"at": "25:61", "records_days": 30}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(p.startswith(f"{path}:") and "retention.at" in p and "HH:MM" in p for p in err.value.problems)
