"""The page's login sessions, kept in `sessions.db` in the line's data folder so that a restart of
the service (an update, a crash, the watchdog) does not log the floor out.

- A row is keyed by the SHA-256 of the session id: whoever reads the file (a backup, a copied
  disk) cannot present a session from it. The CSRF token is stored as is: without the cookie it
  opens nothing.
- Expiry is wall-clock time (epoch seconds): the monotonic clock starts again at a reboot.
- A file that cannot be opened or written (a full disk, a read-only folder, a broken file) does
  not stop a login: what the file would not take is kept in memory, a warning is logged once, and
  those sessions end with the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("sorter.api.sessions")

SESSIONS_FILE = "sessions.db"
# a use pushes the expiry into the file at most this often: a page polling every second would
# otherwise be a write per second per screen, for an expiry that is hours away
EXTEND_EVERY_S = 60.0
# after the file failed to open, it is tried again this much later (a disk that was freed)
REOPEN_AFTER_S = 60.0
# a login waits at most this long for another process writing the file (the old service still
# stopping while the new one starts); the lookup runs on the event loop, so briefly
BUSY_TIMEOUT_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    expires_wall REAL NOT NULL,
    created_wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_wall);
"""


@dataclass
class Session:
    name: str
    role: str
    csrf: str
    expires: float                 # wall clock, epoch seconds
    created_wall: float = field(default_factory=time.time)


def session_key(sid: str) -> str:
    """What the file keys a session by: never the id the cookie carries."""
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()


def sessions_file_of(control: object = None, store: object = None) -> Path | None:
    """The sessions file of an app: in the data folder of the line the control runs, else beside
    the records database the app reads; None (memory only) for an app with neither."""
    cfg = getattr(control, "cfg", None)
    if cfg is not None and (getattr(cfg, "data_dir", None) is not None
                            or getattr(getattr(cfg, "records", None), "database", None) is not None):
        from sorter.controller.config.vision import data_dir
        return data_dir(cfg) / SESSIONS_FILE
    path = getattr(store, "path", None)
    if isinstance(path, (str, os.PathLike)) and str(path) not in ("", ":memory:"):
        return Path(path).parent / SESSIONS_FILE
    return None


class _Memory:
    """Sessions in a dict, the oldest first (what the file would not take, or everything when
    there is no file)."""

    def __init__(self, max_sessions: int):
        self.max = max_sessions
        self.rows: dict[str, Session] = {}

    def add(self, key: str, s: Session, now: float) -> None:
        self.purge(now)
        self.rows[key] = s
        while len(self.rows) > self.max:
            self.rows.pop(next(iter(self.rows)))

    def purge(self, now: float) -> None:
        for key in [k for k, s in self.rows.items() if now >= s.expires]:
            del self.rows[key]


class SessionStore:
    """The sessions of one app: the SQLite file when it works, memory for what it would not take.
    Every method answers (none raises for the file's sake); each change is one short transaction,
    so two processes on the same file (a restart's overlap) see each other's logins and logouts."""

    def __init__(self, path: Path | None, max_sessions: int, wall: Callable[[], float] = time.time):
        self.path = Path(path) if path is not None else None
        self.max = max_sessions
        self.wall = wall
        self.memory = _Memory(max_sessions)
        # sessions ended (logout, expiry, a removed user) whose row the file would not drop: refused
        # here all the same, and dropped from the file once it takes writes again
        self.ended: dict[str, None] = {}
        self._conn: sqlite3.Connection | None = None
        self._open_failed_at: float | None = None
        self._warned = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what Auth asks
    def add(self, key: str, s: Session) -> None:
        now = self.wall()
        with self._lock:
            self.memory.purge(now)
            self._drop_ended()

            def insert(db: sqlite3.Connection) -> None:
                db.execute("DELETE FROM sessions WHERE expires_wall <= ?", (now,))
                db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                           (key, s.name, s.role, s.csrf, s.expires, s.created_wall))
                # the oldest go first, as in memory
                db.execute("DELETE FROM sessions WHERE id_sha256 IN (SELECT id_sha256 FROM sessions "
                           "ORDER BY created_wall DESC, rowid DESC LIMIT -1 OFFSET ?)", (self.max,))

            done, _ = self._in_file(insert, transaction=True)
            if not done:
                self.memory.add(key, s, now)

    def get(self, key: str) -> Session | None:
        with self._lock:
            if key in self.ended:
                return None
            s = self.memory.rows.get(key)
            if s is not None:
                return s
            _, row = self._in_file(lambda db: db.execute(
                "SELECT name, role, csrf, expires_wall, created_wall FROM sessions WHERE id_sha256 = ?",
                (key,)).fetchone())
            return Session(*row) if row else None

    def extend(self, key: str, s: Session, expires: float) -> None:
        """The session was used: it now ends at `expires`."""
        with self._lock:
            if key in self.memory.rows:
                s.expires = expires
                return
            if expires - s.expires < EXTEND_EVERY_S:
                return
            done, _ = self._in_file(lambda db: db.execute(
                "UPDATE sessions SET expires_wall = ? WHERE id_sha256 = ?", (expires, key)))
            s.expires = expires
            if not done:   # the file took the login but not its use: the use is kept in memory
                self.memory.add(key, s, self.wall())

    def remove(self, key: str) -> None:
        with self._lock:
            self.memory.rows.pop(key, None)
            self.ended[key] = None
            self._drop_ended()

    def _drop_ended(self) -> None:
        if not self.ended:
            return
        keys = list(self.ended)
        done, _ = self._in_file(lambda db: db.executemany("DELETE FROM sessions WHERE id_sha256 = ?",
                                                          [(k,) for k in keys]), transaction=True)
        if done or self.path is None:
            for k in keys:
                self.ended.pop(k, None)
        while len(self.ended) > 10 * self.max:   # bounded: the oldest ends are the likeliest expired
            self.ended.pop(next(iter(self.ended)))

    # ------------------------------------------------------------------ the file
    def _in_file(self, fn: Callable[[sqlite3.Connection], object], transaction: bool = False) -> tuple[bool, object]:
        """(True, fn(connection)), or (False, None) when there is no file or it failed."""
        db = self._db()
        if db is None:
            return False, None
        try:
            if transaction:
                db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
                if transaction:
                    db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._failed(exc)
            return False, None
        return True, out

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is not None or self.path is None:
            return self._conn
        if self._open_failed_at is not None and self.wall() - self._open_failed_at < REOPEN_AFTER_S:
            return None
        try:
            # opened at the first login or cookie, not at start: a line without users has no file
            conn = _open(self.path)
        except (OSError, sqlite3.Error) as exc:
            self._open_failed_at = self.wall()
            self._failed(exc)
            return None
        self._conn, self._open_failed_at = conn, None
        try:
            conn.execute("DELETE FROM sessions WHERE expires_wall <= ?", (self.wall(),))
        except sqlite3.Error as exc:
            self._failed(exc)
        return conn

    def _failed(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning("sessions file %s cannot be used (%s): logins are kept in memory and end with a "
                        "restart of the service", self.path, exc)
        else:
            log.debug("sessions file %s: %s", self.path, exc)


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # created private before SQLite opens it: its -wal and -shm files take the same mode
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # a power cut may lose the last login or logout (a login again), never the file
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        # a file SQLite opened but cannot write (read-only folder) fails here, not at a login
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.close()
        raise
    return conn
