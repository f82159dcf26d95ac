"""Serial relay boards driven with pyserial: the common USB relay modules ("LCUS-1/2/4", CH340).

Protocol (documented by the vendors, 9600 8N1):

    switch:  A0 <channel 1..n> <state 0|1> <sum>     sum = (0xA0 + channel + state) & 0xFF
    status:  FF          -> some boards answer one text line per channel, `CH1:ON` / `CH2: OFF`
                            (ends with \\r\\n); most answer nothing at all

The switch command gets no answer, ever: a write that reached the serial driver is all we know. A
board with `query: true` can be read back with the status query; one without cannot, and a lost
board is only noticed when the serial device itself fails (USB unplugged: EIO).
"""

from __future__ import annotations

import asyncio
import re
import time

import serial

from sorter.controller.config.plc import RelayBoard
from sorter.plc.modbus_io import LinkDown, NoAnswer

STATUS_RE = re.compile(rb"CH(\d+)\s*:\s*(ON|OFF)", re.I)


def frame(channel: int, state: bool) -> bytes:
    """The 4-byte switch command."""
    s = 1 if state else 0
    return bytes((0xA0, channel, s, (0xA0 + channel + s) & 0xFF))


def parse_frame(data: bytes) -> tuple[int, bool] | None:
    """(channel, state) of a valid switch command, or None (bad header, state or sum)."""
    if len(data) != 4 or data[0] != 0xA0 or data[2] not in (0, 1) or (data[0] + data[1] + data[2]) & 0xFF != data[3]:
        return None
    return data[1], bool(data[2])


def parse_status(text: bytes) -> dict[int, bool]:
    return {int(ch): st.upper() == b"ON" for ch, st in STATUS_RE.findall(text)}


class RelayBoardIO:
    def __init__(self, cfg: RelayBoard):
        self.cfg = cfg
        self.ser: serial.Serial | None = None
        self.errors = 0
        self.written: dict[int, bool] = {}  # what we last told each channel

    @property
    def connected(self) -> bool:
        return self.ser is not None and self.ser.is_open

    def connect(self) -> bool:
        self.close()
        try:
            self.ser = serial.Serial(self.cfg.port, self.cfg.baud, timeout=0, write_timeout=self.cfg.timeout_s)
        except (serial.SerialException, OSError):
            self.ser = None
            return False
        return True

    def close(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except (serial.SerialException, OSError):
                pass
            self.ser = None

    def write_lead_s(self) -> float:
        """From the write call to the board switching: the 4 bytes on the wire."""
        return 4 * 10 / self.cfg.baud

    async def write(self, channel: int, state: bool) -> None:
        if not self.connected:
            raise LinkDown(f"relay board {self.cfg.name} ({self.cfg.port}): not open")
        try:
            n = self.ser.write(frame(channel, state))
        except serial.SerialTimeoutException as exc:
            self.errors += 1
            raise NoAnswer(f"relay board {self.cfg.name}: write timed out (state unknown)") from exc
        except (serial.SerialException, OSError) as exc:
            self.errors += 1
            self.close()
            raise LinkDown(f"relay board {self.cfg.name} ({self.cfg.port}): {exc}") from exc
        if n != 4:
            self.errors += 1
            raise NoAnswer(f"relay board {self.cfg.name}: only {n} of 4 bytes written (state unknown)")
        self.written[channel] = bool(state)

    async def status(self) -> dict[int, bool]:
        """Ask the board for every channel's state (boards with `query: true`)."""
        if not self.cfg.query:
            raise NoAnswer(f"relay board {self.cfg.name} cannot be read back (query: false)")
        if not self.connected:
            raise LinkDown(f"relay board {self.cfg.name} ({self.cfg.port}): not open")
        try:
            self.ser.reset_input_buffer()
            self.ser.write(b"\xff")
            buf = b""
            end = time.monotonic() + self.cfg.timeout_s
            while time.monotonic() < end:
                n = self.ser.in_waiting
                if n:
                    buf += self.ser.read(n)
                    got = parse_status(buf)
                    if len(got) >= self.cfg.channels and buf.endswith(b"\n"):
                        return got
                await asyncio.sleep(0.002)
        except (serial.SerialException, OSError) as exc:
            self.errors += 1
            self.close()
            raise LinkDown(f"relay board {self.cfg.name} ({self.cfg.port}): {exc}") from exc
        got = parse_status(buf)
        if got:
            return got
        self.errors += 1
        raise NoAnswer(f"relay board {self.cfg.name}: no answer to the status query within "
                       f"{self.cfg.timeout_s * 1000:.0f} ms")

    async def read(self, channel: int) -> int:
        st = await self.status()
        if channel not in st:
            raise NoAnswer(f"relay board {self.cfg.name}: status has no channel {channel}")
        return int(st[channel])
