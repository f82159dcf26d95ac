"""Retention: rows older than the configured days are deleted, in small batches, so that the
databases of a line that runs for years stop growing.

Each batch is one short write transaction (`batch_rows` rows) followed by a pause, so the record
writer — which shares the file's one write lock — waits for at most one batch, never for the
whole purge. Rows that something still needs are never deleted: parcel records not yet read by
every forwarder (the `cursors` table: the site database, the upload outbox), uploads still
pending, alarms still raised. The freed pages are reused by new rows (the file stops growing; it
does not shrink).

`Retention` does one purge (`purge()`) and says when the next is due (`next_run()`, nightly at
`retention.at`, local time); `RetentionThread` runs it in the service process.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sorter.controller.config.retention import RetentionConfig
from sorter.controller.records.schema import connect

log = logging.getLogger("sorter.records")
DAY_S = 86_400.0
JULIAN_UNIX_EPOCH = 2440587.5  # the manifest's `updated` is a Julian day (SQLite's julianday('now'))


@dataclass(frozen=True)
class Target:
    """One table's old rows: those whose `cond` holds for the cutoff (its one `?`), found by walking
    the table's key `key` upwards (one read of the table per purge, outside any write lock) and
    deleted by key with `cond` checked again (a row that changed meanwhile stays)."""
    table: str
    days: str   # the RetentionConfig field that says how long
    cond: str
    key: str = "id"


# the record database
RECORD_TARGETS = (
    # not past the slowest forwarder (the site database, the outbox filler); no cursor: none forwards
    Target("parcels", "records_days",
           "ended_wall < ? AND id <= (SELECT COALESCE(MIN(last_id), 9223372036854775807) FROM cursors)"),
    Target("journal", "journal_days", "opened_wall < ?", key="run_id || '/' || parcel_id"),
    Target("bad_records", "records_days", "written_wall < ?"),
    Target("outbox", "records_days", "created_wall < ? AND state IN ('sent', 'dead')"),  # never a pending one
    Target("audit", "records_days", "wall < ?"),
    Target("alarm_history", "records_days", "cleared_wall IS NOT NULL AND last_wall < ?"),
)
# the manifest's `updated` is a Julian day: its cutoff is converted
MANIFEST_TARGET = Target("manifest", "manifest_days", "updated < ?", key="waybill")


class Retention:
    """One purge of the record database and the manifest, batch by batch. `sleep` is the pause
    between batches (the writer's turn); `on_batch(table, n)` is told after each one."""

    def __init__(self, records_db: str | Path, manifest_db: str | Path | None, cfg: RetentionConfig,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], object] = time.sleep,
                 on_batch: Callable[[str, int], object] | None = None, busy_timeout_s: float = 10.0):
        self.busy_timeout_s = busy_timeout_s  # a batch waits this long for the write lock, then the purge fails
        self.records_db = Path(records_db)
        self.manifest_db = Path(manifest_db) if manifest_db is not None else None
        self.cfg, self.wall, self.sleep, self.on_batch = cfg, wall, sleep, on_batch
        self.batches = 0

    def next_run(self, now_wall: float) -> float:
        """The next `cfg.at` (local time) after `now_wall`."""
        hh, mm = (int(x) for x in self.cfg.at.split(":"))
        now = dt.datetime.fromtimestamp(now_wall)
        due = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if due <= now:
            due += dt.timedelta(days=1)
        return due.timestamp()

    def purge(self, stop: threading.Event | None = None) -> dict[str, int]:
        """Delete what is too old; returns rows deleted per table. `stop` ends it between batches."""
        now = self.wall()
        done: dict[str, int] = {}
        if self.records_db.exists():
            conn = connect(self.records_db, timeout_s=self.busy_timeout_s)
            try:
                for t in RECORD_TARGETS:
                    days = getattr(self.cfg, t.days)
                    if days > 0:
                        done[t.table] = self._purge(conn, t, now - days * DAY_S, stop)
            finally:
                conn.close()
        if self.manifest_db is not None and self.manifest_db.exists() and self.cfg.manifest_days > 0:
            conn = sqlite3.connect(str(self.manifest_db), timeout=self.busy_timeout_s, isolation_level=None)
            try:
                if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='manifest'").fetchone():
                    cutoff = now - self.cfg.manifest_days * DAY_S
                    done["manifest"] = self._purge(conn, MANIFEST_TARGET, cutoff / DAY_S + JULIAN_UNIX_EPOCH, stop)
            finally:
                conn.close()
        return done

    def _purge(self, conn: sqlite3.Connection, t: Target, cutoff: float, stop) -> int:
        total, after = 0, None
        find = (f"SELECT {t.key} FROM {t.table} WHERE ({t.cond}) AND (? IS NULL OR {t.key} > ?) "
                f"ORDER BY {t.key} LIMIT ?")
        delete = f"DELETE FROM {t.table} WHERE {t.key} = ? AND ({t.cond})"
        while not (stop is not None and stop.is_set()):
            keys = [k for (k,) in conn.execute(find, (cutoff, after, after, self.cfg.batch_rows))]
            if not keys:
                break
            conn.execute("BEGIN IMMEDIATE")  # the write lock, for this batch only
            try:
                n = sum(conn.execute(delete, (k, cutoff)).rowcount for k in keys)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            after = keys[-1]
            total += n
            self._between(t.table, n)
        return total

    def _between(self, table: str, n: int) -> None:
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(table, n)
        self.sleep(self.cfg.pause_ms / 1000)


class RetentionThread:
    """Runs the purge nightly in the service process; `status()` is what the page shows."""

    def __init__(self, retention: Retention):
        self.retention = retention
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.last: dict = {"wall": None, "deleted": {}, "seconds": None, "error": None}
        self.next_wall = retention.next_run(retention.wall())
        self.running = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.next_wall - self.retention.wall()
            if wait > 0:
                self._stop.wait(min(wait, 60))  # re-read the clock: the PC's time may be set meanwhile
                continue
            self.run_now()
            self.next_wall = self.retention.next_run(self.retention.wall())

    def run_now(self) -> dict:
        t0, self.running = time.monotonic(), True
        try:
            deleted = self.retention.purge(self._stop)
            self.last = {"wall": time.time(), "deleted": deleted, "seconds": round(time.monotonic() - t0, 2),
                         "error": None}
            if any(deleted.values()):
                log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in deleted.items() if n))
        except (sqlite3.Error, OSError) as exc:  # a locked or full disk: tried again tomorrow
            self.last = dict(self.last, wall=time.time(), error=str(exc))
            log.warning("retention: purge failed (%s); next try at the next run", exc)
        finally:
            self.running = False
        return self.last

    def status(self) -> dict:
        cfg = self.retention.cfg
        return {"records_days": cfg.records_days, "journal_days": cfg.journal_days,
                "manifest_days": cfg.manifest_days, "next_wall": self.next_wall, "running": self.running,
                "last": self.last}
