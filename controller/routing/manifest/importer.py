"""Importing a carrier's advice files: CSV (UTF-8 or GBK/GB18030, any header order, Chinese or
English names) and JSON (an array, {"rows": [...]}, or JSON lines), millions of rows a run.

Every bad record is reported with its file line (or item number) and the rest are imported. Speed
is the point here: a plain (waybill, town) file is split and validated column-wise in big chunks
(no Python per record), and the rows go to SQLite sorted, in few big transactions. The functions
take the Manifest they write into (its ``upsert`` and its connection); the Manifest's import
methods call them.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from sorter.controller.routing.manifest.rows import (CARRIER_RE, COLUMNS, LONE_SURROGATE, MAX_CARRIER, MAX_TOWN,
                                                     WAYBILL_LINES_RE, _header_map, validate_row)


BATCH = 100_000
WRITE_ROWS = 400_000    # rows per write transaction of an import (~80 MB of Python objects at most)
CHUNK_CHARS = 1 << 21   # characters of a plain (waybill, town) file parsed at once (~80,000 records)


@dataclass
class ImportReport:
    path: str
    encoding: str = ""
    imported: int = 0        # waybills new to the manifest
    updated: int = 0         # waybills it had, whose advice this file replaced
    duplicate_in_file: int = 0   # rows whose waybill came again later in the file (the later one counts)
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
        s = f"{self.path}: {self.imported} rows imported"
        if self.updated:
            s += f", {self.updated} updated"
        if self.duplicate_in_file:
            s += f", {self.duplicate_in_file} duplicates in the file (the last of each counts)"
        s += f" ({self.encoding})"
        if self.bad_count:
            s += f", {self.bad_count} bad rows: " + "; ".join(f"line {n}: {p}" for n, p in self.bad_rows[:10])
            if self.bad_count > 10:
                s += "; ..."
        return s

    def as_dict(self) -> dict:
        return {"path": self.path, "encoding": self.encoding, "imported": self.imported, "updated": self.updated,
                "duplicate_in_file": self.duplicate_in_file, "bad": self.bad_count,
                "bad_rows": [{"line": n, "problem": p} for n, p in self.bad_rows], "error": self.error,
                "seconds": round(self.seconds, 3)}


SAMPLE_BYTES = 1 << 20   # of a file, to decide its encoding


def guess_encoding(sample: bytes) -> str:
    """The encoding of a file from a sample of it: 'utf-8-sig' (a BOM), 'utf-8', or 'gb18030' (a
    superset of GBK/GB2312, what Excel on a Chinese Windows PC writes). A few bytes that are not
    UTF-8 among much UTF-8 text keep it UTF-8: they are bad rows, never a reason to read the
    whole file as another charset (one stray byte once turned every town into mojibake)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    text = sample.decode("utf-8", "surrogateescape")
    bad = len(LONE_SURROGATE.findall(text))
    if bad == 0:
        return "utf-8"
    # a cut through the last character of the sample is no evidence
    tail = len(LONE_SURROGATE.findall(text[-3:]))
    good = len(_NON_ASCII.findall(text))
    if bad - tail == 0 or good >= 4 * (bad - tail):
        return "utf-8"
    # a short file gives the ratio little to go on (a header and a row, one byte cut): GB18030 only
    # when it reads the sample with fewer bytes that do not decode than UTF-8 does
    gb = sample.decode("gb18030", "surrogateescape")
    gb_bad = len(LONE_SURROGATE.findall(gb)) - len(LONE_SURROGATE.findall(gb[-2:]))
    return "gb18030" if gb_bad < bad - tail else "utf-8"


_NON_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")


def decode_csv_bytes(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a whole upload, the encoding decided from its start (guess_encoding).
    Bytes that do not decode in it are kept as lone surrogates (surrogateescape), which the row
    validation reports as bad rows with their line."""
    enc = guess_encoding(data[:SAMPLE_BYTES])
    return data.decode(enc, "surrogateescape"), "utf-8" if enc == "utf-8-sig" else enc


def detect_encoding(path: Path, sample: int = SAMPLE_BYTES) -> str:
    """The encoding of a file from its first `sample` bytes (guess_encoding)."""
    with open(path, "rb") as f:
        return guess_encoding(f.read(sample))


def import_csv(m, path: str | Path,
               progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
    """Manifest.import_csv: a carrier's CSV file into `m`, its encoding detected first."""
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
    # held for the whole file: a row with bytes that do not decode is a bad row (its fields keep
    # them as lone surrogates, which validation refuses), never a reason to switch charset
    with fb, io.TextIOWrapper(fb, encoding=encoding, errors="surrogateescape", newline="") as f:
        _import_csv_stream(m, f, report, lambda: fb.tell(), size, progress)
    report.seconds = time.perf_counter() - t0
    return report


def import_csv_text(m, text: str, name: str = "upload") -> ImportReport:
    """Manifest.import_csv_text: CSV already decoded to text (an upload)."""
    report = ImportReport(name, encoding="utf-8")
    t0 = time.perf_counter()
    _import_csv_stream(m, io.StringIO(text, newline=""), report, lambda: 0, 0, None)
    report.seconds = time.perf_counter() - t0
    return report


def _import_csv_stream(m, f, report: ImportReport, pos: Callable[[], int], size: int,
                       progress: Callable[[int, int, int], None] | None) -> None:
    reader = csv.reader(_no_nul(f))
    flush = _BatchWriter(m, report)
    try:
        _csv_rows(reader, report, flush, pos, size, progress, f)
    finally:
        flush.close()


def _csv_rows(reader, report: ImportReport, flush, pos, size, progress, f=None) -> None:
    header: dict[str, int] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # before the header: the file cannot be read as a manifest (taking the next line as
            # the header would blame the wrong line)
            report.error = f"line {max(reader.line_num, 1)}: unreadable header: {exc}"
            return
        if not any(c.strip() for c in row):
            continue  # blank lines before the header
        header = _header_map(row)
        if "waybill" not in header or not ({"town", "sort_code", "address"} & set(header)):
            shown = ", ".join(_quoted(c) for c in row[:12]) + (", ..." if len(row) > 12 else "")
            if any(LONE_SURROGATE.search(c) for c in row):
                shown += f" (\\x.. are bytes that do not decode as {report.encoding or 'its encoding'})"
            report.error = (f"line {reader.line_num}: header must name a waybill column (waybill/运单号) and a "
                            f"town (town/目的地/乡镇), sort code (sort_code/三段码) or address (address/地址) "
                            f"column, got {shown}")
            return
        ncols = len(row)
        break
    if header is None:
        report.error = "empty file (no header row)"
        return
    # the common file (waybill, town[, carrier][, other columns]): validated column-wise
    simple = {"waybill", "town"} <= set(header) <= PLAIN_COLUMNS
    columns = stored_columns(header)
    flush.columns = columns
    need = max(header.values())
    if simple and f is not None:
        # and parsed in big chunks
        reader = _simple_chunks(f, reader.line_num + 1, header, need, ncols, report, flush, pos, size, progress)
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
            batch = _simple_batch(rows, header)
        if batch is None:
            batch = _checked_rows(rows, first, header, need, ncols, columns, report)
        flush(batch)
        if err is not None:
            report.bad(*err)
        if progress:
            progress(pos(), size, report.imported)
    if progress:
        progress(size, size, report.imported)


def _simple_chunks(f, line: int, header: dict[str, int], need: int, ncols: int, report: ImportReport,
                   flush, pos, size, progress):
    """Import (waybill, town) records from the text stream `f` (the header read), `line` being
    the file line of the next. Chunks of whole lines without quotes are split into columns with
    str methods and validated column-wise (_simple_batch): no Python per record. A chunk that
    is not that plain is read with the csv module; from the first quote on (a quoted field may
    hold a line break) the rest of the file is. Returns None when the file is done, else a
    csv reader positioned after the chunks imported (its line_num counting from there)."""
    wi, ti, ci = header["waybill"], header["town"], header.get("carrier")
    columns = stored_columns(header)
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
            batch = _simple_columns(fields[wi::ncols], fields[ti::ncols], None if ci is None else fields[ci::ncols])
        if batch is None:
            batch = _checked_rows(_plain_records(text.splitlines(keepends=True)), line, header, need, ncols,
                                  columns, report)
        flush(batch)
        line += n
        if progress:
            progress(pos(), size, report.imported)


class _Unreadable(list):
    """A line the csv module refused (a field past its size limit): a bad row in its place."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


def _plain_records(lines: list[str]) -> list[list[str]]:
    """The records of lines without quotes (one line, one record); a line the csv module refuses
    is an _Unreadable in its place, so that the lines after it keep their numbers."""
    try:
        return list(csv.reader(lines))
    except csv.Error:
        out: list[list[str]] = []
        for one in lines:
            try:
                out.extend(csv.reader([one]))
            except csv.Error as exc:
                out.append(_Unreadable(f"unreadable CSV: {exc}"))
        return out


def stored_columns(header: dict[str, int]) -> tuple[str, ...]:
    """The columns of COLUMNS an import's rows give, in that order: those its header names (the
    upsert clears the others, which validation would have set to None / 0 anyway)."""
    named = {_STORED_AS.get(c, c) for c in header}
    return tuple(c for c in COLUMNS if c in named)


_STORED_AS = {"weight_g": "weight_kg"}
PLAIN_COLUMNS = {"waybill", "town", "carrier"}   # a file of only these is validated column-wise


def _checked_rows(rows: list[list[str]], first: int, header: dict[str, int], need: int, ncols: int,
                  columns: tuple[str, ...], report: ImportReport) -> list[tuple]:
    """Validate records one by one (what a batch with any doubtful record takes); `first`
    is the file line of the first; a record with a quoted line break spans several lines.
    Rows give the `columns` (stored_columns) of COLUMNS."""
    out: list[tuple] = []
    pick = itemgetter(*map(COLUMNS.index, columns))
    line = first
    for row in rows:
        n = line
        line += 1 + sum(c.count("\n") for c in row)
        if isinstance(row, _Unreadable):
            report.bad(n, row.problem)
            continue
        if not any(c.strip() for c in row):
            continue  # blank line
        if len(row) <= need:
            report.bad(n, f"{len(row)} columns, expected {ncols}")
            continue
        rec, problem = validate_row(lambda c, _r=row: _r[header[c]] if c in header else None)
        if rec is None:
            report.bad(n, problem or "bad row")
            continue
        out.append(pick(rec))
    return out


def import_json(m, path: str | Path,
                progress: Callable[[int, int, int], None] | None = None) -> ImportReport:
    """Manifest.import_json: JSON lines are streamed (numbered by line), anything else is parsed
    whole and imported as records (numbered by item)."""
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
                with io.TextIOWrapper(fb, encoding=encoding, errors="surrogateescape") as f:
                    _import_records(m, _json_lines(f, report), report, lambda: fb.tell(), size, progress)
            else:
                fb.seek(0)
                text, _ = decode_csv_bytes(fb.read())
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    report.error = f"line {exc.lineno}: not JSON: {exc.msg}"
                    return report
                except RecursionError:    # the parser's own limit (~1000 levels; advice has 2)
                    report.error = "JSON nested too deeply (advice is an array of flat objects)"
                    return report
                except ValueError as exc:  # e.g. an integer past Python's digit limit
                    report.error = f"not usable JSON: {_clip(str(exc), 120)}"
                    return report
                import_records(m, data, report)
    except OSError as exc:
        report.error = f"cannot read: {exc}"
        return report
    report.seconds = time.perf_counter() - t0
    return report


def import_records(m, data: Any, report: ImportReport | None = None) -> ImportReport:
    """Manifest.import_records: decoded JSON, a list of objects or {"rows": [...]} (items numbered
    from 1)."""
    report = report or ImportReport("records", encoding="utf-8")
    t0 = time.perf_counter()
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list):
        report.error = 'expected a JSON array of objects (or {"rows": [...]})'
        return report
    _import_records(m, enumerate(data, 1), report, lambda: 0, 0, None)
    report.seconds = report.seconds or time.perf_counter() - t0
    return report


def _import_records(m, items: Iterable[tuple[int, Any]], report: ImportReport, pos, size, progress) -> None:
    flush = _BatchWriter(m, report)
    try:
        _record_rows(items, report, flush, pos, size, progress)
    finally:
        flush.close()


def _record_rows(items, report: ImportReport, flush, pos, size, progress) -> None:
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


class _BatchWriter:
    """Writes an importer's batches, each sorted by waybill first (B-tree inserts in key order
    touch far fewer pages), with fewer, bigger WAL checkpoints while importing.

    (Measured: neither a writer thread -- it waits for the GIL after every row -- nor a writer
    process fed pickled batches made the import faster on a 2-core PC; nor did PRAGMA
    synchronous=OFF during the import (so the manifest keeps its crash safety), nor INSERT OR
    REPLACE instead of the upsert, nor binding `updated` once per batch; nor staging the rows in a
    temporary table for one sorted INSERT ... SELECT: SQLite's sort of 5M rows cost more CPU than
    the sorted writes saved.)"""

    def __init__(self, manifest, report: ImportReport):
        self.report, self.m = report, manifest
        self.m._db.execute("PRAGMA wal_autocheckpoint = 20000")
        self.pending: list[list] = []
        self.columns: tuple[str, ...] | None = None   # what the rows give (None: a prefix of COLUMNS)
        self.n = 0
        self.written = 0                 # distinct waybills written
        # new and updated waybills are told apart by the count of rows before and after (one scan
        # each; per row it would cost a lookup). Another writer at the same time (the real-time
        # lookup) can make a few updated ones count as new
        self.before = manifest.count()

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
            # the same waybill twice in the file: the later row is the advice (dict keeps the last
            # value of a key and its first position; C speed, and before the sort, while the rows
            # are still in the order they were made in memory)
            last = dict(zip(map(_KEY0, rows), rows))
            if len(last) < len(rows):
                self.report.duplicate_in_file += len(rows) - len(last)
                rows = list(last.values())
            rows.sort(key=_KEY0)
            n = self.m._upsert_batch(rows, self.columns or len(rows[0]))
            self.written += n
            self.report.imported += n    # for the progress bar; split into new / updated at close

    def close(self) -> None:
        try:
            self._write()
        finally:
            self.pending = []
        if self.written:
            new = min(self.written, max(0, self.m.count() - self.before))
            self.report.imported += new - self.written
            self.report.updated += self.written - new
        self.m._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.m._db.execute("PRAGMA wal_autocheckpoint = 1000")


def _simple_batch(rows: list[list[str]], header: dict[str, int]) -> list[tuple] | None:
    """The rows of a batch of csv records of a plain file (PLAIN_COLUMNS), or None when any is
    doubtful (see _simple_columns; a record with too few columns)."""
    ci = header.get("carrier")
    try:
        wcol = list(map(itemgetter(header["waybill"]), rows))
        tcol = list(map(itemgetter(header["town"]), rows))
        ccol = None if ci is None else list(map(itemgetter(ci), rows))
    except IndexError:
        return None
    return _simple_columns(wcol, tcol, ccol)


def _simple_columns(wcol: list[str], tcol: list[str], ccol: list[str] | None = None) -> list[tuple] | None:
    """(waybill, town) pairs -- or (waybill, town, carrier) rows when there is a carrier
    column -- validated column-wise in C (joined strings, one regex for all the
    waybills), or None when any record is doubtful (a waybill, town or carrier that needs
    trimming or is bad, an empty town): then the batch is checked record by record, which
    reports the bad ones with their lines. Accepts exactly what validate_row accepts for such
    records, and gives the same values."""
    if not tcol:
        return []
    wj = "\n".join(wcol).upper()
    if WAYBILL_LINES_RE.fullmatch(wj) is None:
        return None
    wl = wj.split("\n")
    if len(wl) != len(tcol):
        return None
    towns = _column_values(tcol, _town_value)
    if towns is None:
        return None
    if ccol is None:
        return list(zip(wl, towns))
    carriers = _column_values(ccol, _carrier_value)
    if carriers is None:
        return None
    return list(zip(wl, towns, carriers))


_BAD = object()   # a value _town_value / _carrier_value refuses


def _column_values(col: list[str], value: Callable[[str], Any]) -> Iterator[Any] | None:
    """`col` mapped through `value` (what validate_row makes of a field), or None when it refuses
    any. A column has few distinct values (a few hundred towns, a dozen carriers), so each is
    checked once, and each row gets the one shared str object of its value: SQLite binds it
    from its cached UTF-8 (no encoding per row) and the batch held for writing is smaller."""
    distinct = dict.fromkeys(col)
    if len(_SHARED) > 50_000:
        _SHARED.clear()
    for raw in distinct:
        v = value(raw)
        if v is _BAD:
            return None
        distinct[raw] = v if v is None else _SHARED.setdefault(v, v)
    return map(distinct.__getitem__, col)


def _town_value(t: str) -> Any:
    """A town as validate_row stores it (needing no trimming), else _BAD."""
    if (not t or len(t) > MAX_TOWN or t.strip() != t or "\n" in t or "\ufffd" in t
            or LONE_SURROGATE.search(t)):
        return _BAD
    return t


def _carrier_value(c: str) -> Any:
    """A carrier code as validate_row stores it (upper case; empty: None), else _BAD."""
    if not c:
        return None
    if len(c) > MAX_CARRIER or c.strip() != c:
        return _BAD
    up = c.upper()
    return up if CARRIER_RE.fullmatch(up) else _BAD


_SHARED: dict[str, str] = {}   # one str object per distinct town / carrier




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
        except RecursionError:
            report.bad(n, "JSON nested too deeply")
        except ValueError as exc:
            report.bad(n, f"not usable JSON: {_clip(str(exc), 120)}")


def _clip(text: str, limit: int = 60) -> str:
    """A client's text as a message may quote it: short, and printable."""
    t = text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
    return t.encode("utf-8", "backslashreplace").decode("utf-8")


def _quoted(text: str) -> str:
    """A header cell as a message quotes it: a byte that did not decode (kept by surrogateescape)
    shown as the byte it was, \\xff, not as \\udcff."""
    return _ESCAPED_BYTE.sub(r"\\x\1", repr(text[:60])) + ("..." if len(text) > 60 else "")


_ESCAPED_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")
