"""The forwarder: the line's local SQLite records sent on to the site's PostgreSQL database.

The local file stays the line's journal and its buffer: the line never waits for the site database.
A thread reads the parcels table in id order (the writer commits in that order) after a cursor
kept in the same local file (`cursors`, name 'site_db'), inserts each batch in one PostgreSQL
transaction with `ON CONFLICT (run_id, parcel_id) DO NOTHING`, and only then moves the cursor.
A crash between the two sends that batch again, and the unique key drops it: at least once on the
wire, exactly once in the table. While PostgreSQL is unreachable the records wait in the file
(the backlog shown on the page) and go in order when it is back; reconnection backs off from
0.5 s to `retry_max_s`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from sorter.controller.records.schema import FIELD_NAMES, SchemaError, connect
from sorter.controller.records.site_db import INSERT, ensure_schema, redact

log = logging.getLogger("sorter.records.site")
CURSOR = "site_db"
_SELECT = f"SELECT id, {', '.join(FIELD_NAMES)}, written_wall FROM parcels WHERE id > ? ORDER BY id LIMIT ?"


class SiteForwarder:
    def __init__(self, local_path: str | os.PathLike[str], url: str, line_id: str, *, password: str | None = None,
                 batch: int = 500, retry_max_s: float = 30, connect_timeout_s: float = 5, poll_s: float = 0.5,
                 clock: Callable[[], float] = time.time):
        self.local_path, self.url, self.line_id = Path(local_path), url, line_id
        self.password, self.batch, self.retry_max_s = password, batch, retry_max_s
        self.connect_timeout_s, self.poll_s, self.clock = connect_timeout_s, poll_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_by = float("inf")
        self._local = connect(self.local_path)  # migrates the file: the cursors table exists from here on
        self.connected = False
        self.cursor = self._read_cursor()
        self.backlog = self._count_backlog()
        self.sent = 0
        self.duplicates = 0  # rows the site database already had (a resend after a crash)
        self.errors = 0
        self.last_error: str | None = None
        self.last_sent_wall: float | None = None
        self.down_since: float | None = None

    @classmethod
    def from_config(cls, cfg) -> "SiteForwarder":
        db = cfg.site.database
        password = None
        if db.password_env:
            password = os.environ.get(db.password_env)
            if password is None:
                raise ValueError(f"site.database.password_env: environment variable {db.password_env} is not set")
        return cls(cfg.records.database, db.url, cfg.site.line_id, password=password, batch=db.batch,
                   retry_max_s=db.retry_max_s, connect_timeout_s=db.connect_timeout_s)

    # ---------------------------------------------------------------- the part
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="site-db-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """A last pass is made (if the site database answers) before the thread ends; what it cannot
        send waits in the local file for the next start."""
        self._stop_by = time.monotonic() + timeout / 2  # a long backlog waits for the next start
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._local.close()

    def status(self) -> dict[str, Any]:
        return {"url": redact(self.url), "line_id": self.line_id, "connected": self.connected,
                "backlog": self.backlog, "sent": self.sent, "duplicates": self.duplicates, "cursor": self.cursor,
                "errors": self.errors, "last_error": self.last_error, "last_sent_wall": self.last_sent_wall,
                "down_since_wall": self.down_since}

    # ---------------------------------------------------------------- local file
    def _read_cursor(self) -> int:
        row = self._local.execute("SELECT last_id FROM cursors WHERE name = ?", (CURSOR,)).fetchone()
        return row[0] if row else 0

    def _write_cursor(self, last_id: int) -> None:
        self._local.execute("INSERT INTO cursors (name, last_id) VALUES (?, ?) "
                            "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id", (CURSOR, last_id))
        self.cursor = last_id

    def _count_backlog(self) -> int:
        return self._local.execute("SELECT COUNT(*) FROM parcels WHERE id > ?", (self.cursor,)).fetchone()[0]

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        import psycopg
        conn = None
        backoff = 0.5
        while True:
            stopping = self._stop.is_set()
            try:
                if conn is None:
                    conn = psycopg.connect(self.url, password=self.password, connect_timeout=int(self.connect_timeout_s),
                                           application_name=f"sorter-{self.line_id}")
                    ensure_schema(conn)
                    if self.down_since is not None:
                        log.info("site database back after %.0f s; %d records to send",
                                 self.clock() - self.down_since, self._count_backlog())
                    self.connected, self.down_since, backoff = True, None, 0.5
                rows = self._local.execute(_SELECT, (self.cursor, self.batch)).fetchall()
                if rows:
                    self._send(conn, rows)
                    self.backlog = self._count_backlog()
                    if not (stopping and time.monotonic() > self._stop_by):
                        continue
                    log.info("site database: %d records left for the next start", self.backlog)
                    break
                self.backlog = 0
                if stopping:
                    break
                self._stop.wait(self.poll_s)
            except psycopg.Error as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
                if self.connected or self.down_since is None:
                    log.warning("site database unreachable (%s); records wait in %s", self.last_error, self.local_path)
                    self.down_since = self.clock()
                self.connected = False
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
                    conn = None
                if stopping:
                    break
                self._wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
            except Exception as exc:  # noqa: BLE001 - the local file failed (disk), or a newer site schema
                self.errors += 1
                self.last_error = str(exc) if isinstance(exc, SchemaError) else \
                    f"local records: {type(exc).__name__}: {exc}"
                if conn is not None and isinstance(exc, SchemaError):
                    conn.close()
                    conn = None
                log.error("site forwarder: %s", self.last_error)
                if stopping:
                    break
                self._wait(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
        if conn is not None:
            conn.close()
        self.connected = False

    def _send(self, conn, rows: list) -> None:
        params = [(self.line_id, *row) for row in rows]
        with conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(INSERT, params)
                inserted = cur.rowcount
        self._write_cursor(rows[-1][0])  # only after PostgreSQL committed
        self.sent += inserted
        self.duplicates += len(rows) - inserted
        self.last_sent_wall = self.clock()

    def _wait(self, seconds: float) -> None:
        """Back off, keeping the backlog on the page current meanwhile."""
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            try:
                self.backlog = self._count_backlog()
            except Exception:  # noqa: BLE001
                pass
            left = end - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(1.0, left))
