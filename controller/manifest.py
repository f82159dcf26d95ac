"""The pre-advice manifest: waybill -> destination town, in SQLite (never in Python memory).

Carriers send millions of rows a day, so the manifest lives in a SQLite file in WAL mode: one
process writes (the importer, or the simulator) while the controller reads the same file; a
reader sees every committed batch without reopening. A lookup is one prepared point query on
the primary key (a few microseconds).

Columns sort_code and address are there for later (carrier sort codes, address -> town via a
gazetteer); today only town is filled.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (
    waybill   TEXT PRIMARY KEY,
    town      TEXT NOT NULL,
    sort_code TEXT,
    address   TEXT,
    updated   REAL NOT NULL DEFAULT (julianday('now'))
) WITHOUT ROWID
"""

_UPSERT = (
    "INSERT INTO manifest (waybill, town) VALUES (?, ?) "
    "ON CONFLICT (waybill) DO UPDATE SET town = excluded.town, updated = excluded.updated"
)
_LOOKUP = "SELECT town FROM manifest WHERE waybill = ?"

WAYBILL_RE = re.compile(r"[A-Z0-9]{6,40}")

# header names accepted for each column (compared after strip + lower case)
WAYBILL_HEADERS = {"waybill", "waybill_no", "mailno", "运单号", "单号", "快递单号", "运单编号"}
TOWN_HEADERS = {"town", "destination", "目的地", "乡镇", "乡镇/街道", "乡镇街道", "街道", "目的乡镇"}

BATCH = 50_000


def normalise_waybill(text: str) -> str:
    return text.strip().upper()


@dataclass
class ImportReport:
    path: str
    encoding: str = ""
    imported: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (1-based file line, problem)
    error: str | None = None  # the whole file was refused (no usable header, cannot decode)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.bad_rows

    def summary(self) -> str:
        if self.error:
            return f"{self.path}: {self.error}"
        s = f"{self.path}: {self.imported} rows imported ({self.encoding})"
        if self.bad_rows:
            s += f", {len(self.bad_rows)} bad rows: " + "; ".join(
                f"line {n}: {p}" for n, p in self.bad_rows[:10])
            if len(self.bad_rows) > 10:
                s += "; ..."
        return s


def decode_csv_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM) if it decodes strictly, else GB18030
    (a superset of GBK/GB2312, what Excel on a Chinese Windows PC writes)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"


class Manifest:
    """Waybill -> town table in a SQLite file.

    readonly=True opens it for lookups only (PRAGMA query_only): what the controller does while
    another process writes. The file and table are created if missing either way.
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): a reader sees each committed batch; the writer
        # opens its own transaction per batch
        # A read-only manifest is built by whoever starts the controller and then used by the
        # timing thread (and the API thread for count()); SQLite is built serialized
        # (threadsafety 3), so the connection may be shared without a Python-side lock.
        shared = readonly and sqlite3.threadsafety == 3
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=5.0,
                                   check_same_thread=not shared)
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(SCHEMA)
        if readonly:
            db.execute("PRAGMA query_only = ON")
        self._cur = db.cursor()

    # ---- reads -------------------------------------------------------------------------
    def lookup(self, waybill: str) -> str | None:
        """Town of a waybill, or None. One primary-key lookup; the statement stays prepared
        in the connection's statement cache."""
        row = self._cur.execute(_LOOKUP, (waybill,)).fetchone()
        return None if row is None else row[0]

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM manifest").fetchone()[0]

    # ---- writes ------------------------------------------------------------------------
    def upsert(self, rows: Iterable[tuple[str, str]]) -> int:
        """Insert or update (waybill, town) rows in one transaction; returns the row count."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return len(rows)

    def import_csv(self, path: str | Path) -> ImportReport:
        """Import a carrier's CSV (header `waybill,town` or 运单号,目的地/乡镇; UTF-8 with or
        without BOM, or GBK/GB18030). Bad rows are reported with their file line; the rest
        are imported."""
        path = Path(path)
        report = ImportReport(str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.error = f"cannot read: {exc}"
            return report
        try:
            text, report.encoding = decode_csv_bytes(data)
        except UnicodeDecodeError as exc:
            report.error = f"neither UTF-8 nor GBK/GB18030: {exc}"
            return report
        reader = csv.reader(io.StringIO(text.replace("\x00", ""), newline=""))
        header: list[str] | None = None
        wi = ti = -1
        batch: list[tuple[str, str]] = []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report.bad_rows.append((reader.line_num, f"unreadable CSV: {exc}"))
                continue
            line = reader.line_num
            if header is None:
                if not any(c.strip() for c in row):
                    continue  # blank lines before the header
                header = [c.strip().lower() for c in row]
                wi = next((i for i, h in enumerate(header) if h in WAYBILL_HEADERS), -1)
                ti = next((i for i, h in enumerate(header) if h in TOWN_HEADERS), -1)
                if wi < 0 or ti < 0:
                    report.error = (f"line {line}: header must name a waybill column (waybill/运单号) "
                                    f"and a town column (town/目的地/乡镇), got {row!r}")
                    return report
                continue
            if not any(c.strip() for c in row):
                continue  # blank line
            if len(row) <= max(wi, ti):
                report.bad_rows.append((line, f"{len(row)} columns, expected {len(header)}"))
                continue
            waybill = normalise_waybill(row[wi])
            town = row[ti].strip()
            if not waybill:
                report.bad_rows.append((line, "empty waybill"))
                continue
            if not WAYBILL_RE.fullmatch(waybill):
                report.bad_rows.append((line, f"bad waybill {row[wi].strip()!r}"))
                continue
            if not town:
                report.bad_rows.append((line, f"waybill {waybill}: empty town"))
                continue
            batch.append((waybill, town))
            if len(batch) >= BATCH:
                report.imported += self.upsert(batch)
                batch = []
        if header is None:
            report.error = "empty file (no header row)"
            return report
        report.imported += self.upsert(batch)
        return report

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
