"""Totals of a day and of a shift, per carrier and per town, and the charts' time series: from the
record database, so they survive a restart of the service (a new app on the same file)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from sorter.controller.api.app import create_app
from sorter.controller.api.totals import ShiftCalendar
from sorter.controller.config.stats import ShiftConfig, StatsConfig
from sorter.controller.records.store import RecordStore
from tests.test_api import serve

DAY = dt.date(2026, 11, 30)
SHIFTS = StatsConfig(shifts=[ShiftConfig(name="早班", start="06:00"), ShiftConfig(name="夜班", start="18:00")])


def at(day: dt.date, h: int, m: int = 0) -> float:
    return dt.datetime.combine(day, dt.time(h, m)).timestamp()


def rec(pid: int, ended: float, outcome: str = "sorted", carrier: str | None = "ZTO", town: str | None = "泽国镇",
        waybill: str | None = "75444664167064", reads: list | None = None) -> dict:
    return {"run_id": "r1", "parcel_id": pid, "induct_wall": ended - 5, "ended_wall": ended, "outcome": outcome,
            "reason": "" if outcome == "sorted" else outcome, "waybill": waybill if outcome != "no_read" else None,
            "carrier": carrier if outcome != "no_read" else None, "destination": town if outcome != "no_read" else None,
            "chute": "C06", "reads": reads or []}


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "records.db"
    s = RecordStore(path)
    s.write_many([
        rec(1, at(DAY, 7), carrier="ZTO", town="泽国镇"),
        rec(2, at(DAY, 8), carrier="ZTO", town="大溪镇"),
        rec(3, at(DAY, 9), outcome="no_read"),
        rec(4, at(DAY, 19), carrier="SF", town="泽国镇", waybill="SF1234567890123"),
        rec(5, at(DAY + dt.timedelta(days=1), 2), carrier="SF", town="泽国镇", waybill="SF1234567890124"),  # night, after midnight
        rec(6, at(DAY - dt.timedelta(days=1), 12), carrier="YTO", town="泽国镇", waybill="YT1"),  # the day before
    ])
    s.close()
    return path


def app_on(path):
    store = RecordStore(path)
    return store, serve(create_app(lambda: {}, store, stats=SHIFTS))


def test_totals_of_a_day_and_of_its_shifts_survive_a_restart(db):
    for _restart in range(2):  # a new service on the same database: the same totals
        store, srv = app_on(db)
        try:
            with httpx.Client(base_url=srv.url, timeout=10) as c:
                day = c.get("/api/totals", params={"day": DAY.isoformat()}).json()
                assert day["total"] == 4 and day["outcomes"]["sorted"] == 3 and day["outcomes"]["no_read"] == 1
                assert day["read_rate"] == 0.75 and day["shift"] is None
                assert [s["name"] for s in day["shifts"]] == ["早班", "夜班"]
                early = c.get("/api/totals", params={"day": DAY.isoformat(), "shift": "早班"}).json()
                assert early["total"] == 3 and early["since_wall"] == at(DAY, 6) and early["until_wall"] == at(DAY, 18)
                night = c.get("/api/totals", params={"day": DAY.isoformat(), "shift": "夜班"}).json()
                # the night shift runs past midnight: parcel 5 at 02:00 the next day is in it
                assert night["total"] == 2 and night["until_wall"] == at(DAY + dt.timedelta(days=1), 6)
        finally:
            srv.stop()
            store.close()


def test_per_carrier_and_per_town(db):
    store, srv = app_on(db)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            rows = c.get("/api/totals/carriers", params={"day": DAY.isoformat()}).json()["rows"]
            assert [(r["key"], r["total"], r["sorted"]) for r in rows] == [("ZTO", 2, 2), (None, 1, 0), ("SF", 1, 1)]
            towns = c.get("/api/totals/towns", params={"day": DAY.isoformat(), "shift": "夜班"}).json()
            assert towns["by"] == "town" and [(r["key"], r["total"]) for r in towns["rows"]] == [("泽国镇", 2)]
    finally:
        srv.stop()
        store.close()


def test_a_keyed_no_read_counts_under_what_was_keyed(db):
    store = RecordStore(db)
    try:
        assert store.key_parcel("r1", 3, waybill="75444664167099", carrier="ZTO", destination="大溪镇", chute="C07",
                                rule="manual", reason="keyed", by="li", via="review")
        rows = {r["key"]: r for r in store.totals_by("carrier", at(DAY, 0), at(DAY, 23, 59))}
        assert rows["ZTO"]["total"] == 3 and rows["ZTO"]["outcomes"] == {"sorted": 2, "no_read": 1}
        assert store.totals(at(DAY, 0), at(DAY, 23, 59))["with_waybill"] == 4
    finally:
        store.close()


def test_bad_day_and_unknown_shift_are_named(db):
    store, srv = app_on(db)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            r = c.get("/api/totals", params={"day": "2026-13-45"})
            assert r.status_code == 422 and "YYYY-MM-DD" in r.text
            r = c.get("/api/totals", params={"day": DAY.isoformat(), "shift": "noon"})
            assert r.status_code == 422 and "noon" in r.text and "早班" in r.text
            r = c.get("/api/series", params={"day": DAY.isoformat(), "bucket_s": 10})
            assert r.status_code == 422 and "buckets" in r.text
    finally:
        srv.stop()
        store.close()


def test_series_throughput_outcomes_and_read_rate_per_camera(tmp_path):
    store = RecordStore(tmp_path / "r.db")
    t0 = at(DAY, 10)
    top = lambda wb: [{"camera": "top", "symbology": "code128", "text": wb}]  # noqa: E731
    side_ean = [{"camera": "side", "symbology": "ean13", "text": "6901234567892"}]
    store.write_many([
        rec(1, t0 + 5, reads=top("75444664167064")),
        rec(2, t0 + 30, reads=top("75444664167064") + side_ean),
        rec(3, t0 + 65, outcome="no_read", reads=side_ean),
        rec(4, t0 + 200, reads=[{"camera": "side", "symbology": "code128", "text": "75444664167064"}]),
    ])
    srv = serve(create_app(lambda: {}, store, stats=SHIFTS))
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            q = {"day": DAY.isoformat(), "shift": "早班", "bucket_s": 60}
            s = c.get("/api/series", params={**q, "metric": "throughput"}).json()
            i = s["t"].index(t0)
            assert s["series"]["parcels"][i:i + 4] == [2, 1, 0, 1]
            s = c.get("/api/series", params={**q, "metric": "outcomes"}).json()
            assert s["series"]["sorted"][i:i + 4] == [2, 0, 0, 1] and s["series"]["no_read"][i + 1] == 1
            s = c.get("/api/series", params={**q, "metric": "read_rate"}).json()
            # the share of the bucket's parcels whose waybill the camera read (an EAN is not one)
            assert s["series"]["top"][i:i + 4] == [1.0, 0.0, None, 0.0]
            assert s["series"]["side"][i:i + 4] == [0.0, 0.0, None, 1.0]
    finally:
        srv.stop()
        store.close()


def test_the_current_shift_of_a_night_after_midnight_is_yesterdays():
    now = at(DAY, 3, 30)
    cal = ShiftCalendar(SHIFTS, clock=lambda: now)
    day, shift = cal.current()
    assert day == DAY - dt.timedelta(days=1) and shift["name"] == "夜班"
    assert shift["start_wall"] == at(DAY - dt.timedelta(days=1), 18) and shift["end_wall"] == at(DAY, 6)
    cal = ShiftCalendar(SHIFTS, clock=lambda: at(DAY, 6))
    assert cal.current()[1]["name"] == "早班"  # a shift starts at its minute


def test_shift_config_is_checked():
    with pytest.raises(ValueError, match="HH:MM"):
        ShiftConfig(name="x", start="25:00")
    with pytest.raises(ValueError, match="ascending"):
        StatsConfig(shifts=[ShiftConfig(name="b", start="18:00"), ShiftConfig(name="a", start="06:00")])
    with pytest.raises(ValueError, match="differ"):
        StatsConfig(shifts=[ShiftConfig(name="a", start="06:00"), ShiftConfig(name="a", start="18:00")])
