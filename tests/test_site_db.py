"""The site database: a real PostgreSQL cluster (tests/servers.py) fed from a real local SQLite
records file by the forwarder. PostgreSQL is stopped mid-stream and started again: no record is
lost or doubled, and they arrive in the order the line recorded them."""

from __future__ import annotations

import sqlite3

import pytest

from sorter.controller.records.schema import FIELD_NAMES, SCHEMA_VERSION, SchemaError
from sorter.controller.records.site_db import SITE_VERSION, ensure_schema, redact
from sorter.controller.records.site_sync import SiteForwarder
from sorter.controller.records.store import RecordStore
from tests.servers import postgres  # noqa: F401 - the fixture
from tests.test_processes import wait_for

psycopg = pytest.importorskip("psycopg")


def record(run_id: str, pid: int, outcome: str = "sorted") -> dict:
    return {"run_id": run_id, "parcel_id": pid, "induct_wall": 1_700_000_000.0 + pid, "ended_wall": 1_700_000_001.0 + pid,
            "reads": [{"camera": "top", "symbology": "code128", "text": f"ZT{pid:012d}"}],
            "waybill": f"ZT{pid:012d}", "carrier": "ZTO", "destination": "泽国镇", "chute": "C03",
            "actual_chute": "C03", "outcome": outcome, "reason": "", "routing_version": "abc", "rule": "r1"}


def site_rows(pg) -> list[tuple]:
    with pg.connect() as c:
        return c.execute("SELECT id, line_id, local_id, run_id, parcel_id FROM parcels ORDER BY id").fetchall()


def local_keys(path) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT id, run_id, parcel_id FROM parcels ORDER BY id").fetchall()


def test_site_schema_is_the_local_schema_and_migrates(postgres):
    with postgres.connect() as c:
        assert ensure_schema(c) == 0
        cols = {r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'parcels'")}
        assert set(FIELD_NAMES) | {"line_id", "local_id", "written_wall"} <= cols
        assert ensure_schema(c) == SITE_VERSION  # a second line starting: nothing to do
        # a database made by a version-1 program (no rule, no sort_code column) gains them, rows kept
        c.execute("ALTER TABLE parcels DROP COLUMN rule")
        c.execute("ALTER TABLE parcels DROP COLUMN sort_code")
        c.execute("INSERT INTO parcels (line_id, local_id, run_id, parcel_id, ended_wall, reads, outcome, reason, "
                  "written_wall) VALUES ('L0', 1, 'old', 1, 1.0, '[]', 'sorted', '', 1.0)")
        c.execute("UPDATE sorter_schema SET version = 1")
        assert ensure_schema(c) == 1
        cols = {r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'parcels'")}
        assert {"rule", "sort_code"} <= cols
        assert c.execute("SELECT count(*) FROM parcels WHERE run_id = 'old'").fetchone()[0] == 1
        # a database of a newer program is refused, not written
        c.execute("UPDATE sorter_schema SET version = %s", (SCHEMA_VERSION + 1,))
        with pytest.raises(SchemaError, match="newer than this program"):
            ensure_schema(c)


def test_a_line_not_yet_upgraded_still_shares_the_site_database(postgres):
    """A centre upgrades its lines one at a time. The version the site database keeps is that of its
    parcels table, so a line whose program is one record schema version behind (a change to the
    line's own file only, as 8 was) joins the database a newer line made, and sends records."""
    assert SITE_VERSION < SCHEMA_VERSION          # version 8 changed the alarm history, not the parcels
    with postgres.connect() as c:
        ensure_schema(c)
        assert c.execute("SELECT version FROM sorter_schema").fetchall() == [(SITE_VERSION,)]
        # a database the last program wrote its own version into is set back, no column touched
        c.execute("UPDATE sorter_schema SET version = %s", (SCHEMA_VERSION,))
        assert ensure_schema(c) == SCHEMA_VERSION
        assert c.execute("SELECT version FROM sorter_schema").fetchall() == [(SITE_VERSION,)]
        # what the older line's program checks: it refuses a version above its own (7)
        assert c.execute("SELECT max(version) FROM sorter_schema").fetchone()[0] <= SCHEMA_VERSION - 1


def test_password_is_not_shown():
    assert redact("postgresql://sorter:s3cret@db:5432/site") == "postgresql://sorter:***@db:5432/site"
    assert redact("postgresql://sorter@db/site") == "postgresql://sorter@db/site"


def test_records_wait_locally_while_postgres_is_down_and_arrive_once_in_order(postgres, tmp_path):
    db = tmp_path / "records.db"
    store = RecordStore(db)
    store.write_many(record("run-a", i) for i in range(1, 151))
    fwd = SiteForwarder(db, postgres.url, "L1", batch=40, retry_max_s=0.5)
    fwd.start()
    try:
        wait_for(lambda: fwd.backlog == 0 and fwd.sent == 150, 60, "the first 150 records")
        assert fwd.connected
        postgres.stop()
        store.write_many(record("run-a", i) for i in range(151, 301))  # the line goes on sorting
        wait_for(lambda: not fwd.connected and fwd.backlog == 150, 30, "the outage to be seen, with its backlog")
        st = fwd.status()
        assert st["last_error"] and st["down_since_wall"] is not None
        postgres.start()
        wait_for(lambda: fwd.backlog == 0 and fwd.sent == 300, 60, "the backlog to be sent")
        assert fwd.status()["connected"] and fwd.status()["down_since_wall"] is None
    finally:
        fwd.stop()
        store.close()
    rows = site_rows(postgres)
    local = local_keys(db)
    assert len(rows) == 300 and len({(r[3], r[4]) for r in rows}) == 300
    assert [(r[2], r[3], r[4]) for r in rows] == local  # every record, once, in the line's order
    assert {r[1] for r in rows} == {"L1"}


def test_a_crash_before_the_cursor_moved_sends_again_and_nothing_is_doubled(postgres, tmp_path):
    db = tmp_path / "records.db"
    with RecordStore(db) as store:
        store.write_many(record("run-b", i) for i in range(1, 101))
    fwd = SiteForwarder(db, postgres.url, "L2", batch=30)
    fwd.start()
    wait_for(lambda: fwd.sent == 100, 60, "100 records")
    fwd.stop()
    # as if the forwarder died after PostgreSQL committed, before the local cursor was written
    with sqlite3.connect(db) as c:
        c.execute("UPDATE cursors SET last_id = 40 WHERE name = 'site_db'")
    fwd = SiteForwarder(db, postgres.url, "L2", batch=30)
    assert fwd.backlog == 60
    fwd.start()
    wait_for(lambda: fwd.backlog == 0 and fwd.duplicates == 60, 60, "the resend")
    fwd.stop()
    assert fwd.sent == 0
    assert len(site_rows(postgres)) == 100


def test_an_unreachable_site_database_at_start_does_not_stop_the_forwarder(postgres, tmp_path):
    db = tmp_path / "records.db"
    with RecordStore(db) as store:
        store.write_many(record("run-c", i) for i in range(1, 11))
    postgres.stop()
    fwd = SiteForwarder(db, postgres.url, "L3", retry_max_s=0.3, connect_timeout_s=1)
    fwd.start()
    try:
        wait_for(lambda: fwd.errors >= 2, 30, "failed connection attempts")
        assert fwd.backlog == 10 and not fwd.connected
        postgres.start()
        wait_for(lambda: fwd.sent == 10, 60, "the records after PostgreSQL started")
    finally:
        fwd.stop()
