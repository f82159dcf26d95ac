"""Config of the cameras (and code readers) over the belt.

A camera's ``source`` says where its frames (or reads) come from; its kind follows from the spec
(see :func:`sorter.controller.config.sources.source_kind`):

=====================================  ==========================================================
``sim://NAME``                          the simulated line's camera NAME (``sorter sim``)
``tcp://HOST:PORT/NAME``                a frame server speaking the simulated cameras' protocol
``0``, ``usb:1``                        a USB camera by device index (OpenCV)
``rtsp://…``, ``http://…``              an IP camera stream (OpenCV / FFmpeg)
``/path/video.mp4`` ``file:PATH``       a video file, replayed (``?fps=10&loop=1``)
``/path/folder``                        a folder of images, replayed in name order
``serial:/dev/ttyUSB0?baud=115200``     a fixed-mount code reader sending its reads as text lines
``reader://HOST:PORT``                  the same over TCP
=====================================  ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sorter.controller.config.base import Strict

SYMBOLOGIES = ("code128", "code39", "itf", "ean13", "upca", "upce", "qrcode", "datamatrix", "pdf417")
Symbology = Literal["code128", "code39", "itf", "ean13", "upca", "upce", "qrcode", "datamatrix", "pdf417"]
Engine = Literal["zbar", "zxing"]


class CameraProperties(Strict):
    """Asked of the camera where OpenCV supports it; what the camera accepted is reported in its
    health (``properties``: asked / got per property). Omitted: the camera's own setting."""

    width: int | None = Field(default=None, ge=16, le=10_000, description="frame width asked, px")
    height: int | None = Field(default=None, ge=16, le=10_000, description="frame height asked, px")
    fps: float | None = Field(default=None, gt=0, le=1000, description="frames per second asked")
    exposure: float | None = Field(default=None, description="driver units (V4L2: 100 µs steps; <0: log2 s)")
    auto_exposure: bool | None = Field(default=None, description="automatic exposure on/off (off, with a short "
                                                                 "exposure, for sharp bars on a moving belt)")
    gain: float | None = Field(default=None, description="sensor gain, driver units")
    focus: float | None = Field(default=None, description="manual focus position, driver units (with autofocus: "
                                                          "false)")
    autofocus: bool | None = Field(default=None, description="automatic focus on/off (off on a fixed mount)")
    fourcc: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 ]{4}$", description="e.g. MJPG, YUYV")
    buffer_size: int | None = Field(default=None, ge=1, le=64,
                                    description="frames the driver buffers (1 = always the newest; not every "
                                                "driver takes it)")


class CameraConfig(Strict):
    """One camera (or fixed-mount code reader) over the scan zone; each runs in its own process,
    decoding what it sees at a lower priority than the timing process."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$",
                      description="camera name: in the records and on the page, in `sorter camera test NAME` and "
                                  "`sorter calibrate … NAME`, and the default calibration/NAME.json")
    source: str = Field(min_length=1, max_length=500,
                        description="sim://NAME, usb:N or N, rtsp://…, http://…, a video file, a folder of "
                                    "images, serial:/dev/ttyUSB0?baud=115200, reader://HOST:PORT")
    position_mm: float = Field(ge=0, le=100_000, description="belt position at the centre of the view, mm (inside "
                                                             "the scan zone)")
    view_mm: float = Field(default=300, gt=0, le=5000,
                           description="length of belt the camera sees along the travel: a parcel is out of "
                                       "view once its tail is half this past position_mm")
    symbologies: list[Symbology] = Field(default_factory=lambda: list(SYMBOLOGIES),
                                         description="barcode types decoded; fewer is faster. Waybills are mostly "
                                                     "code128; QR codes may carry the waybill too")
    engines: list[Engine] = Field(default_factory=lambda: ["zbar", "zxing"], min_length=1,
                                  description="decoding engines, in order: zxing retries what zbar missed "
                                              "and reads Data Matrix / PDF417")
    nice: int = Field(default=0, ge=0, le=19, description="process priority of the decoder (0 = normal, 19 = "
                                                          "lowest). The timing loop runs SCHED_FIFO and never "
                                                          "waits for a decoder whatever this is; a higher value "
                                                          "only gives the CPU to the service and the page first "
                                                          "(on two cores, 10 starved the decoders: most frames "
                                                          "dropped as stale)")
    max_frame_age_ms: float = Field(default=800, ge=10, le=60_000,
                                    description="a frame older than this when its turn comes is dropped: "
                                                "its parcel is past deciding, and decoding it would only delay the next")
    properties: CameraProperties = Field(default=CameraProperties(),
                                         description="settings asked of the camera (cameras only, not code readers)")
    calibration: Path | None = Field(default=None, description="pixel -> belt mm calibration (`sorter calibrate` "
                                     "writes it), relative to data_dir; default calibration/NAME.json in data_dir, if present")
    read_rate_floor: float = Field(default=0.95, ge=0, le=1, description="alarm when the read rate over the "
                                   "last read_rate_window parcels falls below this (0.95 = 95 %; 0 = never)")
    read_rate_window: int = Field(default=200, ge=10, le=100_000,
                                  description="parcels the read rate is measured over (the alarm needs at least "
                                              "50 of them, or all when fewer)")
    stall_s: float = Field(default=5.0, ge=0.5, le=600, description="a free-running camera that delivers no frame "
                                                                     "for this long is reopened")
    ring_mb: float = Field(default=96, ge=4, le=4096, description="shared-memory frame ring (hand-off + the "
                                                                  "recent frames kept for no-read images)")
    noread_dir: Path | None = Field(default=None, description="where no-read frames are kept, relative to "
                                    "data_dir (default: noreads/ in data_dir)")
    noread_max_mb: float = Field(default=500, ge=1, le=1_000_000, description="oldest no-read images are deleted beyond this")
    reader_symbology: Symbology = Field(default="code128", description="code readers: symbology of a line "
                                        "without an AIM identifier (]C0 …)")
    latency_ms: float = Field(default=0, ge=0, le=5000,
                              description="time from exposure (or a code reader's read) to the frame or line "
                                          "arriving here, ms: subtracted from each capture time, so that reads land "
                                          "on the right parcel (an RTSP camera is 100–300 ms late; at 2 m/s each "
                                          "100 ms is 200 mm): the offset between a parcel's induct edge and where its reads "
                                          "place it, over a few parcels")
    code39_check: Literal["optional", "required"] = Field(
        default="optional", description="Code 39 mod-43 check character: required = a Code 39 read whose last "
                                        "character is not the check of the others is refused (for labels that all "
                                        "carry it); optional = any Code 39 is read, the text as printed")
    itf_lengths: list[int] = Field(default_factory=list, max_length=20,
                                   description="ITF (interleaved 2 of 5) digit counts accepted, e.g. [10, 14]; "
                                               "empty: any even count from 4. ITF misreads are mostly partial "
                                               "scans, so naming the lengths in use removes them")
    itf_check_digit: bool = Field(default=False, description="ITF: the last digit must be the GS1 mod-10 check "
                                                             "(ITF-14, and most carriers' ITF)")
    weak_reads_sort: bool = Field(default=False,
                                  description="a weak read (a 1-D code only one decoding attempt read: likelier "
                                              "wrong) may decide a parcel's chute; false: weak reads are reported "
                                              "and counted but do not sort")

    @field_validator("itf_lengths")
    @classmethod
    def _itf_lengths_even(cls, v: list[int]) -> list[int]:
        bad = [n for n in v if n < 2 or n > 80 or n % 2]
        if bad:
            raise ValueError(f"ITF carries an even number of digits (2–80): {bad} cannot be read")
        return sorted(set(v))

    @model_validator(mode="after")
    def _source_is_known(self) -> "CameraConfig":
        from sorter.controller.config.sources import source_kind

        source_kind(self.source)  # raises ValueError naming the problem
        return self

    def resolved(self, base: Path, data: Path | None = None) -> "CameraConfig":
        """Paths made absolute: a video or image folder source relative to the config file's folder
        ``base``, the calibration and the no-read folder to the data_dir ``data`` (default ``base``).
        The default calibration file ``calibration/NAME.json`` in the data_dir is used when it exists
        (or, from before data_dir, the one next to the config)."""
        data = base if data is None else data
        upd: dict = {}
        if self.calibration is not None:
            upd["calibration"] = data / self.calibration
        elif (data / "calibration" / f"{self.name}.json").exists():
            upd["calibration"] = data / "calibration" / f"{self.name}.json"
        elif (base / "calibration" / f"{self.name}.json").exists():
            upd["calibration"] = base / "calibration" / f"{self.name}.json"
        if self.noread_dir is not None:
            upd["noread_dir"] = data / self.noread_dir
        kind = None
        try:
            from sorter.controller.config.sources import source_kind
            kind = source_kind(self.source)
        except ValueError:
            pass
        if kind in ("video", "folder") and not Path(self.source.removeprefix("file:").split("?")[0]).is_absolute():
            path, _, query = self.source.removeprefix("file:").partition("?")
            upd["source"] = str(base / path) + (f"?{query}" if query else "")
        return self.model_copy(update=upd) if upd else self


def verify_cameras(cfg) -> list[tuple[str, str]]:
    """Checks of the cameras against the line: (key path, problem) pairs."""
    from sorter.controller.config.sources import source_kind

    problems: list[tuple[str, str]] = []
    zone = cfg.line.scan_zone
    for i, cam in enumerate(cfg.cameras):
        if not zone.start_mm <= cam.position_mm <= zone.end_mm:
            problems.append((f"cameras.{i}.position_mm", f"{cam.position_mm} is outside the scan zone"))
        kind = source_kind(cam.source)
        if kind in ("serial", "reader") and cam.properties != CameraProperties():
            problems.append((f"cameras.{i}.properties", "a code reader has no camera properties to set"))
        if cam.calibration is not None and cam.calibration.is_absolute() and not cam.calibration.exists():
            problems.append((f"cameras.{i}.calibration", f"{cam.calibration} does not exist"))
    names = [c.name for c in cfg.cameras]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("cameras", f"camera {dup!r} is defined twice"))
    return problems


def noread_dir(cfg, cam: CameraConfig | None = None) -> Path:
    """Where a camera's no-read frames are kept: ``cameras[].noread_dir`` or ``noreads/`` in the
    data_dir (the service passes it to the worker as ``keep_dir``; the API lists it)."""
    if cam is not None and cam.noread_dir is not None:
        return Path(cam.noread_dir)
    return data_dir(cfg) / "noreads"


def data_dir(cfg) -> Path:
    """The line's data folder (set by the loader); a config built in code without one keeps its
    data beside its records database, as before data_dir."""
    return Path(cfg.data_dir) if getattr(cfg, "data_dir", None) is not None else Path(cfg.records.database).parent
