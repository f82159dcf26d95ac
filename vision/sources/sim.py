"""The simulated line's cameras: a TCP client of plc/sim/frames.py, one connection per camera.

Triggered (a frame per parcel, heartbeats carrying a watermark in between) unless the spec says
``?free_running=1``. A frame goes from the socket straight into the worker's shared-memory buffer:
no copy at the simulator's frame rates.
"""

from __future__ import annotations

import select
import socket
import struct
from urllib.parse import parse_qs, urlparse

import numpy as np

from sorter.vision.sources.base import Alloc, NoFrame, SourceError

HEADER = struct.Struct("!4sdII")


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
