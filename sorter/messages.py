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
    weak: bool = False  # only one decoding attempt made it: on the record; sorts only if the camera allows


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


class ResetLine(NamedTuple):
    """A person says the line is safe again after an emergency stop (page, API, reset input)."""
    who: str = ""


class SetTestMode(NamedTuple):
    """A technician switches a commissioning test mode from the page: off, round_robin, fixed."""
    mode: str
    chute: str | None = None
    who: str = ""


class SilenceBuzzer(NamedTuple):
    """A person acknowledged the alarms: the tower's buzzer stops until the tower turns red again."""
    who: str = ""


class Stop(NamedTuple):
    """Go to the safe state and end (the process, or the simulated line's run). `drain_s`: first stop
    induction and let the parcels in flight finish, for at most this long."""
    drain_s: float = 0.0


# ------------------------------------------------------------------ timing process -> service


class Hello(NamedTuple):
    info: dict  # {"policy": "fifo" | "normal", "pid": int}


class Inducted(NamedTuple):
    """A parcel entered the belt: its journal row is opened, to be closed by its Record."""
    run_id: str
    parcel_id: int
    induct_wall: float
    latch_seq: int | None = None  # the latch's head-edge count accounted for, this parcel included


class Record(NamedTuple):
    """A parcel's record, with its outcome (closes its journal row)."""
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


class SetCameraProperties(NamedTuple):
    """Commissioning (the technician page): ask the camera for these properties now (exposure, gain,
    focus, width, height ...); what it accepted comes back in its health's ``properties``."""
    properties: dict


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


class SimByHand(NamedTuple):
    """Someone at the belt: takes parcel `take_off` off it (-1: the one last inducted that is past
    the eye), and/or puts a parcel of `length_mm` on it with its head at `put_on_mm` (-1: where
    the one taken off was)."""
    take_off: int | None = None
    put_on_mm: float | None = None
    length_mm: float = 300.0


class SimByHandDone(NamedTuple):
    """What was done: the parcel taken off (None: none was on the belt) and the one put on."""
    taken_off: int | None
    put_on: int | None


class SimFailed(NamedTuple):
    """The simulated line could not start (e.g. its port is taken): what to tell the user."""
    error: str


# ------------------------------------------------------------------ simulated line -> simulated cameras


class SimClockChange(NamedTuple):
    """The line's `belt` or `infeed` clock stopped (running False) or ran again at t_mono."""
    clock: str
    running: bool
    t_mono: float


class SimEntered(NamedTuple):
    """Parcel `index` of the plan crossed the induct eye (head first) at t_mono."""
    index: int
    t_mono: float


class SimHeld(NamedTuple):
    """Parcel `index` never enters (the PLC's watchdog held it back)."""
    index: int


class SimLineNews(NamedTuple):
    """What moved the parcels since the last news, in time order, and `line_mono`: the line has told
    everything that happened up to that moment (a watermark the camera frames wait for)."""
    events: tuple
    line_mono: float
