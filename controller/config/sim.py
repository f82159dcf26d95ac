"""Config of the simulated line that `sorter sim` runs in place of the hardware (the `sim:` section).

`destinations` is the simulation's own truth table: where each town's parcels belong, written by
hand from what the centre intends. The simulated line judges every parcel against it and never
against the route table, so that a wrong rule shows up as a mis-sort instead of being copied into
the expected answer.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sorter.controller.config.base import Strict

# a 三段码 as carriers print it: 1-4 segments of letters and digits, separated by '-' or spaces
_SORT_CODE = re.compile(r"[A-Z0-9]{1,8}(?:[-\s]+[A-Z0-9]{1,8}){0,3}")
_CARRIER = re.compile(r"[A-Z][A-Z0-9_]{1,15}")


class SimDestination(Strict):
    """One row of the truth table: a town, the chute(s) its parcels belong in, and what the
    simulated carriers write in their advice for it."""

    town: str = Field(min_length=1, max_length=64, description="the town (乡镇/街道) as the carriers' advice names it")
    chutes: list[str] = Field(min_length=1, max_length=50, description="the chute its parcels belong in; several: a "
                              "group, any of which is right (one big town spread over several chutes)")
    alternate: str | None = Field(default=None, description="where its parcels rightly go when every one of its "
                                  "chutes is full (default: the first chute's alternate in line.chutes)")
    carriers: list[str] | None = Field(default=None, min_length=1, description="only the parcels of these carriers "
                                       "(codes as the simulated waybills have them: ZTO, SF ...); an entry with "
                                       "carriers wins over the town's entry without; unset: every carrier")
    sort_codes: list[str] = Field(default_factory=list, max_length=50, description="the sort codes (三段码) the "
                                  "carriers print for this town, e.g. 576-W06 (centre-outlet); the simulated line "
                                  "adds a two-digit courier segment to a code of fewer than three. Empty: its "
                                  "parcels are never advised by sort code only")
    villages: list[str] = Field(default_factory=list, max_length=200, description="villages (村/社区) of the town, "
                                "for addresses that name the village (half of them without the town)")
    addresses: list[str] = Field(default_factory=list, max_length=200, description="address stems in the town "
                                 "without house number, e.g. 泽国镇人民路 (default: the town and a few common "
                                 "road names); the simulated line adds a province/city prefix and a number")

    @field_validator("town", "alternate")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return None if v is None else v.strip()

    @field_validator("carriers")
    @classmethod
    def _carriers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = [c.strip().upper() for c in v]
        for c in out:
            if not _CARRIER.fullmatch(c):
                raise ValueError(f"bad carrier code {c!r} (upper-case letters and digits, e.g. ZTO)")
        return out

    @field_validator("sort_codes")
    @classmethod
    def _sort_codes(cls, v: list[str]) -> list[str]:
        out = []
        for code in v:
            t = str(code).strip().upper()
            if not _SORT_CODE.fullmatch(t):
                raise ValueError(f"bad sort code {code!r}: segments of letters and digits separated by - or "
                                 f"spaces, e.g. 576-W06")
            out.append("-".join(re.split(r"[-\s]+", t)))
        return out


class SimConfig(Strict):
    """The simulated line that `sorter sim` runs in place of the hardware."""

    modbus_port: int = Field(default=1502, ge=0, le=65535, description="0 = any free port")
    frame_port: int = Field(default=0, ge=0, le=65535, description="camera frames; 0 = any free port")
    rate_pph: float = Field(default=6000, gt=0, le=40_000, description="parcels per hour inducted (mean)")
    length_mm: tuple[float, float] = Field(default=(150, 600), description="[min, max] parcel length along the belt")
    width_mm: tuple[float, float] = Field(default=(100, 450), description="[min, max] parcel width")
    min_gap_mm: float = Field(default=120, ge=0, le=5000, description="smallest gap between two parcels (the "
                              "induction's); the gaps beyond it are random")
    encoder_start: int = Field(default=0, ge=0, le=2**32 - 1, description="start near 2**32 to test the wrap")
    chute_capacity: int = Field(default=150, ge=1, le=100_000, description="parcels a chute holds before its full "
                                "photo-eye reports full")
    chute_empty_s: float = Field(default=8, ge=0, le=3600, description="how long a full chute takes to be emptied")
    chute_slide_ms: float = Field(default=400, ge=0, le=10_000, description="diverter to confirm photo-eye")
    p_qr: float = Field(default=0.6, ge=0, le=1, description="share of labels with an e-waybill QR code")
    p_ean13: float = Field(default=0.5, ge=0, le=1, description="share of parcels with a product EAN-13 beside the label")
    p_stale_waybill: float = Field(default=0.02, ge=0, le=1, description="share with a second, stale waybill label "
                                   "(expected: multi_read)")
    p_damaged: float = Field(default=0.02, ge=0, le=1, description="share whose waybill barcode is damaged (the QR "
                             "code may still carry it)")
    p_missing_label: float = Field(default=0.01, ge=0, le=1, description="share without a label (expected: no_read)")
    p_face_down: float = Field(default=0.01, ge=0, le=1, description="share label-down (expected: no_read)")
    p_unknown_waybill: float = Field(default=0.02, ge=0, le=1, description="waybill not in the manifest")
    p_sort_code: float = Field(default=0.1, ge=0, le=1, description="advised with a sort code (三段码) only")
    p_address: float = Field(default=0.1, ge=0, le=1, description="advised with an address only")
    latch: bool = Field(default=True, description="latch the encoder count at each induct photo-eye edge into "
                        "the plc.latch registers (a PLC with a counter module); false = a plain remote-I/O module")
    watchdog_ms: float = Field(default=500, ge=0, le=60_000, description="with plc.heartbeat: no heartbeat for this "
                               "long drops every output and stops induction until it comes back (0 = never)")
    plc_answer_lead_ms: float = Field(default=5, ge=0, le=600_000, description="plc_tracking: the simulated PLC takes "
                                      "an answer only this long before the parcel's diverter must switch (its scan time)")
    towns: list[str] = Field(default_factory=list, description="the towns the simulated parcels are for (default: "
                             "every town of destinations; without destinations: the names of the diverter chutes)")
    destinations: list[SimDestination] = Field(
        default_factory=list, max_length=2000, description="the truth table: where each town's parcels belong and "
        "how the carriers advise them (town, sort codes, addresses), written from what the centre intends, never "
        "from the route table the simulation checks. Empty: each diverter chute serves the town it is named after, "
        "advised by town only")
    camera_mode: Literal["triggered", "free_running"] = Field(
        default="triggered", description="triggered: one frame per parcel, its label centred, taken when the "
        "parcel's centre passes under the camera; free_running: frames at camera_fps showing the belt as it is "
        "(every parcel in view, two at once when they are close), with a matching calibration written for the "
        "camera workers (plc/sim/belt_frames.py)")
    camera_fps: float = Field(default=12, ge=1, le=60, description="free_running: frames per second of each "
                              "simulated camera (each frame costs the camera worker a decode)")

    @model_validator(mode="after")
    def verify_ranges(self) -> "SimConfig":
        for key in ("length_mm", "width_mm"):
            lo, hi = getattr(self, key)
            if not 0 < lo <= hi <= 5000:
                raise ValueError(f"{key} must be [min, max] with 0 < min <= max <= 5000")
        return self
