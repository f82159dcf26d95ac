"""Reading the record database: the newest parcels, counts by outcome, the bad records, the daily
CSV export (and, for tools and tests, writing a batch directly).

The names this module held before the records were split into schema, rows, export and writer
are imported here too, so ``from sorter.controller.records.store import RecordStore, RecordWriter,
OUTCOMES`` (and the rest) keeps working.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, TextIO

from sorter.controller.records.export import write_day_csv
from sorter.controller.records.rows import MAX_TEXT, _insert_rows, record_to_row, row_to_record
from sorter.controller.records.schema import FIELD_NAMES, FIELDS, OUTCOMES, SCHEMA_VERSION, SchemaError, connect
from sorter.controller.records.writer import RecordWriter

__all__ = ["FIELDS", "FIELD_NAMES", "MAX_TEXT", "OUTCOMES", "SCHEMA_VERSION", "RecordStore", "RecordWriter",
           "SchemaError", "connect", "record_to_row", "row_to_record"]


class RecordStore:
    """Reads (and, for tools and tests, writes) the record database.

    Thread-safe: one connection guarded by a lock. WAL lets it read while a
    :class:`RecordWriter` (another connection) writes.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._conn = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_many(self, records: Iterable[dict[str, Any]]) -> int:
        """Write records in one transaction; returns how many went to the parcels table."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                stored, _bad, _collisions = _insert_rows(self._conn, records)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return stored

    def recent(
        self,
        limit: int = 50,
        outcome: str | None = None,
        since_wall: float | None = None,
        waybill: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        limit = max(1, min(int(limit), 10_000))
        where, args = [], []  # type: list[str], list[Any]
        if outcome is not None:
            where.append("outcome = ?")
            args.append(outcome)
        if since_wall is not None:
            where.append("ended_wall >= ?")
            args.append(float(since_wall))
        if waybill is not None:
            where.append("waybill = ?")
            args.append(waybill)
        sql = "SELECT * FROM parcels"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ended_wall DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [row_to_record(r) for r in rows]

    def counts_by_outcome(self, run_id: str | None = None) -> dict[str, int]:
        """All ten outcomes, zero when none."""
        counts = {o: 0 for o in OUTCOMES}
        sql = "SELECT outcome, COUNT(*) FROM parcels"
        args: list[Any] = []
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args.append(run_id)
        sql += " GROUP BY outcome"
        with self._lock:
            for outcome, n in self._conn.execute(sql, args):
                counts[outcome] = counts.get(outcome, 0) + n
        return counts

    def bad_records(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, written_wall, error, raw FROM bad_records ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]

    def export_csv(self, fileobj: TextIO, day: _dt.date, carrier: str | None = None) -> int:
        """Write one day's records (local time of the line PC, by ended_wall) as CSV.

        ``carrier=None`` exports every carrier. Returns the number of parcels written.
        Text that a spreadsheet would run as a formula (starts with = + - @ or a control
        character) is prefixed with ``'`` — waybill text comes from untrusted barcodes.
        """
        return write_day_csv(self._conn, self._lock, fileobj, day, carrier)

    # ---------------------------------------------------------------- audit, alarms, search, keying
    def add_audit(self, user: str, role: str, action: str, target: str | None, result: str,
                  detail: str | None = None, client: str | None = None) -> int:
        from sorter.controller.records.audit import add_audit
        return add_audit(self._conn, self._lock, user, role, action, target, result, detail, client)

    def recent_audit(self, limit: int = 20, user: str | None = None, action: str | None = None) -> list[dict]:
        from sorter.controller.records.audit import recent_audit
        return recent_audit(self._conn, self._lock, limit, user, action)

    def save_alarm(self, row_id: int | None, alarm: dict) -> int:
        from sorter.controller.records.audit import save_alarm
        return save_alarm(self._conn, self._lock, row_id, alarm)

    def alarm_history(self, limit: int = 50) -> list[dict]:
        from sorter.controller.records.audit import alarm_history
        return alarm_history(self._conn, self._lock, limit)

    def search(self, **criteria: Any) -> list[dict[str, Any]]:
        from sorter.controller.records.search import search
        return search(self._conn, self._lock, **criteria)

    def parcel(self, run_id: str, parcel_id: int) -> dict[str, Any] | None:
        from sorter.controller.records.search import parcel
        return parcel(self._conn, self._lock, run_id, parcel_id)

    def key_parcel(self, run_id: str, parcel_id: int, **keyed: Any) -> bool:
        from sorter.controller.records.search import key_parcel
        return key_parcel(self._conn, self._lock, run_id, parcel_id, **keyed)

    def needs_keying(self, limit: int = 50) -> list[dict[str, Any]]:
        from sorter.controller.records.search import needs_keying
        return needs_keying(self._conn, self._lock, limit)

    # ---------------------------------------------------------------- totals, series, export rows (records/report.py)
    def totals(self, since: float, until: float) -> dict[str, Any]:
        from sorter.controller.records.report import totals
        return totals(self._conn, self._lock, since, until)

    def totals_by(self, by: str, since: float, until: float, limit: int = 500) -> list[dict[str, Any]]:
        from sorter.controller.records.report import totals_by
        return totals_by(self._conn, self._lock, by, since, until, limit)

    def outcome_series(self, since: float, until: float, bucket_s: int) -> tuple[list[float], dict]:
        from sorter.controller.records.report import outcome_series
        return outcome_series(self._conn, self._lock, since, until, bucket_s)

    def camera_read_series(self, since: float, until: float, bucket_s: int) -> tuple[list[float], dict]:
        from sorter.controller.records.report import camera_read_series
        return camera_read_series(self._conn, self._lock, since, until, bucket_s)

    def iter_records(self, **criteria: Any) -> Iterable[dict[str, Any]]:
        """Every record matching the search's criteria, oldest first, in batches (an export)."""
        from sorter.controller.records.report import iter_records
        return iter_records(self._conn, self._lock, **criteria)
