"""Config of the totals (the `stats:` section of a line file): the shifts a day is split into, for
the totals and charts the page shows per shift."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from sorter.controller.config.base import Strict

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ShiftConfig(Strict):
    """One shift: it runs from its start to the next shift's start (the last one past midnight
    to the first one's start the next day)."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f<>&\"']+$",
                      description="what the page and the API call it, e.g. 早班 or day")
    start: str = Field(description="local time of day it starts, HH:MM (24 h)")

    @field_validator("start")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not HHMM.match(v):
            raise ValueError(f"start must be HH:MM (00:00 to 23:59), got {v!r}")
        return v


class StatsConfig(Strict):
    """Totals by day and shift come from the record database, so they survive a restart."""

    shifts: list[ShiftConfig] = Field(
        default_factory=lambda: [ShiftConfig(name="day", start="06:00"), ShiftConfig(name="night", start="18:00")],
        min_length=1, max_length=6,
        description="the day's shifts, in the order they start in the day (ascending HH:MM); each runs to the "
                    "next one's start, the last one past midnight to the first one's start the next morning")

    @model_validator(mode="after")
    def _distinct(self) -> "StatsConfig":
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"shift names must differ: {names}")
        starts = [s.start for s in self.shifts]
        if starts != sorted(set(starts)):
            raise ValueError(f"shift starts must be in ascending order and differ: {starts}")
        return self
