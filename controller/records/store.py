"""Durable parcel records: one row per parcel in an embedded SQLite database.

Centres bill carriers per parcel, so a lost record is lost money. The rules here:

* WAL journal with ``synchronous=FULL``: every commit fsyncs the WAL before it returns, so a
  committed record survives ``kill -9`` *and* a power cut. (``NORMAL`` in WAL mode survives a
  process crash but may lose the last commits on power loss — not good enough for billing.)
  The writer batches (see :class:`RecordWriter`), so the fsync cost is paid per batch, not per
  parcel.
* The writer is a thread that owns its own connection; callers only ``submit()`` into an
  unbounded queue, which never blocks. The writer must live outside the timing process
  (see DESIGN.md: a thread doing SQLite work there wrecks the fire timing).
* A malformed record is logged and stored anyway, with what was wrong appended to ``reason``;
  a record that cannot even be keyed goes to the ``bad_records`` table. The writer never dies of
  bad input; if the database itself fails (disk full, locked), it retries and, if it still
  cannot write when closed, dumps the unsaved records to ``<db>.unsaved.jsonl``.
* One row per (run_id, parcel_id): writing the same parcel again replaces the row, so a retry
  can never bill a parcel twice.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, TextIO

log = logging.getLogger(__name__)

OUTCOMES = (
    "sorted",
    "no_read",
    "multi_read",
    "no_route",
    "chute_unavailable",
    "too_late",
    "gap_too_small",
    "lost",
    "unconfirmed",
    "fault",
)

SCHEMA_VERSION = 2
# columns added after version 1 (added to an older file on open)
_ADDED = {2: (("rule", "TEXT"), ("sort_code", "TEXT"))}

# record key -> SQL column type; the order is the CSV export order too
FIELDS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT NOT NULL"),
    ("parcel_id", "INTEGER NOT NULL"),
    ("induct_wall", "REAL"),
    ("decided_wall", "REAL"),
    ("ended_wall", "REAL NOT NULL"),
    ("length_mm", "REAL"),
    ("reads", "TEXT NOT NULL"),  # JSON list of {"camera","symbology","text"}
    ("waybill", "TEXT"),
    ("carrier", "TEXT"),
    ("destination", "TEXT"),
    ("chute", "TEXT"),
    ("actual_chute", "TEXT"),
    ("outcome", "TEXT NOT NULL"),
    ("reason", "TEXT NOT NULL"),
    ("routing_version", "TEXT"),
    ("fire_error_ms", "REAL"),
    ("decision_ms", "REAL"),
    ("rule", "TEXT"),       # the routing rule that chose the chute
    ("sort_code", "TEXT"),  # 三段码, when the parcel was routed by one
)
FIELD_NAMES = tuple(name for name, _ in FIELDS)
_FLOATS = {"induct_wall", "decided_wall", "ended_wall", "length_mm", "fire_error_ms", "decision_ms"}
_TEXTS = {"run_id", "waybill", "carrier", "destination", "chute", "actual_chute", "outcome",
          "reason", "routing_version", "rule", "sort_code"}
MAX_TEXT = 4096  # a text field longer than this is cut (garbage barcodes can be huge)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS parcels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{n} {t}" for n, t in FIELDS)},
    written_wall REAL NOT NULL,
    UNIQUE (run_id, parcel_id)
);
CREATE INDEX IF NOT EXISTS parcels_ended ON parcels (ended_wall);
CREATE INDEX IF NOT EXISTS parcels_waybill ON parcels (waybill);
CREATE INDEX IF NOT EXISTS parcels_outcome_ended ON parcels (outcome, ended_wall);
CREATE INDEX IF NOT EXISTS parcels_carrier_ended ON parcels (carrier, ended_wall);
CREATE TABLE IF NOT EXISTS bad_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    written_wall REAL NOT NULL,
    error TEXT NOT NULL,
    raw TEXT NOT NULL
);
"""

_INSERT = (
    f"INSERT INTO parcels ({', '.join(FIELD_NAMES)}, written_wall) "
    f"VALUES ({', '.join('?' for _ in FIELD_NAMES)}, ?) "
    f"ON CONFLICT (run_id, parcel_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in FIELD_NAMES[2:])
    + ", written_wall = excluded.written_wall"
)


class SchemaError(RuntimeError):
    pass


def connect(path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open (and create if needed) the record database with the durability settings."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), timeout=timeout_s, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaError(
            f"{p}: record schema version {version} is newer than this program's ({SCHEMA_VERSION}); "
            "upgrade the program or use another database file"
        )
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        if version >= 1:  # an older file: add the newer columns, keep every record
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for name, typ in _ADDED.get(v, ()):
                    conn.execute(f"ALTER TABLE parcels ADD COLUMN {name} {typ}")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    return conn


# --------------------------------------------------------------------------- record <-> row


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


def _insert_rows(conn: sqlite3.Connection, records: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Insert inside the caller's transaction. Returns (stored, bad)."""
    now = time.time()
    stored = bad = 0
    for rec in records:
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
        conn.execute(_INSERT, row)
        stored += 1
    return stored, bad


# --------------------------------------------------------------------------- the store


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
                stored, _bad = _insert_rows(self._conn, records)
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
        with self._lock:
            cur = self._conn.execute(sql, args)
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


# --------------------------------------------------------------------------- the writer

_STOP = object()


class RecordWriter:
    """Background thread writing submitted records to the database in batches.

    ``submit()`` never blocks (unbounded queue). A batch is committed as soon as the queue
    runs dry or ``batch_max`` records are collected, and never later than ``max_latency_s``
    after its first record — so a record is durable within ~100 ms plus one fsync.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_max: int = 200,
        max_latency_s: float = 0.1,
        name: str = "record-writer",
    ):
        self.path = Path(path)
        self.batch_max = batch_max
        self.max_latency_s = max_latency_s
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0  # stored, sent to bad_records, or dumped to the fallback file
        self.written = 0
        self.bad = 0
        self.db_errors = 0
        self.last_error: str | None = None
        self._closed = False
        self._pending: list[Any] = []  # taken from the queue, not yet committed
        # open once here so that a bad path / schema fails at construction, not in the thread
        connect(self.path).close()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- caller side
    def submit(self, record: dict[str, Any]) -> None:
        if self._closed:
            raise RuntimeError("RecordWriter is closed")
        with self._cond:
            self._submitted += 1
        self._q.put(record)

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until everything submitted so far is committed. True when it was."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._done >= target or not self._thread.is_alive(), timeout) and (
                self._done >= target
            )

    def close(self, timeout: float | None = 10.0) -> bool:
        """Drain everything and stop. True when every record was written."""
        if not self._closed:
            self._closed = True
            self._q.put(_STOP)
        self._thread.join(timeout)
        with self._cond:
            return self._done >= self._submitted

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return self._submitted - self._done

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "bad": self.bad,
            "queued": self.queue_depth,
            "db_errors": self.db_errors,
            "last_error": self.last_error,
        }

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- thread side
    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        backoff = 0.05
        while True:
            if not self._pending:
                if stopping:
                    break
                item = self._q.get()
                if item is _STOP:
                    stopping = True
                    continue
                self._pending.append(item)
            # collect more: until the queue is dry, the batch is full or the latency is used up
            deadline = time.monotonic() + self.max_latency_s
            while len(self._pending) < self.batch_max:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                self._pending.append(item)
                if time.monotonic() >= deadline:
                    break
            try:
                if conn is None:
                    conn = connect(self.path)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    stored, bad = _insert_rows(conn, self._pending)
                    conn.execute("COMMIT")
                except BaseException:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    raise
            except Exception as exc:  # noqa: BLE001 - the database failed, not the record
                self.db_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("record database write failed (%d records kept, retrying): %s",
                          len(self._pending), self.last_error)
                if conn is not None:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                    conn = None
                if stopping and self.db_errors >= 3:
                    self._dump_unsaved()
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            n = len(self._pending)
            self._pending = []
            self.written += stored
            self.bad += bad
            with self._cond:
                self._done += n
                self._cond.notify_all()
        if conn is not None:
            conn.close()
        with self._cond:
            self._cond.notify_all()

    def _dump_unsaved(self) -> None:
        """Last resort when the database cannot be written at shutdown."""
        items = list(self._pending)
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                items.append(item)
        fallback = self.path.with_name(self.path.name + ".unsaved.jsonl")
        try:
            with open(fallback, "a", encoding="utf-8") as fh:
                for rec in items:
                    fh.write(json.dumps(_repr_tree(rec), ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.critical("record database unwritable: %d records saved to %s", len(items), fallback)
            with self._cond:
                self._done += len(items)
            self._pending = []
        except OSError as exc:
            log.critical("record database unwritable and %s failed (%s): %d records lost",
                         fallback, exc, len(items))
