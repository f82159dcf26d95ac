"""Helpers for the plc tests: socat pty pairs, configs with the fail-safe signals, a raw Modbus TCP
client (not pymodbus), and an asyncio runner with a hard time limit."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def pty_pair(tmp_path: Path):
    """A virtual serial line: two pty ends linked by socat (baud rate is ignored by ptys)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(5)


def run(coro, timeout: float = 30):
    """Run a coroutine on a select()-based loop (as the timing process does), bounded in time."""
    import selectors
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawModbusTcp:
    """A Modbus TCP client in 40 lines of socket code: proves the simulated line speaks Modbus to a
    client that is not pymodbus."""

    def __init__(self, host: str, port: int, unit: int = 1, timeout: float = 2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.unit, self.tid = unit, 0

    def close(self) -> None:
        self.sock.close()

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def request(self, pdu: bytes) -> bytes:
        self.tid = (self.tid + 1) & 0xFFFF
        self.sock.sendall(struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, self.unit) + pdu)
        tid, proto, length, unit = struct.unpack(">HHHB", self._recv(7))
        body = self._recv(length - 1)
        assert tid == self.tid and proto == 0 and unit == self.unit
        return body

    def read_bits(self, fc: int, address: int, count: int) -> list[bool]:
        body = self.request(struct.pack(">BHH", fc, address, count))
        if body[0] & 0x80:
            raise IOError(f"exception {body[1]}")
        data = body[2:2 + body[1]]
        return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]

    def read_regs(self, fc: int, address: int, count: int) -> list[int]:
        body = self.request(struct.pack(">BHH", fc, address, count))
        if body[0] & 0x80:
            raise IOError(f"exception {body[1]}")
        return list(struct.unpack(f">{count}H", body[2:2 + 2 * count]))

    def write_coil(self, address: int, on: bool) -> bytes:
        return self.request(struct.pack(">BHH", 5, address, 0xFF00 if on else 0))

    def write_reg(self, address: int, value: int) -> bytes:
        return self.request(struct.pack(">BHH", 6, address, value))


# the example's own fail-safe lines (plc: and io:), replaced by FAILSAFE_IO / FAILSAFE_PLC
FAILSAFE_LINES = ("heartbeat:", "tower:", "tower_", "buzzer:", "estop_signal:", "estop_ok:", "run_signal:",
                  "belt_running:", "reset_signal:", "reset_button:", "induct_enable:", "drain_s:", "# fail safe:",
                  "# watchdog time", "# the line's own signals", "# and the heartbeat the PLC")

FAILSAFE_IO = """
  heartbeat: {table: holding_register, address: 100}
  tower_green: {table: coil, address: 40}
  tower_amber: {table: coil, address: 41}
  tower_red: {table: coil, address: 42}
  estop_ok: {table: discrete_input, address: 60}
  belt_running: {table: discrete_input, address: 61}
  induct_enable: {table: coil, address: 43}
  latch_head_seq: {table: input_register, address: 2}
  latch_tail_seq: {table: input_register, address: 3}
  latch_head_count: {table: input_register, address: 4, words: 2}
  latch_tail_count: {table: input_register, address: 6, words: 2}
"""

FAILSAFE_PLC = """
  heartbeat: {signal: heartbeat, period_ms: HB_MS}
  tower: {green: tower_green, amber: tower_amber, red: tower_red}
  estop_signal: estop_ok
  run_signal: belt_running
  induct_enable: induct_enable
LATCH"""

LATCH_PLC = "  latch: {head_seq: latch_head_seq, head_count: latch_head_count, tail_seq: latch_tail_seq, tail_count: latch_tail_count}\n"


def line_config(tmp_path: Path, failsafe: bool = True, latch: bool = True, hb_ms: float = 10,
                watchdog_ms: float = 30, sim_latch: bool = True, extra_sim: str = "",
                source: str = "config/wenling-line1.yaml") -> Path:
    """The example line in tmp_path (own databases, any free Modbus port), optionally with the
    fail-safe signals, the encoder latch and the heartbeat watchdog. `source`: the example to start
    from (config/wenling-line1-plc-tracking.yaml for PLC-tracking mode)."""
    text = (ROOT / source).read_text(encoding="utf-8")
    # start from the example without its encoder latch and its fail-safe signals: each test says
    # whether it wants them
    text = "\n".join(l for l in text.split("\n")
                     if not l.lstrip().startswith(("latch_", "latch:", "# the counter module latches",
                                                   "# use the latched counts") + FAILSAFE_LINES))
    text = text.replace("manifest: manifest.db", f"manifest: {tmp_path / 'manifest.db'}")
    text = text.replace("database: records.db", f"database: {tmp_path / 'records.db'}")
    text = text.replace("modbus_port: 1502", "modbus_port: 0")
    for name in os.listdir(ROOT / "config"):
        if name.endswith(".yaml") and "line" not in name:
            (tmp_path / name).write_text((ROOT / "config" / name).read_text(encoding="utf-8"), encoding="utf-8")
    if failsafe:
        text = text.replace("\nio:\n", "\nio:\n" + FAILSAFE_IO.lstrip("\n"), 1)
        plc = FAILSAFE_PLC.replace("HB_MS", str(hb_ms)).replace("LATCH", LATCH_PLC if latch else "")
        text = text.replace("  poll_hz: 1000\n", "  poll_hz: 1000\n" + plc.lstrip("\n"), 1)
        text = text.replace("sim:\n", f"sim:\n  watchdog_ms: {watchdog_ms}\n  latch: {str(sim_latch).lower()}\n{extra_sim}", 1)
    elif extra_sim:
        text = text.replace("sim:\n", f"sim:\n{extra_sim}", 1)
    path = tmp_path / "line.yaml"
    path.write_text(text, encoding="utf-8")
    return path
