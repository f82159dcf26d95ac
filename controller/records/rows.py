"""Parcel record <-> database row, repairing rather than refusing.

Centres bill carriers per parcel, so a lost record is lost money: a malformed record is stored
anyway, with what was wrong appended to ``reason``; one that cannot even be keyed (no run_id or
parcel_id) goes to the ``bad_records`` table. One row per (run_id, parcel_id), never replaced: the
same record written again (a retry) is stored once, and another record with the same id (an id
collision) is an error, logged, counted and kept whole in ``bad_records``.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from typing import Any, Iterable

from sorter.controller.records.journal import LatchMark, Open, close_row, collision, mark_latch, open_row
from sorter.controller.records.schema import FIELD_NAMES, OUTCOMES

# the records log under one name, the one they had before the split (filters and greps keep working)
log = logging.getLogger("sorter.controller.records.store")

_FLOATS = {"induct_wall", "decided_wall", "ended_wall", "length_mm", "fire_error_ms", "decision_ms", "fired_wall",
           "confirmed_wall"}
_TEXTS = {"run_id", "waybill", "carrier", "destination", "chute", "actual_chute", "outcome",
          "reason", "routing_version", "rule", "sort_code"}
MAX_TEXT = 4096  # a text field longer than this is cut (garbage barcodes can be huge)

_INSERT = (
    f"INSERT INTO parcels ({', '.join(FIELD_NAMES)}, written_wall) "
    f"VALUES ({', '.join('?' for _ in FIELD_NAMES)}, ?)"
)
_SAME = f"SELECT {', '.join(FIELD_NAMES)} FROM parcels WHERE run_id = ? AND parcel_id = ?"


def _json_default(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _clean_text(value: Any, key: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{key} is {type(value).__name__}, stored as text")
        try:
            value = str(value)
        except Exception:  # noqa: BLE001 - a broken __str__ must not kill the writer
            value = object.__repr__(value)
    if len(value) > MAX_TEXT:
        problems.append(f"{key} cut from {len(value)} to {MAX_TEXT} chars")
        value = value[:MAX_TEXT]
    # lone surrogates cannot be stored as UTF-8
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean_float(value: Any, key: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        problems.append(f"{key}={value!r:.60} is not a number")
        return None
    if not math.isfinite(f):
        problems.append(f"{key}={f} is not finite")
        return None
    return f


def record_to_row(record: dict[str, Any], now: float | None = None) -> tuple[tuple[Any, ...], list[str]]:
    """Turn a parcel record into a row; returns (row, problems).

    Raises ``ValueError`` only when the record cannot be keyed (no run_id / parcel_id);
    everything else is repaired and described in ``problems``.
    """
    if not isinstance(record, dict):
        raise ValueError(f"record is a {type(record).__name__}, not a dict")
    now = time.time() if now is None else now
    problems: list[str] = []
    run_id = record.get("run_id")
    pid = record.get("parcel_id")
    if run_id is None or run_id == "":
        raise ValueError("record has no run_id")
    if isinstance(pid, bool) or not isinstance(pid, int):
        try:
            if isinstance(pid, bool) or pid is None or float(pid) != int(float(pid)):
                raise ValueError
            pid = int(float(pid))
            problems.append("parcel_id was not an int")
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"record has no usable parcel_id ({pid!r:.60})") from None
    if not -(2**63) <= pid < 2**63:
        raise ValueError(f"parcel_id {pid} out of range")

    values: dict[str, Any] = {"parcel_id": pid}
    for key in _TEXTS:
        values[key] = _clean_text(record.get(key), key, problems)
    for key in _FLOATS:
        values[key] = _clean_float(record.get(key), key, problems)

    reads = record.get("reads")
    if reads is None:
        reads = []
    try:
        reads_json = json.dumps(reads, ensure_ascii=False, default=_json_default, allow_nan=False)
        if not isinstance(reads, list):
            problems.append(f"reads is {type(reads).__name__}, not a list")
    except (TypeError, ValueError) as exc:
        problems.append(f"reads not JSON-serialisable ({exc})")
        reads_json = json.dumps(_repr_tree(reads), ensure_ascii=False)
    if len(reads_json) > 64 * MAX_TEXT:
        problems.append(f"reads cut from {len(reads_json)} chars")
        reads_json = json.dumps([{"camera": "", "symbology": "", "text": "<reads too large>"}])
    values["reads"] = reads_json

    if values["outcome"] not in OUTCOMES:
        problems.append(f"outcome {values['outcome']!r:.60} is not an outcome; stored as fault")
        values["outcome"] = "fault"
    if values["ended_wall"] is None:
        problems.append("no ended_wall; the write time is used")
        values["ended_wall"] = now
    unknown = set(record) - set(FIELD_NAMES)
    if unknown:
        problems.append(f"unknown keys ignored: {', '.join(sorted(map(str, unknown)))[:200]}")
    reason = values["reason"] or ""
    if problems:
        reason = (reason + "; " if reason else "") + "record problems: " + "; ".join(problems)
    values["reason"] = reason
    return tuple(values[n] for n in FIELD_NAMES) + (now,), problems


def _repr_tree(obj: Any, depth: int = 0) -> Any:
    """A JSON-able copy of obj, with anything unknown replaced by its repr."""
    if depth > 8:
        return "<too deep>"
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, dict):
        return {str(k): _repr_tree(v, depth + 1) for k, v in list(obj.items())[:100]}
    if isinstance(obj, (list, tuple)):
        return [_repr_tree(v, depth + 1) for v in list(obj)[:100]]
    try:
        return repr(obj)[:200]
    except Exception:  # noqa: BLE001
        return object.__repr__(obj)


def row_to_record(row: sqlite3.Row) -> dict[str, Any]:
    rec = {n: row[n] for n in FIELD_NAMES}
    try:
        rec["reads"] = json.loads(rec["reads"]) if rec["reads"] else []
    except ValueError:
        rec["reads"] = []
    return rec


def _insert_rows(conn: sqlite3.Connection, records: Iterable[dict[str, Any] | Open]) -> tuple[int, int, int]:
    """Insert inside the caller's transaction: parcel records (each closes its journal row) and
    journal rows to open. Returns (stored, bad, id collisions)."""
    now = time.time()
    stored = bad = collisions = 0
    for rec in records:
        if type(rec) is Open:
            collisions += not open_row(conn, rec, now)
            if rec.latch_seq is not None:
                mark_latch(conn, rec.latch_seq)
            continue
        if type(rec) is LatchMark:
            mark_latch(conn, rec.seq)
            continue
        try:
            row, problems = record_to_row(rec, now)
        except Exception as exc:  # noqa: BLE001 - unkeyable record: keep it anyway
            log.error("bad parcel record stored in bad_records: %s", exc)
            conn.execute(
                "INSERT INTO bad_records (written_wall, error, raw) VALUES (?, ?, ?)",
                (now, str(exc)[:1000], json.dumps(_repr_tree(rec), ensure_ascii=False)[: 64 * MAX_TEXT]),
            )
            bad += 1
            continue
        if problems:
            log.warning("parcel %s/%s record repaired: %s", row[0], row[1], "; ".join(problems))
        try:
            conn.execute(_INSERT, row)
        except sqlite3.IntegrityError:
            if tuple(conn.execute(_SAME, row[:2]).fetchone() or ()) != row[:-1]:
                collisions += 1
                collision(conn, now, f"parcel id collision: {row[0]}/{row[1]} already has another record",
                          _repr_tree(rec))
            continue  # else the very same record again (a retry): stored once
        close_row(conn, row[0], row[1])
        stored += 1
    return stored, bad, collisions
