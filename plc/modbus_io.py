"""Direct I/O over Modbus TCP: read the line's inputs in bulk, write diverter outputs.

One connection, one owner: the timing loop awaits every call, so no two requests are ever in flight
on the connection (pymodbus mixes up replies otherwise). "The device said no" (an exception
response) and "the link failed" (timeout, disconnect) are different errors: after the second, the
state of an output is unknown.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from controller.config import Signal

log = logging.getLogger(__name__)

MAX_BITS, MAX_REGS = 2000, 125  # Modbus limits for one read


class DeviceRefused(Exception):
    """The device answered with a Modbus exception (bad address, busy...)."""


class LinkDown(Exception):
    """No answer or no connection: what the device did is unknown."""


@dataclass(frozen=True)
class ReadBlock:
    unit: int
    table: str
    address: int
    count: int
    signals: tuple[tuple[str, int, int], ...]  # (name, offset, words)


def plan_reads(io: dict[str, Signal], tables=("discrete_input", "input_register", "holding_register")) -> list[ReadBlock]:
    """Group input signals into as few contiguous reads as the Modbus limits allow."""
    blocks: list[ReadBlock] = []
    groups: dict[tuple[int, str], list[tuple[str, Signal]]] = {}
    for name, s in io.items():
        if s.table in tables:
            groups.setdefault((s.unit, s.table), []).append((name, s))
    for (unit, table), sigs in sorted(groups.items()):
        sigs.sort(key=lambda x: x[1].address)
        limit = MAX_BITS if table == "discrete_input" else MAX_REGS
        start, members = None, []
        for name, s in sigs:
            end = s.address + s.words
            if start is None or end - start > limit:
                if members:
                    blocks.append(_block(unit, table, start, members))
                start, members = s.address, []
            members.append((name, s))
        if members:
            blocks.append(_block(unit, table, start, members))
    return blocks


def _block(unit, table, start, members) -> ReadBlock:
    end = max(s.address + s.words for _, s in members)
    return ReadBlock(unit, table, start, end - start,
                     tuple((n, s.address - start, s.words) for n, s in members))


def parse_url(url: str) -> tuple[str, int]:
    u = urlparse(url)
    if u.scheme != "tcp" or not u.hostname:
        raise ValueError(f"plc url {url!r}: expected tcp://HOST:PORT")
    return u.hostname, u.port or 502


class ModbusIO:
    def __init__(self, url: str, io: dict[str, Signal], timeout_s: float = 0.25):
        self.url = url
        self.host, self.port = parse_url(url)
        self.io = io
        self.timeout_s = timeout_s
        self.blocks = plan_reads(io)
        self.client: AsyncModbusTcpClient | None = None
        self.errors = 0
        self.sample_mono: dict[str, float] = {}  # table -> when the device most likely sampled it

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def connect(self) -> bool:
        self.close()
        # the timing loop reconnects with its own backoff; the client must not retry behind its back
        self.client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s,
                                           retries=0, reconnect_delay=0, reconnect_delay_max=0)
        try:
            return bool(await self.client.connect())
        except (OSError, ModbusException) as exc:
            log.debug("connect %s failed: %s", self.url, exc)
            return False

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def read_inputs(self) -> dict[str, int]:
        """Every mapped input: bits as 0/1, registers as unsigned ints (32-bit for words=2)."""
        values: dict[str, int] = {}
        for b in self.blocks:
            t0 = time.monotonic()
            if b.table == "discrete_input":
                rr = await self._call(self.client.read_discrete_inputs, b.address, count=b.count, device_id=b.unit)
                self.sample_mono[b.table] = (t0 + time.monotonic()) / 2
                bits = rr.bits
                for name, off, _ in b.signals:
                    values[name] = int(bits[off])
            else:
                fn = self.client.read_input_registers if b.table == "input_register" else self.client.read_holding_registers
                rr = await self._call(fn, b.address, count=b.count, device_id=b.unit)
                self.sample_mono[b.table] = (t0 + time.monotonic()) / 2
                regs = rr.registers
                for name, off, words in b.signals:
                    values[name] = (regs[off] << 16 | regs[off + 1]) if words == 2 else regs[off]
        return values

    async def write(self, signal: str, state: bool) -> None:
        s = self.io[signal]
        await self._call(self.client.write_coil, s.address, state, device_id=s.unit)

    async def _call(self, fn, *args, **kwargs):
        if self.client is None:
            raise LinkDown(f"{self.url}: not connected")
        try:
            rr = await fn(*args, **kwargs)
        except (ModbusException, OSError, TimeoutError) as exc:
            self.errors += 1
            raise LinkDown(f"{self.url}: {exc}") from exc
        if rr.isError():
            self.errors += 1
            raise DeviceRefused(f"{self.url}: {fn.__name__}{args} refused: {rr}")
        return rr
