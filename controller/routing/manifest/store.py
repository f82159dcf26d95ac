"""The manifest store: waybill -> advice in a SQLite file in WAL mode, never in Python memory.

One process writes (the importer, the API, the simulator, the real-time lookup's answers) while
the controller reads the same file; a reader sees every committed batch without reopening. A lookup
is one prepared point query on the primary key (a few microseconds). A re-import of a waybill
replaces its row whole: the newest advice counts.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sorter.controller.routing.manifest import importer
from sorter.controller.routing.manifest.importer import ImportReport
from sorter.controller.routing.manifest.rows import COLUMNS, ManifestRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (
    waybill   TEXT PRIMARY KEY,
    town      TEXT,
    sort_code TEXT,
    address   TEXT,
    carrier   TEXT,
    service   TEXT,
    weight_kg REAL,
    intercept INTEGER NOT NULL DEFAULT 0,
    updated   REAL NOT NULL DEFAULT (julianday('now')),
    CHECK (town IS NOT NULL OR sort_code IS NOT NULL OR address IS NOT NULL)
) WITHOUT ROWID
"""
SCHEMA_VERSION = 2

# what the real-time lookup (controller/routing/lookup.py, in the service process) knows of a waybill it
# is asking about or could not get: the timing process's decision reads it for its no_route reason
LOOKUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS lookup_status (
    waybill TEXT PRIMARY KEY,
    state   TEXT NOT NULL,
    reason  TEXT,
    updated REAL NOT NULL DEFAULT (julianday('now'))
) WITHOUT ROWID
"""
_LOOKUP_NOTE = "SELECT state, reason FROM lookup_status WHERE waybill = ?"

_LOOKUP = "SELECT town, sort_code, address, carrier, service, weight_kg, intercept FROM manifest WHERE waybill = ?"
_LOOKUP_TOWN = "SELECT town FROM manifest WHERE waybill = ?"


def _upsert_sql(columns: int | tuple[str, ...]) -> str:
    """The upsert of rows of `columns` (the first n of COLUMNS, or those named, waybill first):
    only the columns given are bound (binding NULLs costs ~30% of a bulk import)."""
    cols = COLUMNS[:columns] if isinstance(columns, int) else tuple(columns)
    n = len(cols)
    sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:] if c in cols)
    # columns the row does not give are cleared: the newest advice replaces the old one whole
    clears = ", ".join(f"{c} = {'0' if c == 'intercept' else 'NULL'}" for c in COLUMNS[1:] if c not in cols)
    return (f"INSERT INTO manifest ({', '.join(cols)}) VALUES ({', '.join('?' * n)}) "
            f"ON CONFLICT (waybill) DO UPDATE SET {sets}{', ' + clears if clears else ''}, "
            f"updated = excluded.updated")


# rows per INSERT statement of a bulk upsert: one step of a many-row VALUES costs far less per row
# than a step per row (the sqlite3 module's per-step work: reset, GIL, locks; measured: -40% of
# the executemany time of an import), and 100 x 8 columns stays far below SQLite's 32,766 variables
ROWS_PER_STATEMENT = 100


def _many_rows_sql(columns: int | tuple[str, ...], n: int) -> str:
    """_upsert_sql for `n` rows in one statement (their values flattened, row after row). A
    waybill twice among them is upserted in order: the later row counts, as row by row."""
    width = columns if isinstance(columns, int) else len(columns)
    one = "(" + ", ".join("?" * width) + ")"
    return _upsert_sql(columns).replace(f"VALUES {one}", "VALUES " + ", ".join([one] * n), 1)


def _upsert_rows(db: sqlite3.Connection, columns: int | tuple[str, ...], rows: list) -> None:
    """Execute the upsert of `rows` in the open transaction; every row has the values of
    `columns` (a short row among long ones would shift every value after it)."""
    width = columns if isinstance(columns, int) else len(columns)
    k = ROWS_PER_STATEMENT
    full = len(rows) - len(rows) % k
    if full:
        # k rows' values at a time, straight from the rows to the binding: each row is touched
        # once (a flat list of all the values first cost more than the many-row statement saved)
        values = itertools.chain.from_iterable(itertools.islice(rows, full))
        db.executemany(_many_rows_sql(columns, k), zip(*[values] * (width * k)))
    if full < len(rows):
        db.executemany(_upsert_sql(columns), rows[full:])


class Manifest:
    """Waybill -> destination table in a SQLite file.

    readonly=True opens it for lookups only (PRAGMA query_only): what the controller does while
    another process writes. The file and table are created (or an older table migrated) if
    needed either way. cache_mb: SQLite page cache of this connection (an importer of millions
    of rows wants a big one; the controller's reader keeps the default).
    """

    def __init__(self, path: str | Path, readonly: bool = False, cache_mb: int | None = None):
        self.path = Path(path)
        self.readonly = readonly
        self.cache_mb = cache_mb
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): a reader sees each committed batch; the writer
        # opens its own transaction per batch.
        # A read-only manifest is built by whoever starts the controller and then used by the
        # timing thread (and the API thread for count()); SQLite is built serialized
        # (threadsafety 3), so the connection may be shared without a Python-side lock.
        shared = readonly and sqlite3.threadsafety == 3
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0,
                                   check_same_thread=not shared)
        db = self._db
        db.execute("PRAGMA busy_timeout = 10000")
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        if cache_mb:
            db.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")
        self._ensure_schema()
        if readonly:
            db.execute("PRAGMA query_only = ON")
        self._cur = db.cursor()

    def _ensure_schema(self) -> None:
        db = self._db
        cols = [r[1] for r in db.execute("PRAGMA table_info(manifest)")]
        if cols and "intercept" in cols:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'lookup_status'").fetchone() is None:
                db.execute(LOOKUP_SCHEMA)
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            cols = [r[1] for r in db.execute("PRAGMA table_info(manifest)")]
            if not cols:
                db.execute(SCHEMA)
            elif "intercept" not in cols:
                # a manifest of the first version (waybill, town NOT NULL, sort_code, address):
                # rebuild it with the full columns, keeping every row
                db.execute("ALTER TABLE manifest RENAME TO manifest_v1")
                db.execute(SCHEMA)
                keep = [c for c in ("waybill", "town", "sort_code", "address", "updated") if c in cols]
                db.execute(f"INSERT INTO manifest ({', '.join(keep)}) SELECT {', '.join(keep)} FROM manifest_v1")
                db.execute("DROP TABLE manifest_v1")
            db.execute(LOOKUP_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- reads -------------------------------------------------------------------------
    def lookup(self, waybill: str) -> str | None:
        """Town of a waybill (None if absent or advised without a town)."""
        row = self._cur.execute(_LOOKUP_TOWN, (waybill,)).fetchone()
        return None if row is None else row[0]

    def lookup_row(self, waybill: str) -> ManifestRow | None:
        """The whole advice of a waybill, or None. One primary-key lookup; the statement
        stays prepared in the connection's statement cache."""
        row = self._cur.execute(_LOOKUP, (waybill,)).fetchone()
        return None if row is None else ManifestRow._make(row)

    def lookup_note(self, waybill: str) -> tuple[str, str | None] | None:
        """(state, reason) the real-time lookup left for a waybill it asked about and has no
        advice for (pending, not_found, timeout, error, circuit_open ...), or None."""
        row = self._cur.execute(_LOOKUP_NOTE, (waybill,)).fetchone()
        return None if row is None else (row[0], row[1])

    def note_lookup(self, waybill: str, state: str, reason: str | None = None) -> None:
        """Record the real-time lookup's state for a waybill (autocommit: one small write)."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        self._db.execute("INSERT INTO lookup_status (waybill, state, reason) VALUES (?, ?, ?) "
                         "ON CONFLICT (waybill) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                         "updated = excluded.updated", (waybill, state, reason))

    def answer_lookup(self, row: tuple) -> None:
        """Store advice the real-time lookup got (a full COLUMNS row) and drop its note, in
        one transaction."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_upsert_sql(len(row)), row)
            db.execute("DELETE FROM lookup_status WHERE waybill = ?", (row[0],))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def prune_lookup_notes(self, older_than_days: float = 1.0) -> int:
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        return self._db.execute("DELETE FROM lookup_status WHERE updated < julianday('now') - ?",
                                (older_than_days,)).rowcount

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM manifest").fetchone()[0]

    # ---- writes ------------------------------------------------------------------------
    def upsert(self, rows: Iterable[tuple], columns: tuple[str, ...] | None = None) -> int:
        """Insert or replace rows in one transaction; returns the row count. A row is a tuple
        of the first 2..8 of COLUMNS: (waybill, town[, sort_code, address, carrier, service,
        weight_kg, intercept]), or of the `columns` named (waybill first, e.g. waybill, town,
        carrier); the columns it does not give are cleared."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        n = len(rows[0])
        if columns is not None:
            if (len(columns) != n or columns[0] != "waybill" or len(set(columns)) != n
                    or not set(columns) <= set(COLUMNS)):
                raise ValueError(f"columns {columns!r} do not fit rows of {n} values (waybill first, of {COLUMNS})")
        elif not 2 <= n <= len(COLUMNS):
            raise ValueError(f"a manifest row has 2..{len(COLUMNS)} columns, got {n}")
        if not all(map(n.__eq__, map(len, rows))):
            # row by row, where a row that does not fit fails its binding (flattened, it would
            # shift the values of every row after it)
            return self._upsert_batch(rows, columns or n, per_row=True)
        return self._upsert_batch(rows, columns or n)

    def _upsert_batch(self, rows: list, columns: int | tuple[str, ...], per_row: bool = False) -> int:
        """upsert() of rows known to be alike (the importer's: all of `columns`), in one transaction."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if per_row:
                db.executemany(_upsert_sql(columns), rows)
            else:
                _upsert_rows(db, columns, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return len(rows)

    # ---- imports (sorter.controller.routing.manifest.importer) ----------------------------
    def import_csv(self, path: str | Path,
                   progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
        """Import a carrier's CSV. The header names the columns (waybill/运单号 and at least one
        of town/目的地/乡镇, sort_code/三段码, address/地址; optionally carrier, service,
        weight_kg (or weight_g), intercept), in any order, among other columns. UTF-8 with or
        without BOM, or GBK/GB18030. Bad rows are reported with their file line; the rest are
        imported. progress(bytes read, file size, rows imported) is called now and then."""
        return importer.import_csv(self, path, progress)

    def import_csv_text(self, text: str, name: str = "upload") -> ImportReport:
        """Import CSV already decoded to text (an upload); as import_csv."""
        return importer.import_csv_text(self, text, name)

    def import_json(self, path: str | Path,
                    progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
        """Import advice as JSON: an array of objects, {"rows": [...]}, or JSON lines (one
        object per line). Keys as the CSV headers. Bad records are reported by line (JSON
        lines) or item number (an array)."""
        return importer.import_json(self, path, progress)

    def import_records(self, data: Any, report: ImportReport | None = None) -> ImportReport:
        """Import decoded JSON: a list of objects or {"rows": [...]} (items numbered from 1)."""
        return importer.import_records(self, data, report)

    def _import_records(self, items: Iterable[tuple[int, Any]], report: ImportReport, pos, size, progress) -> None:
        """Import numbered records (item or line number, object) into ``report`` (the API's JSON lines)."""
        importer._import_records(self, items, report, pos, size, progress)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
