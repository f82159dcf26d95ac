"""Config of retention (the `retention:` section of a line file): how long records, the journal,
sent uploads and manifest rows are kept before the nightly purge removes them."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from sorter.controller.config.base import Strict


class RetentionConfig(Strict):
    """Old rows are deleted nightly in small batches, between the record writer's commits (it is
    never held up for more than one batch). 0 days = keep for ever."""

    records_days: int = Field(default=400, ge=0, le=36_500,
                              description="parcel records (and the control audit, the alarm history, "
                                          "uploads already delivered or given up) older than this many days "
                                          "are deleted; export what billing needs first (`sorter export`)")
    journal_days: int = Field(default=7, ge=0, le=36_500,
                              description="journal rows (parcels on the belt) older than this: left by a run "
                                          "that ended badly and already closed as fault at the next start")
    manifest_days: int = Field(default=60, ge=0, le=36_500,
                               description="carriers' pre-advice rows not updated for this many days")
    at: str = Field(default="03:30", description="local time of day (HH:MM) the purge runs")
    batch_rows: int = Field(default=100, ge=10, le=100_000,
                            description="rows deleted per transaction (each one holds the database's write "
                                        "lock for a few milliseconds)")
    pause_ms: float = Field(default=50, ge=0, le=10_000,
                            description="pause between two batches: the record writer commits in between")

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", v.strip())
        if not m:
            raise ValueError(f"{v!r}: expected a time of day HH:MM, e.g. 03:30")
        return f"{int(m[1]):02d}:{m[2]}"
