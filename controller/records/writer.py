"""The record writer: a background thread, with its own connection, that commits submitted records
in batches.

Callers only ``submit()`` into an unbounded queue, which never blocks; the writer must live
outside the timing process (see DESIGN.md: a thread doing SQLite work there wrecks the fire
timing). Batches pay the fsync per batch, not per parcel. The writer never dies of bad input; if
the database itself fails (disk full, locked) it retries and, if it still cannot write when
closed, dumps the unsaved records to ``<db>.unsaved.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sorter.controller.records.journal import (LatchMark, Open, clear_latch_mark, fault_record, open_rows,
                                               stored_latch_mark)
from sorter.controller.records.rows import _insert_rows, _repr_tree
from sorter.controller.records.schema import connect

# the records log under one name, the one they had before the split (filters and greps keep working)
log = logging.getLogger("sorter.controller.records.store")

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
        self.collisions = 0  # parcel ids seen twice (kept in bad_records, never replacing a record)
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

    def open(self, run_id: str, parcel_id: int, induct_wall: float | None, latch_seq: int | None = None) -> None:
        """A parcel entered the belt: its journal row, closed by its record (and the latch's
        head-edge count with it accounted for, kept for a start after a crash)."""
        self.submit(Open(run_id, parcel_id, induct_wall, latch_seq))

    def mark_latch(self, seq: int) -> None:
        """Every parcel up to the latch's head-edge count `seq` has a journal row or a record."""
        self.submit(LatchMark(seq))

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
            "collisions": self.collisions,
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
                    stored, bad, collisions = _insert_rows(conn, self._pending)
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
                    if "full" in str(exc):
                        # the WAL holds every commit since its last checkpoint (up to ~4 MB): moved
                        # into the database and truncated, it gives that space back for the retry
                        try:
                            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        except sqlite3.Error:
                            pass
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
            self.collisions += collisions
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
        marks = sum(type(i) is LatchMark for i in items)  # not records: nothing to keep of them
        items = [i for i in items if type(i) is not LatchMark]
        fallback = self.path.with_name(self.path.name + ".unsaved.jsonl")
        try:
            with open(fallback, "a", encoding="utf-8") as fh:
                for rec in items:
                    rec = {"journal_open": rec._asdict()} if type(rec) is Open else rec
                    fh.write(json.dumps(_repr_tree(rec), ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.critical("record database unwritable: %d records saved to %s", len(items), fallback)
            with self._cond:
                self._done += len(items) + marks
            self._pending = []
        except OSError as exc:
            log.critical("record database unwritable and %s failed (%s): %d records lost",
                         fallback, exc, len(items))


def close_open_journal(path: str | os.PathLike[str], reason: str, now: float | None = None) -> list[dict]:
    """Give every parcel still open in the journal (the belt's content when the last run ended
    without recording it) its ``fault`` record, in one transaction. Returns those records."""
    now = time.time() if now is None else now
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            recs = [fault_record(run_id, pid, induct, reason, now) for run_id, pid, induct in open_rows(conn)]
            _insert_rows(conn, recs)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    if recs:
        log.warning("%d parcels were on the belt when the last run ended without their records: recorded "
                    "as fault (%s)", len(recs), reason)
    return recs


def take_latch_mark(path: str | os.PathLike[str]) -> int | None:
    """The latch mark a run that did not stop cleanly left (None after a clean stop)."""
    conn = connect(path)
    try:
        return stored_latch_mark(conn)
    finally:
        conn.close()


def drop_latch_mark(path: str | os.PathLike[str]) -> None:
    conn = connect(path)
    try:
        clear_latch_mark(conn)
    finally:
        conn.close()
