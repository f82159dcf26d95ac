"""Fixed-mount code readers: devices that decode by themselves and send one read per text line, on
a serial port or over TCP.

A line may start with an AIM symbology identifier (``]C0`` ...); every read passes the same text
checks as the camera decoder's (sorter.vision.decode), so a reader's garbage is refused the same
way. The line framing is shared; only the byte transport differs.
"""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlparse

from sorter.controller.config.sources import split_spec
from sorter.vision.sources.base import Alloc, NoFrame, Reads, SourceError

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
