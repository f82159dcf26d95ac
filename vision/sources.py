"""Camera sources: where a worker's frames come from. Each yields (capture_mono, grey frame).

- `tcp://HOST:PORT/NAME`: the simulated line's triggered cameras (plc/sim/frames.py protocol);
- a folder of images or a video file: replay, for tests and for reproducing a problem;
- a device index (`0`, `1` ...): a USB camera through OpenCV.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

HEADER = struct.Struct("!4sdII")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class SourceError(Exception):
    """The source cannot deliver frames (gone, unreachable, ended)."""


class NoFrame(Exception):
    """No frame within the wait: the camera is idle (a triggered camera with no parcel)."""


class SimCameraSource:
    def __init__(self, url: str, timeout_s: float = 5.0, idle_s: float = 0.1):
        u = urlparse(url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 0)
        self.name = u.path.strip("/")
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.sock: socket.socket | None = None

    def open(self) -> None:
        try:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout_s)
        except OSError as exc:
            raise SourceError(f"camera {self.name} at {self.addr}: {exc}") from exc
        self.sock.sendall(self.name.encode() + b"\n")
        self.sock.settimeout(None)

    def pending(self) -> bool:
        """A frame is already waiting: the worker is behind."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def _exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise SourceError(f"camera {self.name}: stream closed")
            got += k
        return bytes(buf)

    def read(self) -> tuple[float, np.ndarray]:
        # triggered camera: no parcel, no frame
        if not select.select([self.sock], [], [], self.idle_s)[0]:
            raise NoFrame()
        magic, t, h, w = HEADER.unpack(self._exact(HEADER.size))
        if magic != b"FRM1" or not (0 < h <= 10000 and 0 < w <= 10000):
            raise SourceError(f"camera {self.name}: bad frame header")
        return t, np.frombuffer(self._exact(h * w), dtype=np.uint8).reshape(h, w)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class FolderSource:
    """Every image in a folder, in name order, once; capture time is when it is read."""

    def __init__(self, path: str, fps: float = 10.0):
        self.path, self.period = Path(path), 1.0 / fps
        self.files: list[Path] = []

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: not a folder")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def read(self) -> tuple[float, np.ndarray]:
        while self.files:
            f = self.files.pop(0)
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                time.sleep(self.period)
                return time.monotonic(), img
        raise SourceError(f"{self.path}: no more images")

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        self.files = []


class OpenCVSource:
    """A USB camera (device index), a video file, or an RTSP/HTTP stream."""

    def __init__(self, spec: str):
        self.spec = spec
        self.cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        target = int(self.spec) if self.spec.isdigit() else self.spec
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open camera source {self.spec!r}")

    def read(self) -> tuple[float, np.ndarray]:
        ok, frame = self.cap.read()
        t = time.monotonic()
        if not ok or frame is None:
            raise SourceError(f"{self.spec}: no frame")
        return t, (cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def open_source(spec: str):
    if spec.startswith("tcp://"):
        return SimCameraSource(spec)
    if Path(spec).is_dir():
        return FolderSource(spec)
    return OpenCVSource(spec)
