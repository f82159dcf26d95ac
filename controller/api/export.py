"""`GET /api/export`: a day or a search as Excel (.xlsx) or CSV, from the page's charts section.

Chinese headers (the people who open it); waybills as text (an 18-digit waybill as a number loses
its last digits and its leading zeros); times as real date cells in the line PC's local time; text
that a spreadsheet would run as a formula is kept as text (a barcode is untrusted input). The
filters are the search's (`/api/search`): waybill, time range, carrier, town, chute, outcome.
Rows are read from the database in batches, so a day of 200,000 parcels does not sit in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import tempfile
from typing import Any, Iterable, Iterator, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from sorter.controller.records.schema import OUTCOMES

log = logging.getLogger(__name__)

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet, less the header row

OUTCOME_ZH = {"sorted": "已分拣", "no_read": "未读到条码", "multi_read": "多个运单号", "no_route": "无路由",
              "chute_unavailable": "格口不可用", "too_late": "决策超时", "gap_too_small": "间距过小",
              "lost": "丢失", "unconfirmed": "未确认", "fault": "故障"}

# (header, record key, kind): kind text | time | number | outcome_zh | reads
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("运单号", "waybill", "text"),
    ("快递公司", "carrier", "text"),
    ("目的地", "destination", "text"),
    ("格口", "chute", "text"),
    ("实际落格", "actual_chute", "text"),
    ("结果", "outcome", "text"),
    ("结果说明", "outcome", "outcome_zh"),
    ("原因", "reason", "text"),
    ("入口时间", "induct_wall", "time"),
    ("决策时间", "decided_wall", "time"),
    ("完成时间", "ended_wall", "time"),
    ("包裹号", "parcel_id", "number"),
    ("运行号", "run_id", "text"),
    ("长度(毫米)", "length_mm", "number"),
    ("三段码", "sort_code", "text"),
    ("路由规则", "rule", "text"),
    ("路由版本", "routing_version", "text"),
    ("决策耗时(毫秒)", "decision_ms", "number"),
    ("出口时差(毫秒)", "fire_error_ms", "number"),
    ("补录运单号", "keyed_waybill", "text"),
    ("补录快递公司", "keyed_carrier", "text"),
    ("补录目的地", "keyed_destination", "text"),
    ("补录格口", "keyed_chute", "text"),
    ("补录人", "keyed_by", "text"),
    ("补录时间", "keyed_wall", "time"),
    ("读码", "reads", "reads"),
)
HEADERS = tuple(h for h, _k, _t in COLUMNS)


def _local(wall: Any) -> dt.datetime | None:
    try:
        f = float(wall)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    d = dt.datetime.fromtimestamp(f)  # naive local time: Excel has no time zones
    return d.replace(microsecond=d.microsecond // 1000 * 1000)  # to the millisecond, as Excel keeps it


def _reads_text(reads: Any) -> str:
    if not isinstance(reads, list):
        return ""
    return "; ".join(f"{r.get('camera', '')}:{r.get('symbology', '')}:{r.get('text', '')}"
                     for r in reads if isinstance(r, dict))


def cell_value(rec: dict, key: str, kind: str) -> Any:
    v = rec.get(key)
    if kind == "time":
        return _local(v)
    if kind == "number":
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    if kind == "outcome_zh":
        return OUTCOME_ZH.get(str(v), str(v or ""))
    if kind == "reads":
        return _reads_text(v)
    return None if v is None else str(v)


def csv_text(value: Any) -> str:
    """One CSV cell: times as YYYY-MM-DD HH:MM:SS.mmm, formula-looking text defused with a '."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    s = str(value)
    if s and s[0] in "=+-@\t\r\n":
        return "'" + s
    return s


def write_xlsx(records: Iterable[dict], path: str, title: str) -> int:
    """The records to an .xlsx at `path`, written row by row (openpyxl's write-only mode)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=title[:31] or "parcels")
    bold = Font(bold=True)
    widths = {"text": 16, "time": 23, "number": 12, "outcome_zh": 12, "reads": 40}
    for i, (_h, key, kind) in enumerate(COLUMNS):
        letter = _col_letter(i + 1)
        ws.column_dimensions[letter].width = 22 if key == "waybill" else widths[kind]
    ws.freeze_panes = "A2"
    header = []
    for h in HEADERS:
        c = WriteOnlyCell(ws, value=h)
        c.font = bold
        header.append(c)
    ws.append(header)
    n = 0
    for rec in records:
        if n >= XLSX_MAX_ROWS:
            raise HTTPException(413, f"more than {XLSX_MAX_ROWS} parcels: narrow the search or export CSV")
        row = []
        for _h, key, kind in COLUMNS:
            v = cell_value(rec, key, kind)
            c = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v)
            if kind == "time" and v is not None:
                c.number_format = "yyyy-mm-dd hh:mm:ss.000"
            elif isinstance(v, str):
                c.data_type = "s"        # never a formula, whatever the text starts with
                c.number_format = "@"    # and text when edited: a waybill stays its digits
            row.append(c)
        ws.append(row)
        n += 1
    wb.save(path)
    return n


def _col_letter(i: int) -> str:
    out = ""
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def csv_lines(records: Iterable[dict]) -> Iterator[bytes]:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADERS)
    yield ("\ufeff" + buf.getvalue()).encode("utf-8")  # the BOM: Excel then reads the Chinese as UTF-8
    for rec in records:
        buf.seek(0)
        buf.truncate()
        w.writerow([csv_text(cell_value(rec, key, kind)) for _h, key, kind in COLUMNS])
        yield buf.getvalue().encode("utf-8")


def router(store: Any) -> APIRouter:
    r = APIRouter(tags=["export"])

    @r.get("/api/export", summary="A day or a search as Excel (.xlsx) or CSV",
           response_class=StreamingResponse,
           responses={200: {"content": {XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
                                        "text/csv": {"schema": {"type": "string"}}},
                            "description": "the parcels, oldest first, with Chinese headers"}})
    def export(format: Literal["xlsx", "csv"] = Query("xlsx"),
               day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                       description="YYYY-MM-DD, local; default today unless a time range is given"),
               waybill: str | None = Query(None, max_length=128),
               since_wall: float | None = Query(None, ge=0, description="epoch seconds, from"),
               until_wall: float | None = Query(None, ge=0, description="epoch seconds, before"),
               carrier: str | None = Query(None, max_length=32),
               town: str | None = Query(None, max_length=64),
               chute: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,16}$"),
               outcome: str | None = Query(None, max_length=32),
               keyed: bool | None = Query(None, description="true: only keyed by hand; false: only not keyed")):
        if outcome and outcome not in OUTCOMES:
            raise HTTPException(422, f"unknown outcome {outcome!r}; expected one of: {', '.join(OUTCOMES)}")
        for name, v in (("since_wall", since_wall), ("until_wall", until_wall)):
            if v is not None and not math.isfinite(v):
                raise HTTPException(422, f"{name} must be a finite number")
        label = "search"
        if day is not None or (since_wall is None and until_wall is None and not waybill):
            try:
                d = dt.date.fromisoformat(day) if day else dt.date.today()
            except ValueError:
                raise HTTPException(422, f"day must be a date YYYY-MM-DD, got {day!r}") from None
            start = dt.datetime.combine(d, dt.time()).timestamp()
            end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time()).timestamp()
            since_wall = start if since_wall is None else max(since_wall, start)
            until_wall = end if until_wall is None else min(until_wall, end)
            label = d.isoformat()
        crit = {"waybill": (waybill or "").strip() or None, "since_wall": since_wall, "until_wall": until_wall,
                "carrier": carrier or None, "town": town or None, "chute": chute or None,
                "outcome": outcome or None, "keyed": keyed}
        records = store.iter_records(**crit)
        name = f"parcels-{label}.{format}"
        if format == "csv":
            return StreamingResponse(csv_lines(records), media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": f'attachment; filename="{name}"'})
        fd, path = tempfile.mkstemp(prefix="sorter-export-", suffix=".xlsx")
        os.close(fd)
        try:
            n = write_xlsx(records, path, label)
        except HTTPException:
            os.unlink(path)
            raise
        except Exception as exc:  # noqa: BLE001
            os.unlink(path)
            log.exception("export failed")
            raise HTTPException(503, f"export failed: {exc}") from exc
        return FileResponse(path, media_type=XLSX_TYPE, filename=name, headers={"X-Parcels": str(n)},
                            background=BackgroundTask(os.unlink, path))

    return r
