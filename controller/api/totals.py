"""Totals for today and per shift, per carrier and per town, and the time series the charts draw
(throughput, outcomes over time, read rate per camera), all from the record database: they survive
a restart of the service. The fire-timing histogram is the timing process's (`/api/io/timing`, and
`fire_hist` in `/api/status`).

Days and shifts are the line PC's local time; shifts come from the config (`stats.shifts`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable, Literal

from fastapi import APIRouter, HTTPException, Query

from sorter.controller.api.models import GroupTotals, Series, Shift, Totals
from sorter.controller.config.stats import StatsConfig

DAY = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD, local; default today")
SHIFT = Query(None, min_length=1, max_length=32,
              description="a shift's name from stats.shifts, or `current`; default the whole day")


class ShiftCalendar:
    """Where each shift of a day starts and ends, and which one is on now. `clock`: epoch seconds."""

    def __init__(self, cfg: StatsConfig | None = None, clock: Callable[[], float] = time.time):
        self.cfg = cfg or StatsConfig()
        self.clock = clock

    @staticmethod
    def _at(day: dt.date, hhmm: str) -> float:
        h, m = (int(x) for x in hhmm.split(":"))
        return dt.datetime.combine(day, dt.time(h, m)).timestamp()

    def shifts(self, day: dt.date) -> list[dict[str, Any]]:
        """The day's shifts: each to the next one's start, the last one to the first one's start
        the next day."""
        starts = [(s.name, s.start, self._at(day, s.start)) for s in self.cfg.shifts]
        out = []
        for i, (name, hhmm, start) in enumerate(starts):
            end = starts[i + 1][2] if i + 1 < len(starts) else self._at(day + dt.timedelta(days=1), starts[0][1])
            out.append({"name": name, "start": hhmm, "start_wall": start, "end_wall": end})
        return out

    def current(self) -> tuple[dt.date, dict[str, Any]]:
        """(the day it belongs to, the shift) of now: a night shift after midnight is yesterday's."""
        now = self.clock()
        today = dt.datetime.fromtimestamp(now).date()
        for day in (today, today - dt.timedelta(days=1)):
            for s in self.shifts(day):
                if s["start_wall"] <= now < s["end_wall"]:
                    return day, s
        raise AssertionError("the shifts cover the whole day")  # the last one reaches the next first

    def window(self, day: str | None, shift: str | None) -> tuple[dt.date, str | None, float, float]:
        """(day, shift name, since, until) for the query parameters; 422 naming the bad one."""
        if shift == "current" and day is None:
            d, s = self.current()
            return d, s["name"], s["start_wall"], s["end_wall"]
        d = self.parse_day(day)
        if shift is None:
            return d, None, self._at(d, "00:00"), self._at(d + dt.timedelta(days=1), "00:00")
        names = {s["name"]: s for s in self.shifts(d)}
        if shift == "current":
            raise HTTPException(422, "shift=current takes no day")
        if shift not in names:
            raise HTTPException(422, f"unknown shift {shift!r}; stats.shifts has: {', '.join(names)}")
        s = names[shift]
        return d, shift, s["start_wall"], s["end_wall"]

    def parse_day(self, day: str | None) -> dt.date:
        if day is None:
            return dt.datetime.fromtimestamp(self.clock()).date()
        try:
            return dt.date.fromisoformat(day)
        except ValueError:
            raise HTTPException(422, f"day must be a date YYYY-MM-DD, got {day!r}") from None


def router(store: Any, stats: StatsConfig | None = None, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter(tags=["totals"])
    cal = ShiftCalendar(stats if isinstance(stats, StatsConfig) else None, clock)

    def db(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ValueError as exc:  # a span too long for its buckets
            raise HTTPException(422, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"record database unavailable: {exc}") from exc

    @r.get("/api/totals", summary="Totals of a day or a shift from the records (survive a restart)",
           response_model=Totals)
    def get_totals(day: str | None = DAY, shift: str | None = SHIFT) -> dict:
        d, name, since, until = cal.window(day, shift)
        t = db(store.totals, since, until)
        return {"day": d.isoformat(), "shift": name, "since_wall": since, "until_wall": until,
                "total": t["total"], "outcomes": t["outcomes"],
                "read_rate": round(t["with_waybill"] / t["total"], 4) if t["total"] else None,
                "shifts": [Shift(**s) for s in cal.shifts(d)]}

    def grouped(by: Literal["carrier", "town"], day: str | None, shift: str | None) -> dict:
        d, name, since, until = cal.window(day, shift)
        return {"day": d.isoformat(), "shift": name, "since_wall": since, "until_wall": until, "by": by,
                "rows": db(store.totals_by, by, since, until)}

    @r.get("/api/totals/carriers", summary="Totals per carrier of a day or a shift", response_model=GroupTotals)
    def carriers(day: str | None = DAY, shift: str | None = SHIFT) -> dict:
        return grouped("carrier", day, shift)

    @r.get("/api/totals/towns", summary="Totals per town (destination) of a day or a shift",
           response_model=GroupTotals)
    def towns(day: str | None = DAY, shift: str | None = SHIFT) -> dict:
        return grouped("town", day, shift)

    @r.get("/api/series", summary="Throughput, outcomes or read rate per camera over time (the charts)",
           response_model=Series)
    def series(metric: Literal["throughput", "outcomes", "read_rate"] = Query(
                   "throughput", description="throughput: parcels per bucket; outcomes: per outcome; read_rate: "
                                             "share of parcels whose waybill each camera read"),
               day: str | None = DAY,
               shift: str | None = Query(None, min_length=1, max_length=32,
                                         description="a shift's name, or `current`; default: the current shift "
                                                     "when no day is given, else the whole day"),
               bucket_s: int = Query(60, ge=10, le=86_400, description="bucket length, seconds")) -> dict:
        if day is None and shift is None:
            shift = "current"
        _d, _name, since, until = cal.window(day, shift)
        until = min(until, max(since, clock()))  # no empty buckets for the rest of a shift still on
        if metric == "read_rate":
            t, s = db(store.camera_read_series, since, until, bucket_s)
        else:
            t, s = db(store.outcome_series, since, until, bucket_s)
            if metric == "throughput":
                s = {"parcels": [sum(col) for col in zip(*s.values())] if s else []}
        return {"metric": metric, "bucket_s": bucket_s, "since_wall": since, "until_wall": until, "t": t, "series": s}

    return r
