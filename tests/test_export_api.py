"""`GET /api/export`: a day or a search as .xlsx (opened again with openpyxl: waybills as text,
real date cells, Chinese headers, no formula from a barcode) and as CSV; the filters find the same
parcels as the search."""

from __future__ import annotations

import csv
import datetime as dt
import io

import httpx
import openpyxl
import pytest

from sorter.controller.api.app import create_app
from sorter.controller.api.export import HEADERS
from sorter.controller.records.store import RecordStore
from tests.test_api import serve

DAY = dt.date(2026, 11, 30)
NOON = dt.datetime.combine(DAY, dt.time(12)).timestamp()
EVIL = "=HYPERLINK(\"http://x\",\"y\")"


def rec(pid, ended, waybill, carrier="ZTO", town="泽国镇", chute="C06", outcome="sorted"):
    return {"run_id": "r1", "parcel_id": pid, "induct_wall": ended - 5, "decided_wall": ended - 4, "ended_wall": ended,
            "waybill": waybill, "carrier": carrier, "destination": town, "chute": chute, "actual_chute": chute,
            "outcome": outcome, "reason": "" if outcome == "sorted" else outcome, "routing_version": "v1",
            "fire_error_ms": 0.25, "decision_ms": 12.5, "length_mm": 300.0,
            "reads": [{"camera": "top", "symbology": "code128", "text": waybill or ""}]}


@pytest.fixture()
def server(tmp_path):
    store = RecordStore(tmp_path / "records.db")
    store.write_many([
        rec(1, NOON, "075444664167064"),                                  # a leading zero, 15 digits
        rec(2, NOON + 60, "773012345678901234"),                           # 18 digits: past a float's precision
        rec(3, NOON + 120, EVIL, carrier=None, town=None, chute="R", outcome="no_route"),
        rec(4, NOON + 180, "SF1234567890123", carrier="SF", town="大溪镇", chute="C07"),
        rec(5, NOON - 86400, "older", carrier="ZTO"),
    ])
    srv = serve(create_app(lambda: {}, store))
    srv.store = store
    yield srv
    srv.stop()
    store.close()


def test_xlsx_of_a_day(server):
    r = httpx.get(server.url + "/api/export", params={"format": "xlsx", "day": DAY.isoformat()}, timeout=30)
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    assert f"parcels-{DAY.isoformat()}.xlsx" in r.headers["content-disposition"]
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == HEADERS and rows[0][0] == "运单号" and "完成时间" in rows[0]
    body = rows[1:]
    assert len(body) == 4  # the day before is not in this day
    col = {h: i for i, h in enumerate(HEADERS)}
    assert [b[col["运单号"]] for b in body] == ["075444664167064", "773012345678901234", EVIL, "SF1234567890123"]
    cells = list(ws.iter_rows(min_row=2, max_row=5))
    wb_cells = [row[col["运单号"]] for row in cells]
    assert all(c.data_type == "s" and c.number_format == "@" for c in wb_cells)  # text, and no formula
    ended = body[0][col["完成时间"]]
    assert isinstance(ended, dt.datetime) and ended == dt.datetime.fromtimestamp(NOON)
    assert cells[0][col["完成时间"]].is_date
    assert body[2][col["结果"]] == "no_route" and body[2][col["结果说明"]] == "无路由"
    assert body[0][col["决策耗时(毫秒)"]] == 12.5


def test_csv_with_search_filters_matches_the_search(server):
    crit = {"carrier": "ZTO", "since_wall": NOON - 1, "until_wall": NOON + 3600}
    r = httpx.get(server.url + "/api/export", params={"format": "csv", **crit}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())  # Excel reads the Chinese headers as UTF-8
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert tuple(rows[0]) == HEADERS
    exported = sorted(int(row[HEADERS.index("包裹号")]) for row in rows[1:])
    found = sorted(p["parcel_id"] for p in server.store.search(**crit))
    assert exported == found == [1, 2]
    for params, ids in (({"chute": "C07"}, [4]), ({"outcome": "no_route"}, [3]), ({"town": "大溪镇"}, [4]),
                        ({"waybill": "SF1234567890123"}, [4])):
        r = httpx.get(server.url + "/api/export", params={"format": "csv", "day": DAY.isoformat(), **params}, timeout=30)
        got = sorted(int(row[HEADERS.index("包裹号")]) for row in list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))[1:])
        assert got == ids == sorted(p["parcel_id"] for p in server.store.search(
            since_wall=NOON - 43200, until_wall=NOON + 43200, **params)), params


def test_csv_defuses_formulas_and_writes_local_times(server):
    r = httpx.get(server.url + "/api/export", params={"format": "csv", "day": DAY.isoformat()}, timeout=30)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    evil = next(row for row in rows if row[HEADERS.index("包裹号")] == "3")
    assert evil[HEADERS.index("运单号")] == "'" + EVIL
    assert rows[1][HEADERS.index("完成时间")] == dt.datetime.fromtimestamp(NOON).strftime("%Y-%m-%d %H:%M:%S.000")


def test_export_refuses_bad_input_by_name(server):
    for params, needle in (({"day": "30/11/2026"}, "day"), ({"outcome": "boom"}, "unknown outcome"),
                           ({"format": "pdf"}, "format"), ({"chute": "<b>"}, "chute")):
        r = httpx.get(server.url + "/api/export", params=params, timeout=30)
        assert r.status_code == 422 and needle in r.text, (params, r.text)


def test_a_big_day_exports_every_row_in_batches(tmp_path):
    store = RecordStore(tmp_path / "big.db")
    store.write_many(rec(i, NOON + i * 0.5, f"ZT{i:012d}") for i in range(2500))  # > two fetch batches
    srv = serve(create_app(lambda: {}, store))
    try:
        r = httpx.get(srv.url + "/api/export", params={"format": "csv", "day": DAY.isoformat()}, timeout=60)
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))[1:]
        ids = [int(row[HEADERS.index("包裹号")]) for row in rows]
        assert ids == list(range(2500))  # each once, oldest first
    finally:
        srv.stop()
        store.close()
