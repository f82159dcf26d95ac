"""The daily export: one day's parcels (by the line PC's local time) as CSV, for one carrier or all,
what a centre bills the carriers from.

Text that a spreadsheet would run as a formula is defused, since waybill text comes from untrusted
barcodes.
"""

from __future__ import annotations

import csv
import datetime as _dt
import sqlite3
import threading
from typing import Any, TextIO

from sorter.controller.records.schema import FIELD_NAMES


def write_day_csv(conn: sqlite3.Connection, lock: threading.Lock, fileobj: TextIO, day: _dt.date,
                  carrier: str | None = None) -> int:
    """RecordStore.export_csv: the day's records from ``conn`` (used under ``lock``) to ``fileobj``."""
    start = _dt.datetime.combine(day, _dt.time()).timestamp()
    end = _dt.datetime.combine(day + _dt.timedelta(days=1), _dt.time()).timestamp()
    sql = "SELECT * FROM parcels WHERE ended_wall >= ? AND ended_wall < ?"
    args: list[Any] = [start, end]
    if carrier is not None:
        sql += " AND carrier = ?"
        args.append(carrier)
    sql += " ORDER BY ended_wall, id"
    writer = csv.writer(fileobj)
    writer.writerow(FIELD_NAMES)
    n = 0
    with lock:
        cur = conn.execute(sql, args)
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                break
            for r in rows:
                writer.writerow([_csv_cell(r[name]) for name in FIELD_NAMES])
                n += 1
    return n


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value and (value[0] in "=+-@\t\r\n"):
        return "'" + value
    return value
