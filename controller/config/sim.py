"""Config of the simulated line that `sorter sim` runs in place of the hardware (the `sim:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sorter.controller.config.base import Strict


class SimConfig(Strict):
    """The simulated line that `sorter sim` runs in place of the hardware."""

    modbus_port: int = Field(default=1502, ge=0, le=65535, description="0 = any free port")
    frame_port: int = Field(default=0, ge=0, le=65535, description="camera frames; 0 = any free port")
    rate_pph: float = Field(default=6000, gt=0, le=40_000)
    length_mm: tuple[float, float] = (150, 600)
    width_mm: tuple[float, float] = (100, 450)
    min_gap_mm: float = Field(default=120, ge=0, le=5000)
    encoder_start: int = Field(default=0, ge=0, le=2**32 - 1, description="start near 2**32 to test the wrap")
    chute_capacity: int = Field(default=150, ge=1, le=100_000)
    chute_empty_s: float = Field(default=8, ge=0, le=3600)
    chute_slide_ms: float = Field(default=400, ge=0, le=10_000, description="diverter to confirm photo-eye")
    p_qr: float = Field(default=0.6, ge=0, le=1)
    p_ean13: float = Field(default=0.5, ge=0, le=1)
    p_stale_waybill: float = Field(default=0.02, ge=0, le=1)
    p_damaged: float = Field(default=0.02, ge=0, le=1)
    p_missing_label: float = Field(default=0.01, ge=0, le=1)
    p_face_down: float = Field(default=0.01, ge=0, le=1)
    p_unknown_waybill: float = Field(default=0.02, ge=0, le=1, description="waybill not in the manifest")
    p_sort_code: float = Field(default=0.1, ge=0, le=1, description="advised with a sort code (三段码) only")
    p_address: float = Field(default=0.1, ge=0, le=1, description="advised with an address only")
    latch: bool = Field(default=True, description="latch the encoder count at each induct photo-eye edge into "
                        "the plc.latch registers (a PLC with a counter module); false = a plain remote-I/O module")
    watchdog_ms: float = Field(default=500, ge=0, le=60_000, description="with plc.heartbeat: no heartbeat for this "
                               "long drops every output and stops induction until it comes back (0 = never)")
    plc_answer_lead_ms: float = Field(default=5, ge=0, le=600_000, description="plc_tracking: the simulated PLC takes "
                                      "an answer only this long before the parcel's diverter must switch (its scan time)")
    towns: list[str] = Field(default_factory=list, description="destinations the simulated parcels go to")
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
