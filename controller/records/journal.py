"""The parcel journal: a row per parcel from the moment it enters the belt until its record is
written, so that a parcel on the belt when the controller dies is not forgotten.

A journal row is opened at induct and deleted in the same transaction that inserts the parcel's
record. Rows still open when the service starts belong to parcels that were on the belt when the
previous run ended without recording them (a crash, ``kill -9``, a power cut): each becomes a
``fault`` record saying so. Nothing here is ever silent: an id seen twice is an error, logged and
counted, and the second record is kept in ``bad_records``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import NamedTuple

log = logging.getLogger("sorter.controller.records.store")

RESTARTED = "controller restarted while the parcel was on the belt"


class Open(NamedTuple):
    """What the writer queue carries for a parcel that has just been inducted."""
    run_id: str
    parcel_id: int
    induct_wall: float | None
    latch_seq: int | None = None  # the latch's head-edge count with this parcel accounted for


class LatchMark(NamedTuple):
    """The latch's head-edge count up to which every parcel has a journal row or a record."""
    seq: int


def mark_latch(conn: sqlite3.Connection, seq: int) -> None:
    conn.execute("INSERT OR REPLACE INTO line_marks (name, value) VALUES ('latch_seq', ?)", (int(seq),))


def stored_latch_mark(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM line_marks WHERE name = 'latch_seq'").fetchone()
    return None if row is None else int(row[0])


def clear_latch_mark(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM line_marks WHERE name = 'latch_seq'")


def open_row(conn: sqlite3.Connection, item: Open, now: float) -> bool:
    """Open the parcel's journal row (inside the caller's transaction). False when its id is already
    in the journal or the records: an id collision, logged and kept in bad_records."""
    try:
        conn.execute("INSERT INTO journal (run_id, parcel_id, induct_wall, opened_wall) VALUES (?, ?, ?, ?)",
                     (item.run_id, item.parcel_id, item.induct_wall, now))
    except sqlite3.IntegrityError:
        _collision(conn, now, f"parcel id collision: {item.run_id}/{item.parcel_id} inducted twice",
                   {"journal": item._asdict()})
        return False
    if conn.execute("SELECT 1 FROM parcels WHERE run_id = ? AND parcel_id = ?",
                    (item.run_id, item.parcel_id)).fetchone():
        conn.execute("DELETE FROM journal WHERE run_id = ? AND parcel_id = ?", (item.run_id, item.parcel_id))
        _collision(conn, now, f"parcel id collision: {item.run_id}/{item.parcel_id} inducted after its record "
                              "was written", {"journal": item._asdict()})
        return False
    return True


def close_row(conn: sqlite3.Connection, run_id: str, parcel_id: int) -> None:
    conn.execute("DELETE FROM journal WHERE run_id = ? AND parcel_id = ?", (run_id, parcel_id))


def _collision(conn: sqlite3.Connection, now: float, error: str, raw: dict) -> None:
    log.error("%s; kept in bad_records", error)
    conn.execute("INSERT INTO bad_records (written_wall, error, raw) VALUES (?, ?, ?)",
                 (now, error, json.dumps(raw, ensure_ascii=False, default=repr)))


def collision(conn: sqlite3.Connection, now: float, error: str, record: dict) -> None:
    _collision(conn, now, error, record)


def open_rows(conn: sqlite3.Connection) -> list[tuple[str, int, float | None]]:
    return conn.execute("SELECT run_id, parcel_id, induct_wall FROM journal ORDER BY opened_wall").fetchall()


def fault_record(run_id: str, parcel_id: int, induct_wall: float | None, reason: str,
                 now: float | None = None) -> dict:
    """The record of a parcel whose outcome nobody can know any more."""
    return {"run_id": run_id, "parcel_id": parcel_id, "induct_wall": induct_wall, "decided_wall": None,
            "ended_wall": time.time() if now is None else now, "length_mm": None, "reads": [],
            "waybill": None, "carrier": None, "destination": None, "chute": None, "actual_chute": None,
            "outcome": "fault", "reason": reason}
