"""Camera sources: where a worker's frames (or a code reader's reads) come from.

Every source has ``open()``, ``read(alloc)``, ``pending()``, ``close()`` and these attributes:
``kind``, ``free_running`` (a camera that should deliver frames all the time: silence means it
stalled) and ``accepted`` (the camera properties asked and what the camera reported back).

``read(alloc)`` returns ``(capture_mono, frame)`` for cameras, where the grey frame was written into
``alloc(height, width)`` when a buffer is offered (the worker's shared-memory ring: no copy), or
``(capture_mono, Reads)`` for code readers. It raises :class:`NoFrame` when nothing came within
its short wait (an idle triggered camera) and :class:`SourceError` when the source is gone.

Specs (see vision/config.py): ``tcp://HOST:PORT/NAME`` (the simulated line's cameras), ``N`` or
``usb:N`` (USB by index), ``rtsp://``/``http(s)://`` (IP camera), a video file or ``file:PATH``, a
folder of images, ``serial:DEVICE?baud=N`` and ``reader://HOST:PORT`` (fixed-mount code readers
sending one read per text line). Query options: ``fps`` and ``loop`` for replays, ``baud`` for
serial, ``symbology`` for readers.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from sorter.controller.config.sources import VIDEO_SUFFIXES, source_kind, split_spec

HEADER = struct.Struct("!4sdII")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".webp"}
KINDS = ("sim", "usb", "stream", "video", "folder", "serial", "reader")

Alloc = Callable[[int, int], np.ndarray] | None


class SourceError(Exception):
    """The source cannot deliver frames (gone, unreachable, ended)."""


class NoFrame(Exception):
    """No frame within the wait: the camera is idle (a triggered camera with no parcel).

    `watermark`, when the source knows it, is a capture time before which it will deliver no more
    frames (the simulated cameras send it as a heartbeat); None means the source cannot say.
    """

    def __init__(self, watermark: float | None = None):
        super().__init__("no frame")
        self.watermark = watermark


@dataclass
class Reads:
    """What a code reader sent: (symbology, text) pairs, already validated; `noread` lines counted."""

    codes: list[tuple[str, str]] = field(default_factory=list)
    noread: int = 0


# ---------------------------------------------------------------------------------------------- sim


class SimCameraSource:
    """The simulated line's triggered cameras (plc/sim/frames.py protocol)."""

    kind, free_running = "sim", False

    def __init__(self, url: str, timeout_s: float = 5.0, idle_s: float = 0.1):
        u = urlparse(url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 0)
        self.name = u.path.strip("/")
        # ?free_running=1: the simulated camera takes frames at a fixed rate (sim.camera_mode), so a
        # frame is not a parcel and silence is a stall
        flag = (parse_qs(u.query).get("free_running") or ["0"])[0].lower()
        self.free_running = flag in ("1", "true", "yes")
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.sock: socket.socket | None = None
        self.accepted: dict = {}

    def open(self) -> None:
        try:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout_s)
            self.sock.sendall(self.name.encode() + b"\n")
        except OSError as exc:
            raise SourceError(f"camera {self.name} at {self.addr[0]}:{self.addr[1]}: {exc}") from exc
        self.sock.settimeout(None)

    def pending(self) -> bool:
        """A frame is already waiting: the worker is behind."""
        return self.sock is not None and bool(select.select([self.sock], [], [], 0)[0])

    def _exact_into(self, view: memoryview) -> None:
        got, n = 0, len(view)
        while got < n:
            try:
                k = self.sock.recv_into(view[got:])
            except OSError as exc:
                raise SourceError(f"camera {self.name}: {exc}") from exc
            if k == 0:
                raise SourceError(f"camera {self.name}: stream closed")
            got += k

    def read(self, alloc: Alloc = None) -> tuple[float, np.ndarray]:
        # triggered camera: no parcel, no frame
        if not select.select([self.sock], [], [], self.idle_s)[0]:
            raise NoFrame()
        hdr = bytearray(HEADER.size)
        self._exact_into(memoryview(hdr))
        magic, t, h, w = HEADER.unpack(hdr)
        if magic == b"BEAT":
            raise NoFrame(watermark=t)
        if magic != b"FRM1" or not (0 < h <= 10000 and 0 < w <= 10000):
            raise SourceError(f"camera {self.name}: bad frame header")
        frame = alloc(h, w) if alloc is not None else np.empty((h, w), np.uint8)
        # straight from the socket into the (shared-memory) frame buffer
        self._exact_into(memoryview(frame).cast("B"))
        return t, frame

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# --------------------------------------------------------------------------------------- replays


class FolderSource:
    """Every image in a folder, in name order (``loop=1``: again and again); ``fps`` paces it."""

    kind, free_running = "folder", False

    def __init__(self, path: str, fps: float = 10.0, loop: bool = False):
        self.path, self.period, self.loop = Path(path), 1.0 / fps, loop
        self.files: list[Path] = []
        self.queue: list[Path] = []
        self.accepted: dict = {}
        self.next_t = 0.0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: not a folder")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.path}: no images")
        self.queue = list(self.files)
        self.next_t = time.monotonic()

    def read(self, alloc: Alloc = None) -> tuple[float, np.ndarray]:
        while True:
            if not self.queue:
                if not self.loop:
                    raise SourceError(f"{self.path}: no more images")
                self.queue = list(self.files)
            f = self.queue.pop(0)
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            wait = self.next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)
            t = time.monotonic()
            if alloc is not None:
                out = alloc(*img.shape)
                out[...] = img
                img = out
            return t, img

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        self.queue = []


# OpenCV property ids by our names; what a camera accepted is read back after setting
_PROPS = {
    "width": cv2.CAP_PROP_FRAME_WIDTH,
    "height": cv2.CAP_PROP_FRAME_HEIGHT,
    "fps": cv2.CAP_PROP_FPS,
    "exposure": cv2.CAP_PROP_EXPOSURE,
    "auto_exposure": cv2.CAP_PROP_AUTO_EXPOSURE,
    "gain": cv2.CAP_PROP_GAIN,
    "focus": cv2.CAP_PROP_FOCUS,
    "autofocus": cv2.CAP_PROP_AUTOFOCUS,
    "fourcc": cv2.CAP_PROP_FOURCC,
    "buffer_size": cv2.CAP_PROP_BUFFERSIZE,
}


def _fourcc_text(v: float) -> str:
    n = int(v)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4)) if n > 0 else ""


class OpenCVSource:
    """A USB camera (device index), an RTSP/HTTP stream, or a video file, through OpenCV.

    A video file is paced at its own fps (or ``?fps=``) so that it stands in for a live camera;
    ``?loop=1`` replays it endlessly."""

    def __init__(self, spec: str, properties: dict | None = None):
        self.spec = spec
        self.kind = source_kind(spec)
        base, self.opts = split_spec(spec)
        if self.kind == "usb":
            self.target: int | str = int(base.removeprefix("usb:"))
        elif self.kind == "video":
            self.target = base.removeprefix("file:")
        else:
            self.target = spec  # streams keep their query string
        self.free_running = self.kind in ("usb", "stream")
        self.properties = {k: v for k, v in (properties or {}).items() if v is not None}
        self.loop = self.opts.get("loop", "0") not in ("0", "false", "no", "")
        self.cap: cv2.VideoCapture | None = None
        self.accepted: dict = {}
        self.period = 0.0
        self.next_t = 0.0
        self._bgr: np.ndarray | None = None

    def open(self) -> None:
        if self.kind == "video" and not Path(self.target).is_file():
            raise SourceError(f"video file {self.target!r} does not exist")
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera source {self.spec!r}")
        self.cap = cap
        self.accepted = self.apply_properties(self.properties)
        if self.kind == "video":
            fps = float(self.opts.get("fps") or cap.get(cv2.CAP_PROP_FPS) or 10.0)
            self.period = 1.0 / max(0.1, min(fps, 1000.0))
        self.next_t = time.monotonic()

    def apply_properties(self, props: dict) -> dict:
        """Set what was asked (in an order that works for most drivers: format, size, fps, then
        the exposure/focus controls) and report, per property, what was asked, whether the driver
        took it and what it reports now."""
        out: dict = {}
        order = ["fourcc", "width", "height", "fps", "buffer_size", "auto_exposure", "exposure", "gain",
                 "autofocus", "focus"]
        for key in order:
            if key not in props:
                continue
            asked = props[key]
            pid = _PROPS[key]
            if key == "fourcc":
                value = cv2.VideoWriter_fourcc(*str(asked))
            elif key == "auto_exposure":
                value = 0.75 if asked else 0.25  # V4L2 convention in OpenCV
            elif isinstance(asked, bool):
                value = 1.0 if asked else 0.0
            else:
                value = float(asked)
            try:
                ok = bool(self.cap.set(pid, value))
            except cv2.error:
                ok = False
            got = self.cap.get(pid)
            got_v = _fourcc_text(got) if key == "fourcc" else (round(got, 3) if got != -1 else None)
            out[key] = {"asked": asked, "set": ok, "got": got_v,
                        "accepted": bool(ok and (got_v == asked or key in ("auto_exposure", "autofocus")
                                                 or (isinstance(got_v, float) and isinstance(asked, (int, float))
                                                     and abs(got_v - float(asked)) <= max(0.01, 0.02 * abs(float(asked))))))}
        # what the camera delivers, asked for or not
        out["_actual"] = {"width": int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          "height": int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                          "fps": round(float(self.cap.get(cv2.CAP_PROP_FPS)), 2),
                          "backend": self.cap.getBackendName() if hasattr(self.cap, "getBackendName") else ""}
        return out

    def read(self, alloc: Alloc = None) -> tuple[float, np.ndarray]:
        if self.period:
            wait = self.next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)
        ok, frame = self.cap.read(self._bgr)
        t = time.monotonic()
        if (not ok or frame is None) and self.kind == "video" and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read(self._bgr)
        if not ok or frame is None:
            raise SourceError(f"{self.spec}: {'end of video' if self.kind == 'video' else 'no frame'}")
        self._bgr = frame  # decoded into the same buffer next time
        h, w = frame.shape[:2]
        out = alloc(h, w) if alloc is not None else np.empty((h, w), np.uint8)
        if frame.ndim == 3:
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=out)
        else:
            out[...] = frame
        return t, out

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


# ---------------------------------------------------------------------------------- code readers

# AIM symbology identifiers (ISO/IEC 15424) that readers put before the data when so configured
_AIM = {"C": "code128", "A": "code39", "I": "itf", "E": "ean13", "Q": "qrcode", "d": "datamatrix", "L": "pdf417"}
_NOREAD = {"noread", "no read", "no_read", "error", "?", "nr"}


def parse_reader_line(line: bytes, default_symbology: str = "code128") -> tuple[str, str] | None:
    """One line from a code reader -> (symbology, text), or None for a no-read line or garbage.
    Accepts an AIM identifier prefix (``]C0``, ``]E0``, ``]Q1`` …); EAN-13 that comes as 12 digits
    after ``]E0`` is UPC-A in the reader's eyes and is reported as ``upca``."""
    from sorter.vision.decode import qr_bytes_to_text, validate

    raw = line.strip(b"\r\n\x00 \t\x02\x03")
    if not raw or len(raw) > 4096:
        return None
    sym = default_symbology
    if raw[:1] == b"]" and len(raw) >= 3 and chr(raw[1]) in _AIM:
        sym = _AIM[chr(raw[1])]
        raw = raw[3:]
    text = qr_bytes_to_text(raw) if sym in ("qrcode", "datamatrix", "pdf417") else raw.decode("latin-1")
    if text.strip().lower() in _NOREAD:
        return None
    if sym == "ean13" and len(text) == 12:
        sym = "upca"
    if any(ord(c) < 0x20 and c not in "\t" for c in text) and sym not in ("qrcode", "datamatrix", "pdf417"):
        return None
    if not validate(sym, text):
        return None
    return sym, text


class _LineReader:
    """Shared line framing: bytes in, complete lines out; a line longer than 4 KiB is discarded."""

    free_running = False

    def __init__(self, symbology: str, idle_s: float):
        self.symbology, self.idle_s = symbology, idle_s
        self.buf = bytearray()
        self.accepted: dict = {}

    def _lines(self) -> list[bytes]:
        out = []
        while True:
            i = min((k for k in (self.buf.find(b"\n"), self.buf.find(b"\r")) if k >= 0), default=-1)
            if i < 0:
                if len(self.buf) > 4096:
                    self.buf.clear()
                return out
            out.append(bytes(self.buf[:i]))
            del self.buf[: i + 1]

    def _recv(self) -> bytes:
        raise NotImplementedError

    def read(self, alloc: Alloc = None) -> tuple[float, Reads]:
        chunk = self._recv()
        t = time.monotonic()
        if chunk:
            self.buf += chunk
        reads = Reads()
        for ln in self._lines():
            if not ln.strip():
                continue
            got = parse_reader_line(ln, self.symbology)
            if got is None:
                reads.noread += 1
            else:
                reads.codes.append(got)
        if not reads.codes and not reads.noread:
            raise NoFrame()
        return t, reads

    def pending(self) -> bool:
        return False


class SerialReaderSource(_LineReader):
    """A fixed-mount code reader on a serial port (``serial:/dev/ttyUSB0?baud=115200``)."""

    kind = "serial"

    def __init__(self, spec: str, symbology: str = "code128", idle_s: float = 0.1):
        base, opts = split_spec(spec)
        super().__init__(opts.get("symbology", symbology), idle_s)
        self.device = base.removeprefix("serial:").removeprefix("//")
        self.baud = int(opts.get("baud", 115200))
        self.port = None

    def open(self) -> None:
        import serial  # pyserial

        try:
            self.port = serial.Serial(self.device, self.baud, timeout=self.idle_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"code reader {self.device}: {exc}") from exc
        self.accepted = {"_actual": {"device": self.device, "baud": self.port.baudrate}}

    def _recv(self) -> bytes:
        import serial

        try:
            first = self.port.read(1)  # waits up to idle_s
            if not first:
                return b""
            return first + self.port.read(self.port.in_waiting or 0)
        except (serial.SerialException, OSError) as exc:
            raise SourceError(f"code reader {self.device}: {exc}") from exc

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:  # noqa: BLE001
                pass
            self.port = None


class TcpReaderSource(_LineReader):
    """A fixed-mount code reader that sends its reads as text lines over TCP (``reader://HOST:PORT``)."""

    kind = "reader"

    def __init__(self, spec: str, symbology: str = "code128", idle_s: float = 0.1, timeout_s: float = 5.0):
        base, opts = split_spec(spec)
        super().__init__(opts.get("symbology", symbology), idle_s)
        u = urlparse(base)
        self.addr = (u.hostname or "127.0.0.1", u.port or 0)
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None

    def open(self) -> None:
        try:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout_s)
        except OSError as exc:
            raise SourceError(f"code reader {self.addr[0]}:{self.addr[1]}: {exc}") from exc
        self.sock.settimeout(None)
        self.accepted = {"_actual": {"address": f"{self.addr[0]}:{self.addr[1]}"}}

    def _recv(self) -> bytes:
        if not select.select([self.sock], [], [], self.idle_s)[0]:
            return b""
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise SourceError(f"code reader {self.addr[0]}:{self.addr[1]}: {exc}") from exc
        if not data:
            raise SourceError(f"code reader {self.addr[0]}:{self.addr[1]}: connection closed")
        return data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_source(spec: str, properties: dict | None = None, reader_symbology: str = "code128"):
    """A source object for ``spec`` (not yet opened)."""
    kind = source_kind(spec)
    if kind == "sim":
        if spec.startswith("sim://"):
            raise SourceError(f"{spec}: the simulated cameras exist only under `sorter sim`")
        return SimCameraSource(spec)
    if kind == "folder":
        base, opts = split_spec(spec)
        return FolderSource(base, fps=float(opts.get("fps", 10.0)), loop=opts.get("loop", "0") not in ("0", ""))
    if kind == "serial":
        return SerialReaderSource(spec, reader_symbology)
    if kind == "reader":
        return TcpReaderSource(spec, reader_symbology)
    return OpenCVSource(spec, properties)
