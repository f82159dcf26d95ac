"""Every message that crosses a process boundary: pipes and queues between the service, the timing
process, the camera workers and the simulated line.

They are NamedTuples: cheap to pickle (the timing process sends and receives them every few
milliseconds), read by name on both ends, and dispatched on their type. This module imports
nothing from sorter, so every layer may use it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# ------------------------------------------------------------------ service -> timing process


class Read(NamedTuple):
    """One decoded barcode, as the tracker matches it to a parcel."""
    camera: str
    symbology: str
    text: str
    capture_mono: float
    offset_mm: float | None = None  # along the belt from the camera's centre line (calibrated cameras)


class Watermark(NamedTuple):
    """`camera` has decoded everything it captured up to `mono`: reads older than this are complete."""
    camera: str
    mono: float


class SetChuteEnabled(NamedTuple):
    chute_id: str
    enabled: bool


class SetPaused(NamedTuple):
    paused: bool


class InstallRouting(NamedTuple):
    """A routing state parsed and validated in the service process, swapped in between two parcels."""
    state: Any


class Stop(NamedTuple):
    """Go to the safe state and end (the process, or the simulated line's run)."""


# ------------------------------------------------------------------ timing process -> service


class Hello(NamedTuple):
    info: dict  # {"policy": "fifo" | "normal", "pid": int}


class Record(NamedTuple):
    """A parcel's record: at induct (the journal row) or with its outcome."""
    record: dict


class TimingStatus(NamedTuple):
    status: dict


# ------------------------------------------------------------------ camera worker -> service


class CameraUp(NamedTuple):
    camera: str
    source: str


class CameraDown(NamedTuple):
    camera: str
    error: str


class CameraIdle(NamedTuple):
    """No frame to decode; everything the camera captured up to `mono` has been decoded."""
    camera: str
    mono: float


class CameraHealthReport(NamedTuple):
    camera: str
    health: dict


class FrameReads(NamedTuple):
    """What one frame held. `codes`: (symbology, text, polygon[, offset_mm]) each."""
    camera: str
    capture_mono: float
    decode_ms: float
    shape: tuple | None
    codes: list
    dropped: int
    watermark: float


# ------------------------------------------------------------------ service -> camera worker


class ParcelWindow(NamedTuple):
    """A parcel passed the scan zone in [lo_mono, hi_mono]: the camera counts its reads of it."""
    run_id: str
    parcel_id: int
    lo_mono: float
    hi_mono: float


class KeepFrames(NamedTuple):
    """A no-read parcel: keep the frames the camera took of it in [lo_mono, hi_mono]."""
    run_id: str
    parcel_id: int
    lo_mono: float
    hi_mono: float


# ------------------------------------------------------------------ wiring <-> simulated line


class SimReady(NamedTuple):
    """The simulated line (or its camera server) listens on `port`."""
    port: int


class SimStart(NamedTuple):
    t0_mono: float


class SimReportRequest(NamedTuple):
    pass


class SimReport(NamedTuple):
    report: dict


class SimOutage(NamedTuple):
    """The I/O module disappears for `seconds`, then comes back."""
    seconds: float


class SimOutageDone(NamedTuple):
    pass


class SimForce(NamedTuple):
    """Hold input `signal` at `value` (None: release it)."""
    signal: str
    value: int | None


class SimRefuse(NamedTuple):
    """The I/O module refuses writes to these signals (a device exception)."""
    signals: tuple


class SimFailed(NamedTuple):
    """The simulated line could not start (e.g. its port is taken): what to tell the user."""
    error: str
