"""Config of the cameras (and code readers) over the belt."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.config_base import Strict

SYMBOLOGIES = ("code128", "code39", "itf", "ean13", "upca", "qrcode", "datamatrix", "pdf417")
Symbology = Literal["code128", "code39", "itf", "ean13", "upca", "qrcode", "datamatrix", "pdf417"]


class CameraConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    source: str = Field(description="sim://NAME, a video file, a folder of images, or a device index")
    position_mm: float = Field(ge=0, le=100_000, description="belt position at the centre of the view")
    symbologies: list[Symbology] = Field(default_factory=lambda: list(SYMBOLOGIES))
    nice: int = Field(default=10, ge=0, le=19, description="decoders yield the CPU to the timing loop")
    max_frame_age_ms: float = Field(default=800, ge=10, le=60_000,
                                    description="a frame older than this when its turn comes is dropped: "
                                                "its parcel is past deciding, and decoding it would only delay the next")


def verify_cameras(cfg) -> list[tuple[str, str]]:
    """Checks of the cameras against the line: (key path, problem) pairs."""
    problems: list[tuple[str, str]] = []
    zone = cfg.line.scan_zone
    for i, cam in enumerate(cfg.cameras):
        if not zone.start_mm <= cam.position_mm <= zone.end_mm:
            problems.append((f"cameras.{i}.position_mm", f"{cam.position_mm} is outside the scan zone"))
    names = [c.name for c in cfg.cameras]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("cameras", f"camera {dup!r} is defined twice"))
    return problems
