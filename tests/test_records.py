"""Record store and writer on a real SQLite file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sorter.controller.records.store import OUTCOMES, SCHEMA_VERSION, RecordStore, RecordWriter, SchemaError
from tests.conftest import ROOT


def rec(pid: int, *, run_id: str = "run1", outcome: str = "sorted", ended: float | None = None, **kw):
    r = {
        "parcel_id": pid,
        "run_id": run_id,
        "induct_wall": (ended or time.time()) - 3.0,
        "decided_wall": (ended or time.time()) - 2.0,
        "ended_wall": ended if ended is not None else time.time(),
        "length_mm": 320.0,
        "reads": [{"camera": "top", "symbology": "code128", "text": f"SF{pid:012d}"}],
        "waybill": f"SF{pid:012d}",
        "carrier": "SF",
        "destination": "Town A",
        "chute": "C1",
        "actual_chute": "C1" if outcome == "sorted" else None,
        "outcome": outcome,
        "reason": "",
        "routing_version": "v1",
        "fire_error_ms": 0.4,
        "decision_ms": 2.5,
    }
    r.update(kw)
    return r


def test_schema_and_pragmas(tmp_path):
    db = tmp_path / "sub" / "records.db"
    store = RecordStore(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()
    # reopening an existing file is fine; a newer schema is refused with a clear message
    RecordStore(db).close()
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    with pytest.raises(SchemaError, match="newer"):
        RecordStore(db)


def test_store_roundtrip_and_queries(tmp_path):
    store = RecordStore(tmp_path / "r.db")
    t0 = 1_800_000_000.0
    n = store.write_many(
        [rec(1, ended=t0), rec(2, ended=t0 + 1, outcome="no_read", waybill=None, reads=[]),
         rec(3, ended=t0 + 2, outcome="no_route"), rec(4, ended=t0 + 3)]
    )
    assert n == 4
    recent = store.recent()
    assert [r["parcel_id"] for r in recent] == [4, 3, 2, 1]
    assert recent[0]["reads"][0]["text"] == "SF000000000004"
    assert recent[0]["fire_error_ms"] == 0.4
    assert [r["parcel_id"] for r in store.recent(limit=2)] == [4, 3]
    assert [r["parcel_id"] for r in store.recent(outcome="no_read")] == [2]
    assert [r["parcel_id"] for r in store.recent(since_wall=t0 + 2)] == [4, 3]
    assert [r["parcel_id"] for r in store.recent(waybill="SF000000000003")] == [3]
    counts = store.counts_by_outcome()
    assert set(OUTCOMES) <= set(counts)
    assert counts["sorted"] == 2 and counts["no_read"] == 1 and counts["lost"] == 0
    assert store.counts_by_outcome("other-run")["sorted"] == 0
    # another record with the same (run, parcel) id never replaces the first: it is kept in
    # bad_records as a collision; the very same record again (a retry) is stored once
    store.write_many([rec(4, ended=t0 + 3, outcome="lost")])
    store.write_many([rec(4, ended=t0 + 3, outcome="lost")])
    counts = store.counts_by_outcome("run1")
    assert counts["sorted"] == 2 and counts["lost"] == 0 and sum(counts.values()) == 4
    bad = store.bad_records()
    assert len(bad) == 2 and all("collision" in b["error"] and "run1/4" in b["error"] for b in bad)
    assert '"lost"' in bad[0]["raw"]
    assert store.write_many([rec(1, ended=t0)]) == 0  # a retry of what is stored: no new row, no error
    assert len(store.bad_records()) == 2 and sum(store.counts_by_outcome().values()) == 4
    # same parcel id in another run is another parcel
    store.write_many([rec(4, run_id="run2", ended=t0 + 4)])
    assert sum(store.counts_by_outcome().values()) == 5


def test_bad_records_are_stored_with_reason(tmp_path, caplog):
    store = RecordStore(tmp_path / "r.db")
    with RecordWriter(tmp_path / "r.db") as w:
        w.submit(rec(1, reads=[{"camera": "top", "symbology": "code128", "text": object()}]))
        w.submit(rec(2, outcome="exploded", fire_error_ms=float("nan"), length_mm="long"))
        w.submit(rec(3, waybill="X" * 100_000))
        w.submit({"run_id": "run1", "parcel_id": "not a number"})  # cannot be keyed
        w.submit("not even a dict")  # type: ignore[arg-type]
        w.submit(rec(4))
        assert w.flush(5)
        assert w.stats()["bad"] == 2 and w.stats()["written"] == 4
    by_id = {r["parcel_id"]: r for r in store.recent()}
    assert set(by_id) == {1, 2, 3, 4}
    assert "not JSON-serialisable" in by_id[1]["reason"]
    assert "object object" in str(by_id[1]["reads"])
    assert by_id[2]["outcome"] == "fault" and "exploded" in by_id[2]["reason"]
    assert by_id[2]["fire_error_ms"] is None and by_id[2]["length_mm"] is None
    assert len(by_id[3]["waybill"]) == 4096
    assert by_id[4]["reason"] == ""
    bad = store.bad_records()
    assert len(bad) == 2 and any("parcel_id" in b["error"] for b in bad)


def wait_until(cond, bound_s: float = 30.0) -> bool:
    """Poll `cond` until it holds; the bound only keeps a broken build from hanging."""
    end = time.monotonic() + bound_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_writer_batches_and_flushes(tmp_path):
    db = tmp_path / "r.db"
    w = RecordWriter(db)
    store = RecordStore(db)
    # another process holds the database's write lock: the writer cannot commit, and submit
    # still returns at once for every record (it never waits for the database)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    for i in range(2000):
        w.submit(rec(i))
    assert w.queue_depth == 2000 and store.counts_by_outcome().get("sorted", 0) == 0
    blocker.execute("COMMIT")
    blocker.close()
    assert w.flush(30)
    assert w.queue_depth == 0
    assert store.counts_by_outcome()["sorted"] == 2000
    # an idle writer commits a lone record by itself, without a flush
    w.submit(rec(5000))
    assert wait_until(lambda: store.recent(limit=1)[0]["parcel_id"] == 5000)
    assert w.close(5)
    with pytest.raises(RuntimeError):
        w.submit(rec(5001))


def test_concurrent_reader_while_writing(tmp_path):
    db = tmp_path / "r.db"
    w = RecordWriter(db)
    store = RecordStore(db)
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                total = sum(store.counts_by_outcome().values())
                store.recent(limit=20, outcome="sorted")
                assert not seen or total >= seen[-1]  # never goes backwards
                seen.append(total)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=reader)
    th.start()
    for i in range(3000):
        w.submit(rec(i))
        if i % 300 == 0:
            time.sleep(0.01)
    assert w.flush(10)
    time.sleep(0.05)
    stop.set()
    th.join(5)
    w.close()
    assert not errors
    assert len(seen) > 10 and seen[-1] == 3000
    assert len(set(seen)) > 2  # the reader saw the writes arrive


def test_export_csv_per_carrier_and_day(tmp_path):
    store = RecordStore(tmp_path / "r.db")
    day = dt.date(2026, 11, 3)
    noon = dt.datetime.combine(day, dt.time(12)).timestamp()
    store.write_many([
        rec(1, ended=noon, carrier="SF"),
        rec(2, ended=noon + 60, carrier="ZTO", waybill="=HYPERLINK(\"http://x\")"),
        rec(3, ended=noon + 86400, carrier="SF"),  # next day
        rec(4, ended=noon - 43200 - 1, carrier="SF"),  # day before
    ])
    buf = io.StringIO()
    assert store.export_csv(buf, day, "SF") == 1
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["parcel_id"] for r in rows] == ["1"] and rows[0]["carrier"] == "SF"
    buf = io.StringIO()
    assert store.export_csv(buf, day, None) == 2
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows[1]["waybill"].startswith("'=")  # no formula injection into the billing sheet
    assert store.export_csv(io.StringIO(), day, "EMS") == 0


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from sorter.controller.records.store import RecordWriter
    w = RecordWriter({db!r})
    for i in range(500):
        w.submit({{"run_id": "crash", "parcel_id": i, "ended_wall": time.time(), "outcome": "sorted",
                   "reads": [], "reason": "", "waybill": "W%d" % i}})
    assert w.flush(10)
    print("flushed", flush=True)
    # keep submitting without flushing until killed
    i = 500
    while True:
        w.submit({{"run_id": "crash", "parcel_id": i, "ended_wall": time.time(), "outcome": "sorted",
                   "reads": [], "reason": ""}})
        i += 1
        time.sleep(0.001)
    """
)


def test_record_survives_kill_9(tmp_path):
    db = tmp_path / "r.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), db=str(db))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "flushed", proc.stderr.read()
        # the writer commits on its own after the flush too: wait until some of those are in
        reader = RecordStore(db)
        assert wait_until(lambda: len(reader.recent(limit=10_000)) > 550)
        committed = {r["parcel_id"] for r in reader.recent(limit=10_000)}
        reader.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == -signal.SIGKILL
    store = RecordStore(db)
    ids = {r["parcel_id"] for r in store.recent(limit=10_000)}
    assert set(range(500)) <= ids  # everything flushed before the kill is there
    assert store.recent(waybill="W499")[0]["parcel_id"] == 499
    assert committed <= ids       # and everything committed after the flush, before the kill
    # the file is consistent
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_writer_survives_database_trouble(tmp_path):
    """A locked database delays the writer; it keeps the records and writes them later."""
    db = tmp_path / "r.db"
    w = RecordWriter(db)
    blocker = sqlite3.connect(db, isolation_level=None, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    w.submit(rec(1))
    assert not w.flush(0.3)
    blocker.execute("COMMIT")
    blocker.close()
    assert w.flush(30)
    assert RecordStore(db).recent()[0]["parcel_id"] == 1
    w.close()


def test_a_version_1_database_is_upgraded_in_place_keeping_its_records(tmp_path):
    import sqlite3 as _sq
    from sorter.controller.records.store import RecordStore as _Store
    path = tmp_path / "old.db"
    s = _Store(path)
    s.write_many([{"run_id": "r", "parcel_id": 1, "ended_wall": 1.0, "reads": [], "outcome": "no_read",
                   "reason": "no waybill"}])
    s.close()
    db = _sq.connect(path)
    db.execute("ALTER TABLE parcels DROP COLUMN rule")
    db.execute("ALTER TABLE parcels DROP COLUMN sort_code")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    s = _Store(path)
    s.write_many([{"run_id": "r", "parcel_id": 2, "ended_wall": 2.0, "reads": [], "outcome": "sorted",
                   "reason": "confirmed", "rule": "rule 6 (town=泽国镇)", "sort_code": "571-W30-02"}])
    recs = {r["parcel_id"]: r for r in s.recent(limit=10)}
    assert recs[1]["reason"] == "no waybill" and recs[1]["rule"] is None
    assert recs[2]["rule"] == "rule 6 (town=泽国镇)" and recs[2]["sort_code"] == "571-W30-02"
