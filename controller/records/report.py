"""Totals, time series and export rows from the record database: what the page's charts, the
per-shift totals and the Excel/CSV export read. From the database, so they survive a restart of
the service (the in-memory statistics are per run).

A parcel keyed by hand counts under what was keyed when the camera read nothing: its carrier,
its town and its waybill are the keyed ones (its outcome stays the original).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Iterator

from sorter.controller.records.rows import row_to_record
from sorter.controller.records.schema import KEYED_NAMES, OUTCOMES
from sorter.controller.records.search import filter_sql

WAYBILL = "COALESCE(waybill, keyed_waybill)"
CARRIER = "COALESCE(carrier, keyed_carrier)"
TOWN = "COALESCE(destination, keyed_destination)"
GROUPS = {"carrier": CARRIER, "town": TOWN}
MAX_BUCKETS = 5000


def iter_records(conn: sqlite3.Connection, lock: threading.Lock, batch: int = 1000,
                 **criteria: Any) -> Iterator[dict[str, Any]]:
    """Every record matching `criteria`, oldest first, fetched `batch` rows at a time (the lock is
    held per batch, not for the whole export: the writer and the page go on meanwhile)."""
    where, args = filter_sql(**criteria)
    last = (float("-inf"), -1)
    while True:
        keyset = "(ended_wall > ? OR (ended_wall = ? AND id > ?))"
        sql = (f"SELECT * FROM parcels{where}{' AND ' if where else ' WHERE '}{keyset} "
               "ORDER BY ended_wall, id LIMIT ?")
        with lock:
            prev, conn.row_factory = conn.row_factory, sqlite3.Row
            try:
                rows = conn.execute(sql, [*args, last[0], last[0], last[1], batch]).fetchall()
            finally:
                conn.row_factory = prev
        for r in rows:
            rec = row_to_record(r)
            for n in KEYED_NAMES:
                rec[n] = r[n]
            yield rec
        if len(rows) < batch:
            return
        last = (rows[-1]["ended_wall"], rows[-1]["id"])


def totals(conn: sqlite3.Connection, lock: threading.Lock, since: float, until: float) -> dict[str, Any]:
    """{total, outcomes (all ten), with_waybill} of the parcels ended in [since, until)."""
    outcomes = {o: 0 for o in OUTCOMES}
    with lock:
        rows = conn.execute(f"SELECT outcome, COUNT(*), SUM({WAYBILL} IS NOT NULL) FROM parcels "
                            "WHERE ended_wall >= ? AND ended_wall < ? GROUP BY outcome", (since, until)).fetchall()
    with_waybill = 0
    for outcome, n, w in rows:
        outcomes[outcome] = outcomes.get(outcome, 0) + n
        with_waybill += w or 0
    return {"total": sum(outcomes.values()), "outcomes": outcomes, "with_waybill": with_waybill}


def totals_by(conn: sqlite3.Connection, lock: threading.Lock, by: str, since: float, until: float,
              limit: int = 500) -> list[dict[str, Any]]:
    """Per carrier or per town: {key, total, sorted, outcomes}, the biggest first."""
    col = GROUPS[by]
    with lock:
        rows = conn.execute(f"SELECT {col} AS k, outcome, COUNT(*) FROM parcels "
                            "WHERE ended_wall >= ? AND ended_wall < ? GROUP BY k, outcome",
                            (since, until)).fetchall()
    groups: dict[Any, dict[str, int]] = {}
    for key, outcome, n in rows:
        groups.setdefault(key, {})[outcome] = n
    out = [{"key": key, "total": sum(o.values()), "sorted": o.get("sorted", 0), "outcomes": o}
           for key, o in groups.items()]
    out.sort(key=lambda g: (-g["total"], "" if g["key"] is None else str(g["key"])))
    return out[:limit]


def buckets(since: float, until: float, bucket_s: int) -> list[float]:
    first = since - since % bucket_s
    n = int((until - first + bucket_s - 1) // bucket_s)
    if n > MAX_BUCKETS:
        raise ValueError(f"{n} buckets of {bucket_s} s: at most {MAX_BUCKETS} (a longer bucket or a shorter span)")
    return [first + i * bucket_s for i in range(max(n, 0))]


def outcome_series(conn: sqlite3.Connection, lock: threading.Lock, since: float, until: float,
                   bucket_s: int) -> tuple[list[float], dict[str, list[int]]]:
    """Parcels per bucket by outcome (every outcome listed, zeros included)."""
    t = buckets(since, until, bucket_s)
    base = t[0] if t else since
    series = {o: [0] * len(t) for o in OUTCOMES}
    with lock:
        rows = conn.execute("SELECT CAST((ended_wall - ?) / ? AS INTEGER) AS b, outcome, COUNT(*) FROM parcels "
                            "WHERE ended_wall >= ? AND ended_wall < ? GROUP BY b, outcome",
                            (base, bucket_s, since, until)).fetchall()
    for b, outcome, n in rows:
        if 0 <= b < len(t):
            series.setdefault(outcome, [0] * len(t))[b] += n
    return t, series


def camera_read_series(conn: sqlite3.Connection, lock: threading.Lock, since: float, until: float,
                       bucket_s: int) -> tuple[list[float], dict[str, list[float | None]]]:
    """Per camera and bucket: the share of the bucket's parcels whose waybill that camera read
    (None where the bucket has no parcel)."""
    t = buckets(since, until, bucket_s)
    base = t[0] if t else since
    with lock:
        per_bucket = dict(conn.execute(
            "SELECT CAST((ended_wall - ?) / ? AS INTEGER) AS b, COUNT(*) FROM parcels "
            "WHERE ended_wall >= ? AND ended_wall < ? GROUP BY b", (base, bucket_s, since, until)).fetchall())
        rows = conn.execute(
            "SELECT CAST((p.ended_wall - ?) / ? AS INTEGER) AS b, json_extract(j.value, '$.camera') AS cam, "
            "COUNT(DISTINCT p.id) FROM parcels p, json_each(p.reads) j "
            "WHERE p.ended_wall >= ? AND p.ended_wall < ? AND p.waybill IS NOT NULL "
            "AND json_extract(j.value, '$.text') = p.waybill GROUP BY b, cam",
            (base, bucket_s, since, until)).fetchall()
    cams = sorted({str(cam) for _b, cam, _n in rows if cam is not None})
    series: dict[str, list[float | None]] = {
        c: [0.0 if per_bucket.get(i) else None for i in range(len(t))] for c in cams}
    for b, cam, n in rows:
        total = per_bucket.get(b)
        if cam is not None and total and 0 <= b < len(t):
            series[str(cam)][b] = round(n / total, 4)
    return t, series
