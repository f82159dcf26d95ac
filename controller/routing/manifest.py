"""The pre-advice manifest: waybill -> destination, in SQLite (never in Python memory).

Carriers (or the co-delivery platform) send millions of rows a day: for each waybill a town, or a
sort code (三段码, e.g. ``571-W30 02``), or a full address, and optionally the carrier, a service
class, the weight and an intercept flag (拦截件: the carrier has asked the centre to stop it).

The manifest lives in a SQLite file in WAL mode: one process writes (the importer, the API, or
the simulator) while the controller reads the same file; a reader sees every committed batch
without reopening. A lookup is one prepared point query on the primary key (a few microseconds).
A re-import of a waybill replaces its row: the newest advice counts.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
import itertools
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

# the full row, in this column order (upsert takes tuples of the first 2..8 of these)
COLUMNS = ("waybill", "town", "sort_code", "address", "carrier", "service", "weight_kg", "intercept")

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

# what the real-time lookup (controller/lookup.py, in the service process) knows of a waybill it
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


def _upsert_sql(n: int) -> str:
    cols = COLUMNS[:n]
    sets = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:] if c in cols)
    # columns the row does not give are cleared: the newest advice replaces the old one whole
    clears = ", ".join(f"{c} = {'0' if c == 'intercept' else 'NULL'}" for c in COLUMNS[1:] if c not in cols)
    return (f"INSERT INTO manifest ({', '.join(cols)}) VALUES ({', '.join('?' * n)}) "
            f"ON CONFLICT (waybill) DO UPDATE SET {sets}{', ' + clears if clears else ''}, "
            f"updated = excluded.updated")


WAYBILL_RE = re.compile(r"[A-Z0-9]{6,40}")
CARRIER_RE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")
# 三段码: 1-4 segments of letters/digits, separated by '-' or spaces: 571-W30 02, 576-A12-03
SORT_CODE_RE = re.compile(r"[A-Z0-9]{1,8}(?:[-\s]+[A-Z0-9]{1,8}){0,3}")
_SEG_SPLIT = re.compile(r"[-\s]+")
# a whole batch of (upper-cased) waybills joined by newlines, checked in one C call
WAYBILL_LINES_RE = re.compile(r"(?:[A-Z0-9]{6,40}\n)*[A-Z0-9]{6,40}")

MAX_TOWN, MAX_ADDRESS, MAX_SERVICE = 64, 300, 32
MAX_WEIGHT_KG = 2000.0

# header names accepted for each column (compared after strip + lower case)
HEADERS: dict[str, set[str]] = {
    "waybill": {"waybill", "waybill_no", "waybillno", "mailno", "mail_no", "billcode", "运单号", "单号", "快递单号",
                "运单编号"},
    "town": {"town", "destination", "目的地", "乡镇", "乡镇/街道", "乡镇街道", "街道", "目的乡镇", "镇街"},
    "sort_code": {"sort_code", "sortcode", "sort code", "三段码", "分拣码", "大头笔"},
    "address": {"address", "addr", "地址", "收件地址", "收件人地址", "详细地址"},
    "carrier": {"carrier", "express", "快递公司", "承运商", "快递"},
    "service": {"service", "service_class", "product", "服务类型", "产品类型", "时效"},
    "weight_kg": {"weight_kg", "weight", "重量", "重量(kg)", "重量kg", "重量（kg）"},
    "weight_g": {"weight_g", "重量(g)", "重量g", "重量（g）"},
    "intercept": {"intercept", "拦截", "拦截件", "是否拦截"},
}
WAYBILL_HEADERS, TOWN_HEADERS = HEADERS["waybill"], HEADERS["town"]
TRUE_WORDS = {"1", "true", "yes", "y", "t", "是", "拦截", "x"}
FALSE_WORDS = {"", "0", "false", "no", "n", "f", "否"}

BATCH = 100_000
WRITE_ROWS = 400_000    # rows per write transaction of an import (~80 MB of Python objects at most)
CHUNK_CHARS = 1 << 21   # characters of a plain (waybill, town) file parsed at once (~80,000 records)


def normalise_waybill(text: str) -> str:
    return text.strip().upper()


def parse_sort_code(text: str | None) -> tuple[str, ...] | None:
    """The segments of a 三段码 (upper case), or None when it is not one."""
    if text is None:
        return None
    t = text.strip().upper()
    if not SORT_CODE_RE.fullmatch(t):
        return None
    return tuple(_SEG_SPLIT.split(t))


def normalise_sort_code(text: str) -> str | None:
    segs = parse_sort_code(text)
    return None if segs is None else "-".join(segs)


class ManifestRow(NamedTuple):
    town: str | None
    sort_code: str | None
    address: str | None
    carrier: str | None
    service: str | None
    weight_kg: float | None
    intercept: int


@dataclass
class ImportReport:
    path: str
    encoding: str = ""
    imported: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (1-based file line / item, problem)
    bad_count: int = 0       # all bad rows (bad_rows keeps the first MAX_BAD)
    error: str | None = None  # the whole file was refused (no usable header, cannot decode)
    seconds: float = 0.0

    MAX_BAD = 1000

    def bad(self, line: int, problem: str) -> None:
        self.bad_count += 1
        if len(self.bad_rows) < self.MAX_BAD:
            self.bad_rows.append((line, problem))

    @property
    def ok(self) -> bool:
        return self.error is None and not self.bad_count

    @property
    def rows_per_s(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.error:
            return f"{self.path}: {self.error}"
        s = f"{self.path}: {self.imported} rows imported ({self.encoding})"
        if self.bad_count:
            s += f", {self.bad_count} bad rows: " + "; ".join(f"line {n}: {p}" for n, p in self.bad_rows[:10])
            if self.bad_count > 10:
                s += "; ..."
        return s

    def as_dict(self) -> dict:
        return {"path": self.path, "encoding": self.encoding, "imported": self.imported, "bad": self.bad_count,
                "bad_rows": [{"line": n, "problem": p} for n, p in self.bad_rows], "error": self.error,
                "seconds": round(self.seconds, 3)}


def decode_csv_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM) if it decodes strictly, else GB18030
    (a superset of GBK/GB2312, what Excel on a Chinese Windows PC writes)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace"), "gb18030"


def detect_encoding(path: Path, chunk: int = 1 << 22) -> str:
    """'utf-8-sig' if the whole file is valid UTF-8, else 'gb18030' (read in chunks, in C)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as f:
            while True:
                b = f.read(chunk)
                if not b:
                    dec.decode(b"", final=True)
                    return "utf-8-sig"
                dec.decode(b)
    except UnicodeDecodeError:
        return "gb18030"


def _header_map(names: Iterable[str]) -> dict[str, int]:
    """column -> index for the header names it recognises."""
    out: dict[str, int] = {}
    for i, h in enumerate(names):
        h = str(h).strip().lower().lstrip("\ufeff")
        for col, aliases in HEADERS.items():
            if h in aliases and col not in out:
                out[col] = i
    return out


def _bool(text: Any) -> bool | None:
    if isinstance(text, bool):
        return text
    if isinstance(text, (int, float)) and text in (0, 1):
        return bool(text)
    t = str(text).strip().lower() if text is not None else ""
    if t in TRUE_WORDS:
        return True
    if t in FALSE_WORDS:
        return False
    return None


def validate_row(get: Callable[[str], Any]) -> tuple[tuple | None, str | None]:
    """(row tuple in COLUMNS order, None) or (None, problem) for one advice record;
    `get(column)` returns the raw value or None."""
    wb = get("waybill")
    waybill = normalise_waybill(str(wb)) if wb is not None else ""
    if not waybill:
        return None, "empty waybill"
    if not WAYBILL_RE.fullmatch(waybill):
        return None, f"bad waybill {str(wb).strip()[:50]!r}"

    def text(col: str, limit: int) -> str | None:
        v = get(col)
        if v is None:
            return None
        v = str(v).strip()
        if not v:
            return None
        if len(v) > limit:
            raise ValueError(f"{col} longer than {limit} characters")
        if "\ufffd" in v:
            raise ValueError(f"{col} has characters that are neither UTF-8 nor GBK")
        return v

    try:
        town = text("town", MAX_TOWN)
        sort_code = text("sort_code", 40)
        address = text("address", MAX_ADDRESS)
        service = text("service", MAX_SERVICE)
        carrier = text("carrier", 16)
    except ValueError as exc:
        return None, f"waybill {waybill}: {exc}"
    if sort_code is not None:
        sc = normalise_sort_code(sort_code)
        if sc is None:
            return None, f"waybill {waybill}: bad sort code {sort_code!r} (e.g. 571-W30 02)"
        sort_code = sc
    if town is None and sort_code is None and address is None:
        return None, f"waybill {waybill}: empty town (and no sort code or address)"
    if carrier is not None:
        carrier = carrier.upper()
        if not CARRIER_RE.fullmatch(carrier):
            return None, f"waybill {waybill}: bad carrier code {carrier!r}"
    weight = None
    w = get("weight_kg")
    scale = 1.0
    if w is None or (isinstance(w, str) and not w.strip()):
        w, scale = get("weight_g"), 0.001
    if w is not None and not (isinstance(w, str) and not w.strip()):
        try:
            weight = float(w) * scale
        except (TypeError, ValueError):
            return None, f"waybill {waybill}: bad weight {w!r}"
        if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT_KG:
            return None, f"waybill {waybill}: weight {weight} kg out of range 0-{MAX_WEIGHT_KG:.0f}"
    icp = get("intercept")
    intercept = _bool(icp)
    if intercept is None:
        return None, f"waybill {waybill}: bad intercept flag {icp!r} (1/0, true/false, 是/否)"
    return (waybill, town, sort_code, address, carrier, service, weight, int(intercept)), None


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
    def upsert(self, rows: Iterable[tuple]) -> int:
        """Insert or replace rows in one transaction; returns the row count. A row is a tuple
        of the first 2..8 of COLUMNS: (waybill, town[, sort_code, address, carrier, service,
        weight_kg, intercept]); the columns it does not give are cleared."""
        if self.readonly:
            raise PermissionError(f"{self.path}: manifest opened read-only")
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        n = len(rows[0])
        if not 2 <= n <= len(COLUMNS):
            raise ValueError(f"a manifest row has 2..{len(COLUMNS)} columns, got {n}")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_upsert_sql(n), rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return len(rows)

    def _sink(self, report: ImportReport, size: int = 0) -> "_BatchWriter":
        return _BatchWriter(self, report)

    def import_csv(self, path: str | Path,
                   progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
        """Import a carrier's CSV. The header names the columns (waybill/运单号 and at least one
        of town/目的地/乡镇, sort_code/三段码, address/地址; optionally carrier, service,
        weight_kg (or weight_g), intercept), in any order, among other columns. UTF-8 with or
        without BOM, or GBK/GB18030. Bad rows are reported with their file line; the rest are
        imported. progress(bytes read, file size, rows imported) is called now and then."""
        path = Path(path)
        report = ImportReport(str(path))
        t0 = time.perf_counter()
        try:
            size = path.stat().st_size
            encoding = detect_encoding(path)
            fb = open(path, "rb")
        except OSError as exc:
            report.error = f"cannot read: {exc}"
            return report
        report.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        with fb, io.TextIOWrapper(fb, encoding=encoding, errors="replace", newline="") as f:
            self._import_csv_stream(f, report, lambda: fb.tell(), size, progress)
        report.seconds = time.perf_counter() - t0
        return report

    def import_csv_text(self, text: str, name: str = "upload") -> ImportReport:
        report = ImportReport(name, encoding="utf-8")
        t0 = time.perf_counter()
        self._import_csv_stream(io.StringIO(text, newline=""), report, lambda: 0, 0, None)
        report.seconds = time.perf_counter() - t0
        return report

    def _import_csv_stream(self, f, report: ImportReport, pos: Callable[[], int], size: int,
                           progress: Callable[[int, int, int], None] | None) -> None:
        reader = csv.reader(_no_nul(f))
        flush = self._sink(report, size)
        try:
            self._csv_rows(reader, report, flush, pos, size, progress, f)
        finally:
            flush.close()

    def _csv_rows(self, reader, report: ImportReport, flush, pos, size, progress, f=None) -> None:
        header: dict[str, int] | None = None
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report.bad(reader.line_num, f"unreadable CSV: {exc}")
                continue
            if not any(c.strip() for c in row):
                continue  # blank lines before the header
            header = _header_map(row)
            if "waybill" not in header or not ({"town", "sort_code", "address"} & set(header)):
                report.error = (f"line {reader.line_num}: header must name a waybill column (waybill/运单号) and a "
                                f"town (town/目的地/乡镇), sort code (sort_code/三段码) or address (address/地址) "
                                f"column, got {row!r}")
                return
            ncols = len(row)
            break
        if header is None:
            report.error = "empty file (no header row)"
            return
        simple = set(header) == {"waybill", "town"}
        need = max(header.values())
        if simple and f is not None:
            # the common file (waybill, town[, other columns]): parsed in big chunks, column-wise
            reader = self._simple_chunks(f, reader.line_num + 1, header, need, ncols, report, flush, pos, size,
                                         progress)
            if reader is None:
                if progress:
                    progress(size, size, report.imported)
                return
        while True:
            # a batch of records; their file lines are known from the reader's line count
            first = reader.line_num + 1
            rows: list[list[str]] = []
            err = None
            try:
                rows.extend(islice(reader, BATCH))
            except csv.Error as exc:  # rows read before the bad one are kept by extend
                err = (reader.line_num, f"unreadable CSV: {exc}")
            if not rows and err is None:
                break
            batch = None
            if simple and err is None and reader.line_num - first + 1 == len(rows):
                batch = _simple_batch(rows, header["waybill"], header["town"])
            if batch is None:
                batch = self._checked_rows(rows, first, header, need, ncols, simple, report)
            flush(batch)
            if err is not None:
                report.bad(*err)
            if progress:
                progress(pos(), size, report.imported)
        if progress:
            progress(size, size, report.imported)

    def _simple_chunks(self, f, line: int, header: dict[str, int], need: int, ncols: int, report: ImportReport,
                       flush, pos, size, progress):
        """Import (waybill, town) records from the text stream `f` (the header read), `line` being
        the file line of the next. Chunks of whole lines without quotes are split into columns with
        str methods and validated column-wise (_simple_batch): no Python per record. A chunk that
        is not that plain is read with the csv module; from the first quote on (a quoted field may
        hold a line break) the rest of the file is. Returns None when the file is done, else a
        csv reader positioned after the chunks imported (its line_num counting from there)."""
        wi, ti = header["waybill"], header["town"]
        rest = ""
        while True:
            data = f.read(CHUNK_CHARS)
            if not data:
                chunk, rest = rest, ""
                if not chunk:
                    return None
            else:
                data = rest + data
                k = data.rfind("\n")
                if k < 0:
                    rest = data
                    continue
                chunk, rest = data[:k + 1], data[k + 1:]
            if "\x00" in chunk:
                chunk = chunk.replace("\x00", "")
            if '"' in chunk:
                # from here on the csv module reads (a quoted field may span chunks)
                tail = chunk.splitlines(keepends=True)
                if rest:
                    tail.append(rest + f.readline())
                return _OffsetReader(csv.reader(_no_nul(itertools.chain(tail, f))), line - 1)
            text = chunk[:-1] if chunk.endswith("\n") else chunk
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            n = text.count("\n") + 1
            batch = None
            if "\r" not in text and text.count(",") == n * (ncols - 1):
                fields = text.replace(",", "\n").split("\n")
                batch = _simple_columns(fields[wi::ncols], fields[ti::ncols])
            if batch is None:
                batch = self._checked_rows(list(csv.reader(text.splitlines(keepends=True))), line, header, need,
                                           ncols, True, report)
            flush(batch)
            line += n
            if progress:
                progress(pos(), size, report.imported)

    @staticmethod
    def _checked_rows(rows: list[list[str]], first: int, header: dict[str, int], need: int, ncols: int,
                      simple: bool, report: ImportReport) -> list[tuple]:
        """Validate records one by one (what a batch with any doubtful record takes); `first`
        is the file line of the first; a record with a quoted line break spans several lines."""
        out: list[tuple] = []
        line = first
        for row in rows:
            n = line
            line += 1 + sum(c.count("\n") for c in row)
            if not any(c.strip() for c in row):
                continue  # blank line
            if len(row) <= need:
                report.bad(n, f"{len(row)} columns, expected {ncols}")
                continue
            rec, problem = validate_row(lambda c, _r=row: _r[header[c]] if c in header else None)
            if rec is None:
                report.bad(n, problem or "bad row")
                continue
            out.append(rec[:2] if simple else rec)
        return out

    def import_json(self, path: str | Path,
                    progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
        """Import advice as JSON: an array of objects, {"rows": [...]}, or JSON lines (one
        object per line). Keys as the CSV headers. Bad records are reported by line (JSON
        lines) or item number (an array)."""
        path = Path(path)
        report = ImportReport(str(path), encoding="utf-8")
        t0 = time.perf_counter()
        try:
            size = path.stat().st_size
            with open(path, "rb") as fb:
                head = fb.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
                fb.seek(0)
                if head.startswith(b"{") and b"\n{" in fb.read(1 << 20).lstrip(b"\xef\xbb\xbf").rstrip():
                    fb.seek(0)
                    encoding = detect_encoding(path)
                    with io.TextIOWrapper(fb, encoding=encoding, errors="replace") as f:
                        self._import_records(_json_lines(f, report), report, lambda: fb.tell(), size, progress)
                else:
                    fb.seek(0)
                    text, _ = decode_csv_bytes(fb.read())
                    try:
                        data = json.loads(text)
                    except json.JSONDecodeError as exc:
                        report.error = f"line {exc.lineno}: not JSON: {exc.msg}"
                        return report
                    self.import_records(data, report)
        except OSError as exc:
            report.error = f"cannot read: {exc}"
            return report
        report.seconds = time.perf_counter() - t0
        return report

    def import_records(self, data: Any, report: ImportReport | None = None) -> ImportReport:
        """Import decoded JSON: a list of objects or {"rows": [...]} (items numbered from 1)."""
        report = report or ImportReport("records", encoding="utf-8")
        t0 = time.perf_counter()
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            data = data["rows"]
        if not isinstance(data, list):
            report.error = 'expected a JSON array of objects (or {"rows": [...]})'
            return report
        self._import_records(enumerate(data, 1), report, lambda: 0, 0, None)
        report.seconds = report.seconds or time.perf_counter() - t0
        return report

    def _import_records(self, items: Iterable[tuple[int, Any]], report: ImportReport, pos, size, progress) -> None:
        flush = self._sink(report, size)
        try:
            self._record_rows(items, report, flush, pos, size, progress)
        finally:
            flush.close()

    def _record_rows(self, items, report: ImportReport, flush, pos, size, progress) -> None:
        batch: list[tuple] = []
        for n, obj in items:
            if not isinstance(obj, Mapping):
                report.bad(n, f"expected an object, got {type(obj).__name__}")
                continue
            keys = _header_map(obj.keys())
            vals = list(obj.values())
            rec, problem = validate_row(lambda c: vals[keys[c]] if c in keys else None)
            if rec is None:
                report.bad(n, problem or "bad record")
                continue
            batch.append(rec)
            if len(batch) >= BATCH:
                flush(batch)
                batch = []
                if progress:
                    progress(pos(), size, report.imported)
        flush(batch)
        if progress:
            progress(size, size, report.imported)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BatchWriter:
    """Writes an importer's batches, each sorted by waybill first (B-tree inserts in key order
    touch far fewer pages), with fewer, bigger WAL checkpoints while importing.

    (Measured: neither a writer thread -- it waits for the GIL after every row -- nor a writer
    process fed pickled batches made the import faster on a 2-core PC; nor did PRAGMA
    synchronous=OFF during the import (so the manifest keeps its crash safety), nor INSERT OR
    REPLACE instead of the upsert, nor binding `updated` once per batch.)"""

    def __init__(self, manifest: "Manifest", report: ImportReport):
        self.report, self.m = report, manifest
        self.m._db.execute("PRAGMA wal_autocheckpoint = 20000")
        self.pending: list[list] = []
        self.n = 0

    def __call__(self, batch: list) -> None:
        # batches are gathered into transactions of WRITE_ROWS: in a big table nearly every leaf
        # page holds a key of a 100,000-row batch, so each transaction rewrites most of the
        # table into the WAL; fewer, bigger ones write far less (measured: +35% rows/CPU-s)
        if batch:
            if self.pending and len(batch[0]) != len(self.pending[0][0]):
                self._write()
            self.pending.append(batch)
            self.n += len(batch)
            if self.n >= WRITE_ROWS:
                self._write()

    def _write(self) -> None:
        rows = self.pending[0] if len(self.pending) == 1 else list(itertools.chain.from_iterable(self.pending))
        self.pending, self.n = [], 0
        if rows:
            rows.sort(key=_KEY0)
            self.report.imported += self.m.upsert(rows)

    def close(self) -> None:
        try:
            self._write()
        finally:
            self.pending = []
        self.m._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.m._db.execute("PRAGMA wal_autocheckpoint = 1000")


def _simple_batch(rows: list[list[str]], wi: int, ti: int) -> list[tuple[str, str]] | None:
    """(waybill, town) pairs of a batch of csv records, or None when any is doubtful (see
    _simple_columns; a record with too few columns)."""
    try:
        wcol = list(map(itemgetter(wi), rows))
        tcol = list(map(itemgetter(ti), rows))
    except IndexError:
        return None
    return _simple_columns(wcol, tcol)


def _simple_columns(wcol: list[str], tcol: list[str]) -> list[tuple[str, str]] | None:
    """(waybill, town) pairs validated column-wise in C (joined strings, one regex for all the
    waybills), or None when any record is doubtful (a waybill or town that needs trimming or is
    bad, an empty town): then the batch is checked record by record, which reports the bad
    ones with their lines. Accepts exactly what validate_row accepts for such records."""
    if not tcol:
        return []
    wj = "\n".join(wcol).upper()
    if WAYBILL_LINES_RE.fullmatch(wj) is None:
        return None
    if min(map(len, tcol)) == 0 or max(map(len, tcol)) > MAX_TOWN or list(map(str.strip, tcol)) != tcol:
        return None
    tj = "\n".join(tcol)
    if "\ufffd" in tj or tj.count("\n") != len(tcol) - 1:
        return None
    wl = wj.split("\n")
    if len(wl) != len(tcol):
        return None
    # one str object per distinct town: SQLite binds it from its cached UTF-8 (no encoding per
    # row) and the batch held for writing is smaller
    if len(_TOWNS) > 50_000:
        _TOWNS.clear()
    return list(zip(wl, map(_TOWNS.setdefault, tcol, tcol)))


_TOWNS: dict[str, str] = {}


class _OffsetReader:
    """A csv reader whose line_num counts from a given file line (islice runs the reader itself)."""

    def __init__(self, reader, offset: int):
        self.reader, self.offset = reader, offset

    def __iter__(self):
        return self.reader

    def __next__(self):
        return next(self.reader)

    @property
    def line_num(self) -> int:
        return self.reader.line_num + self.offset


_KEY0 = itemgetter(0)


def _no_nul(f) -> Iterator[str]:
    for line in f:
        yield line.replace("\x00", "") if "\x00" in line else line


def _json_lines(f, report: ImportReport) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(f, 1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            report.bad(n, f"not JSON: {exc.msg}")
