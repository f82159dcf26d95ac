"""Finding parcels (by waybill, time, carrier, town, chute, outcome), one parcel's whole record,
and completing a record by hand (a waybill keyed for a no-read)."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from sorter.controller.records.rows import row_to_record
from sorter.controller.records.schema import KEYED_NAMES

MAX_ROWS = 1000


def _record(row: sqlite3.Row) -> dict[str, Any]:
    rec = row_to_record(row)
    keys = row.keys()
    for n in KEYED_NAMES:
        rec[n] = row[n] if n in keys else None
    rec["written_wall"] = row["written_wall"] if "written_wall" in keys else None
    return rec


def filter_sql(*, waybill: str | None = None, since_wall: float | None = None, until_wall: float | None = None,
               carrier: str | None = None, town: str | None = None, chute: str | None = None,
               outcome: str | None = None, keyed: bool | None = None) -> tuple[str, list[Any]]:
    """The search's criteria as a WHERE clause ('' for none) and its arguments (the search, the
    export and the totals find the same parcels with them)."""
    where, args = [], []  # type: list[str], list[Any]
    if waybill:
        where.append("(waybill = ? OR keyed_waybill = ?)")
        args += [waybill, waybill]
    if since_wall is not None:
        where.append("ended_wall >= ?")
        args.append(float(since_wall))
    if until_wall is not None:
        where.append("ended_wall < ?")
        args.append(float(until_wall))
    if carrier:
        where.append("(carrier = ? OR keyed_carrier = ?)")
        args += [carrier, carrier]
    if town:
        where.append("(destination = ? OR keyed_destination = ?)")
        args += [town, town]
    if chute:
        where.append("(chute = ? OR actual_chute = ? OR keyed_chute = ?)")
        args += [chute, chute, chute]
    if outcome:
        where.append("outcome = ?")
        args.append(outcome)
    if keyed is not None:
        where.append("keyed_wall IS NOT NULL" if keyed else "keyed_wall IS NULL")
    return (" WHERE " + " AND ".join(where)) if where else "", args


def search(conn: sqlite3.Connection, lock: threading.Lock, *, waybill: str | None = None,
           since_wall: float | None = None, until_wall: float | None = None, carrier: str | None = None,
           town: str | None = None, chute: str | None = None, outcome: str | None = None,
           keyed: bool | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first. `waybill` matches the read waybill or the keyed one; `chute` the chute
    chosen, the chute it went to, or the chute it was keyed to; `town` the destination."""
    where, args = filter_sql(waybill=waybill, since_wall=since_wall, until_wall=until_wall, carrier=carrier,
                             town=town, chute=chute, outcome=outcome, keyed=keyed)
    sql = "SELECT * FROM parcels" + where
    sql += " ORDER BY ended_wall DESC, id DESC LIMIT ?"
    args.append(max(1, min(int(limit), MAX_ROWS)))
    with lock:
        prev, conn.row_factory = conn.row_factory, sqlite3.Row
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.row_factory = prev
    return [_record(r) for r in rows]


def parcel(conn: sqlite3.Connection, lock: threading.Lock, run_id: str, parcel_id: int) -> dict[str, Any] | None:
    with lock:
        prev, conn.row_factory = conn.row_factory, sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM parcels WHERE run_id = ? AND parcel_id = ?",
                               (run_id, parcel_id)).fetchone()
        finally:
            conn.row_factory = prev
    return _record(row) if row is not None else None


def key_parcel(conn: sqlite3.Connection, lock: threading.Lock, run_id: str, parcel_id: int, *, waybill: str,
               carrier: str | None, destination: str | None, chute: str | None, rule: str | None,
               reason: str | None, by: str, via: str, wall: float | None = None) -> bool:
    """Complete a record with what was keyed by hand (the outcome stays the original). False when
    there is no such record (yet: the writer commits within ~100 ms of the parcel's end)."""
    wall = time.time() if wall is None else wall
    with lock:
        cur = conn.execute(
            "UPDATE parcels SET keyed_waybill = ?, keyed_carrier = ?, keyed_destination = ?, keyed_chute = ?, "
            "keyed_rule = ?, keyed_reason = ?, keyed_by = ?, keyed_wall = ?, keyed_via = ? "
            "WHERE run_id = ? AND parcel_id = ?",
            (waybill, carrier, destination, chute, rule, reason, by, wall, via, run_id, parcel_id))
        return cur.rowcount > 0


def needs_keying(conn: sqlite3.Connection, lock: threading.Lock, limit: int = 50) -> list[dict[str, Any]]:
    """The no_read / multi_read parcels nobody has keyed yet, newest first."""
    with lock:
        prev, conn.row_factory = conn.row_factory, sqlite3.Row
        try:
            rows = conn.execute(
                "SELECT * FROM parcels WHERE outcome IN ('no_read', 'multi_read') AND keyed_wall IS NULL "
                "ORDER BY ended_wall DESC, id DESC LIMIT ?", (max(1, min(int(limit), MAX_ROWS)),)).fetchall()
        finally:
            conn.row_factory = prev
    return [_record(r) for r in rows]
