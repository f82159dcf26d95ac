"""One advice record: the manifest's columns, what a waybill, a sort code (三段码) and a carrier code
look like, the header names a carrier's file may use, and the validation of a record.

Shared by the file importer, the HTTP upload and the real-time lookup's answers, so a row is
accepted or refused for the same reasons (with the same message) however it arrives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple


# the full row, in this column order (upsert takes tuples of the first 2..8 of these)
COLUMNS = ("waybill", "town", "sort_code", "address", "carrier", "service", "weight_kg", "intercept")

WAYBILL_RE = re.compile(r"[A-Z0-9]{6,40}")
CARRIER_RE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")
# 三段码: 1-4 segments of letters/digits, separated by '-' or spaces: 571-W30 02, 576-A12-03
SORT_CODE_RE = re.compile(r"[A-Z0-9]{1,8}(?:[-\s]+[A-Z0-9]{1,8}){0,3}")
_SEG_SPLIT = re.compile(r"[-\s]+")
# bytes a file's encoding could not decode, kept by the importer as lone surrogates (surrogateescape),
# and lone surrogates a JSON text spelled as \udXXX: neither is text that can be stored
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# a whole batch of (upper-cased) waybills joined by newlines, checked in one C call
WAYBILL_LINES_RE = re.compile(r"(?:[A-Z0-9]{6,40}\n)*[A-Z0-9]{6,40}")

MAX_TOWN, MAX_ADDRESS, MAX_SERVICE, MAX_CARRIER = 64, 300, 32, 16
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
    if LONE_SURROGATE.search(waybill):
        return None, "waybill has bytes that do not decode in the file's encoding"
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
        if LONE_SURROGATE.search(v):
            raise ValueError(f"{col} has bytes that do not decode in the file's encoding")
        return v

    try:
        town = text("town", MAX_TOWN)
        sort_code = text("sort_code", 40)
        address = text("address", MAX_ADDRESS)
        service = text("service", MAX_SERVICE)
        carrier = text("carrier", MAX_CARRIER)
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
