"""Response models: what each endpoint answers, for the OpenAPI schema (`/docs`, `/openapi.json`)
and for clients generated from it.

The hot endpoints (`/api/status`, `/api/parcels`) return bytes made once (service/status_cache.py)
or rows straight from the database, so these models document them without validating every
answer; the small ones are validated. Every model allows extra keys: a newer service may add
fields, and a client written against this schema must still work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sorter.controller.records.schema import OUTCOMES
from sorter.controller.timing.line_state import STATES

Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]
LineStateName = Literal[STATES]  # type: ignore[valid-type]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Percentiles(Open):
    p50: float | None = Field(None, description="median, ms")
    p99: float | None = None
    p999: float | None = None
    max: float | None = None
    n: int = Field(0, description="samples behind the figures (the last 10,000 parcels at most)")


class Counts(Open):
    total: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict, description="parcels per outcome: " + ", ".join(OUTCOMES))


class FireHistogram(Open):
    edges_ms: list[float] = Field(default_factory=list, description="bin edges, ms; counts[i] is below edges_ms[i]")
    counts: list[int] = Field(default_factory=list, description="len(edges_ms) + 1 bins, the last above every edge")
    n: int = 0


class Plc(Open):
    url: str = ""
    connected: bool = False
    errors: int = 0


class Line(Open):
    name: str
    state: LineStateName | str
    state_reason: str = ""
    state_since_wall: float | None = None
    test_mode: str | None = None
    estop_latched: bool = False
    induct_enable: bool | None = None
    mode: str = Field("run", description="run | sim")
    plc: Plc | None = None
    belt_speed_mps: float | None = None
    uptime_s: float | None = None
    routing_version: str = ""
    run_id: str = ""


class Chute(Open):
    id: str
    name: str
    count: int = Field(0, description="parcels sent to it this run")
    full: bool = False
    enabled: bool = True


class Camera(Open):
    name: str
    alive: bool = False
    fps: float | None = None
    frames: int | None = None
    dropped: int | None = None
    reads: int | None = None
    decode_ms_p50: float | None = None
    decode_ms_p99: float | None = None
    status: str | None = None


class Alarm(Open):
    id: str
    text: str
    since_wall: float | None = None


class Read(Open):
    camera: str | None = None
    symbology: str | None = None
    text: str | None = Field(None, description="untrusted barcode text: show it as text, never as markup")


class ParcelRecord(Open):
    """One parcel's record, as the database keeps it."""
    run_id: str
    parcel_id: int
    induct_wall: float | None = None
    decided_wall: float | None = None
    ended_wall: float
    length_mm: float | None = None
    reads: list[Read] = Field(default_factory=list)
    waybill: str | None = None
    carrier: str | None = None
    destination: str | None = Field(None, description="the town (or route)")
    chute: str | None = Field(None, description="the chute the parcel was routed to")
    actual_chute: str | None = Field(None, description="where it was confirmed")
    outcome: Outcome | str
    reason: str = ""
    routing_version: str | None = None
    fire_error_ms: float | None = None
    decision_ms: float | None = None
    rule: str | None = None
    sort_code: str | None = None


class Records(Open):
    written: int = 0
    queued: int = 0
    in_flight: int = 0
    id_collisions: int = 0
    faulted_previous_run: int = 0
    faulted_timing_restart: int = 0
    db_errors: int = 0
    last_error: str | None = None


class Stats(Open):
    counts: Counts | None = None
    throughput_pph: float | None = Field(None, description="parcels per hour over the last 5 minutes")
    read_rate: float | None = Field(None, description="share of parcels with a waybill, 0..1")
    fire_error_ms: Percentiles | None = None
    decision_ms: Percentiles | None = None


class Status(Stats):
    """The line's status snapshot (rebuilt twice a second; the page and the wall screens show it)."""
    line: Line
    fire_hist: FireHistogram | None = None
    chutes: list[Chute] = Field(default_factory=list)
    cameras: list[Camera] = Field(default_factory=list)
    alarms: list[Alarm] = Field(default_factory=list)
    recent: list[ParcelRecord] = Field(default_factory=list, description="the last 20 parcels, newest first")
    records: Records | None = None
    lookup: dict[str, Any] | None = None
    sim: dict[str, Any] | None = Field(None, description="`sorter sim` only")


class Ok(Open):
    ok: bool


class ChuteChanged(Ok):
    chute: str
    enabled: bool


class Message(Ok):
    message: str


class Problem(Open):
    detail: Any = Field(description="what was wrong, naming the field")


# ---------------------------------------------------------------- totals and series (api/totals.py)
class Shift(Open):
    name: str
    start: str = Field(description="HH:MM, local time")
    start_wall: float
    end_wall: float


class Totals(Open):
    """Counts from the record database: they survive a restart of the service."""
    day: str = Field(description="YYYY-MM-DD, the line PC's local day")
    shift: str | None = None
    since_wall: float
    until_wall: float
    total: int
    outcomes: dict[str, int]
    read_rate: float | None = Field(None, description="share of parcels with a waybill, 0..1")
    shifts: list[Shift] = Field(default_factory=list, description="the day's shifts as configured")


class GroupCount(Open):
    key: str | None = Field(description="the carrier or the town; null: not known")
    total: int
    sorted: int
    outcomes: dict[str, int]


class GroupTotals(Open):
    day: str
    shift: str | None = None
    since_wall: float
    until_wall: float
    by: Literal["carrier", "town"]
    rows: list[GroupCount]


class Series(Open):
    """Values per time bucket: `t` are the buckets' starts (epoch seconds)."""
    metric: str
    bucket_s: int
    since_wall: float
    until_wall: float
    t: list[float]
    series: dict[str, list[float | None]] = Field(description="one list per outcome / camera, aligned with t")
