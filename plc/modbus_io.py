"""Direct I/O over Modbus TCP (our lean client, plc/modbus_tcp.py) or RTU (pymodbus): read the
line's inputs in bulk, write outputs.

One connection, one owner: the timing loop awaits every call, so no two requests are ever in flight
on the connection (pymodbus mixes up replies otherwise). Three kinds of failure are told apart:

- `DeviceRefused`: the device answered with a Modbus exception ("the device said no": bad address,
  busy...). The link is fine; nothing was changed.
- `NoAnswer` (a `LinkDown`): the request went out and no answer came within `timeout_s`. For a
  write, the state of the output is UNKNOWN: the caller reads it back and rejects the parcel.
- `LinkDown`: no connection at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from sorter.controller.config.plc import Signal, parse_plc_url
from sorter.plc.modbus_tcp import LinkClosed, ModbusTcpClient, ReplyTimeout

log = logging.getLogger(__name__)

MAX_BITS, MAX_REGS = 2000, 125  # Modbus limits for one read
MODBUS_TABLES = ("coil", "discrete_input", "input_register", "holding_register")


class DeviceRefused(Exception):
    """The device answered with a Modbus exception (bad address, busy...)."""

    def __init__(self, text: str, code: int | None = None):
        super().__init__(text)
        self.code = code


class LinkDown(Exception):
    """No answer or no connection: what the device did is unknown."""


class NoAnswer(LinkDown):
    """The request was sent and nothing came back in time: the device may or may not have done it."""


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
        limit = MAX_BITS if table in ("discrete_input", "coil") else MAX_REGS
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
    """tcp://HOST:PORT -> (host, port) (kept for callers of the first version)."""
    u = parse_plc_url(url)
    if u["kind"] != "tcp":
        raise ValueError(f"plc url {url!r}: expected tcp://HOST:PORT")
    return u["host"], u["port"]


def with_unit(io: dict[str, Signal], unit: int | None) -> dict[str, Signal]:
    """The I/O map with every Modbus signal moved to `unit` (a `unit=` in the URL overrides the map)."""
    if unit is None:
        return dict(io)
    return {n: (s.model_copy(update={"unit": unit}) if s.table in MODBUS_TABLES else s) for n, s in io.items()}


def rtu_char_s(baud: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8) -> float:
    """Time of one character on the wire."""
    return (1 + bytesize + (parity != "N") + stopbits) / baud


class ModbusIO:
    """The Modbus points of the I/O map over one TCP or RTU connection."""

    def __init__(self, url: str, io: dict[str, Signal], timeout_s: float = 0.25, retries: int = 0,
                 not_polled: frozenset[str] = frozenset()):
        """`not_polled`: registers only ever written (the heartbeat), left out of `read_inputs`."""
        self.url = url
        self.ep = parse_plc_url(url)
        self.kind = self.ep["kind"]
        self.io = with_unit({n: s for n, s in io.items() if s.table in MODBUS_TABLES}, self.ep.get("unit"))
        self.timeout_s = timeout_s
        self.read_retries = retries
        self.blocks = plan_reads({n: s for n, s in self.io.items() if n not in not_polled})
        self.client = None
        self.errors = 0
        self.timeouts = 0
        self.refusals = 0
        self.sample_mono: dict[str, float] = {}  # table -> when the device most likely sampled it
        self.char_s = rtu_char_s(self.ep["baud"], self.ep["parity"], self.ep["stopbits"], self.ep["bytesize"]) \
            if self.kind == "rtu" else 0.0

    # ------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def connect(self) -> bool:
        self.close()
        # the timing loop reconnects with its own backoff; the client must not retry behind its back
        if self.kind == "tcp":
            # our own lean client (plc/modbus_tcp.py): pymodbus's cost most of the timing process's CPU
            self.client = ModbusTcpClient(self.ep["host"], port=self.ep["port"], timeout=self.timeout_s)
        else:
            self.client = AsyncModbusSerialClient(
                self.ep["device"], baudrate=self.ep["baud"], parity=self.ep["parity"],
                stopbits=self.ep["stopbits"], bytesize=self.ep["bytesize"], timeout=self.timeout_s,
                retries=0, reconnect_delay=0, reconnect_delay_max=0)
        try:
            ok = bool(await self.client.connect())
        except (OSError, ModbusException) as exc:
            log.debug("connect %s failed: %s", self.url, exc)
            ok = False
        if not ok:
            self.close()
        return ok

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a broken transport must not raise
                pass
            self.client = None

    async def resync(self) -> bool:
        """After a request went unanswered, a late answer may still come and be taken for the next
        one. TCP: start a fresh connection. RTU: let the bus fall silent for one timeout."""
        if self.kind == "tcp":
            return await self.connect()
        await asyncio.sleep(self.timeout_s)
        return self.connected

    # ------------------------------------------------------------------ timing model
    def wire_s(self, n_bytes: int) -> float:
        """Time `n_bytes` take on the wire (0 for TCP: the network is not the bottleneck)."""
        return n_bytes * self.char_s

    def write_lead_s(self, rtt_s: float) -> float:
        """From sending a coil write to the device acting on it: half the round trip over TCP; the
        request's 8 bytes plus the 3.5-character frame gap on RS-485."""
        if self.kind == "rtu":
            return self.wire_s(8 + 3.5)
        return rtt_s / 2

    # ------------------------------------------------------------------ reads
    async def read_inputs(self) -> dict[str, int]:
        """Every mapped input: bits as 0/1, registers as unsigned ints (32-bit for words=2)."""
        values: dict[str, int] = {}
        for b in self.blocks:
            t0 = time.monotonic()
            if b.table == "discrete_input":
                rr = await self._read("read_discrete_inputs", b.address, count=b.count, device_id=b.unit)
                self.sample_mono[b.table] = self._sampled(t0, time.monotonic())
                bits = rr.bits
                for name, off, _ in b.signals:
                    values[name] = int(bits[off])
            else:
                fn = "read_input_registers" if b.table == "input_register" else "read_holding_registers"
                rr = await self._read(fn, b.address, count=b.count, device_id=b.unit)
                self.sample_mono[b.table] = self._sampled(t0, time.monotonic())
                regs = rr.registers
                for name, off, words in b.signals:
                    values[name] = (regs[off] << 16 | regs[off + 1]) if words == 2 else regs[off]
        return values

    def _sampled(self, t0: float, t1: float) -> float:
        if self.kind == "rtu":
            return min(t1, t0 + self.wire_s(8 + 3.5))  # the device samples when the request has arrived
        return (t0 + t1) / 2

    async def read(self, signal: str) -> int:
        """One signal's current value (coils too: the read-back of an output)."""
        s = self.io[signal]
        if s.table in ("coil", "discrete_input"):
            fn = "read_coils" if s.table == "coil" else "read_discrete_inputs"
            rr = await self._read(fn, s.address, count=1, device_id=s.unit)
            return int(rr.bits[0])
        fn = "read_input_registers" if s.table == "input_register" else "read_holding_registers"
        rr = await self._read(fn, s.address, count=s.words, device_id=s.unit)
        r = rr.registers
        return (r[0] << 16 | r[1]) if s.words == 2 else r[0]

    # ------------------------------------------------------------------ writes
    async def write(self, signal: str, state: bool) -> None:
        s = self.io[signal]
        await self._call("write_coil", s.address, bool(state), device_id=s.unit)

    async def write_register(self, signal: str, value: int) -> None:
        s = self.io[signal]
        value = int(value) & (0xFFFFFFFF if s.words == 2 else 0xFFFF)
        if s.words == 2:
            await self._call("write_registers", s.address, [value >> 16, value & 0xFFFF], device_id=s.unit)
        else:
            await self._call("write_register", s.address, value, device_id=s.unit)

    # ------------------------------------------------------------------ calls
    async def _read(self, fn: str, *args, **kwargs):
        """A read may be retried after a timeout (it changes nothing); a write never is."""
        for attempt in range(self.read_retries + 1):
            try:
                return await self._call(fn, *args, **kwargs)
            except NoAnswer:
                if attempt == self.read_retries or not self.connected:
                    raise
        raise AssertionError("unreachable")

    async def _call(self, name: str, *args, **kwargs):
        if self.client is None:
            raise LinkDown(f"{self.url}: not connected")
        if not self.client.connected:
            raise LinkDown(f"{self.url}: connection lost")
        fn = getattr(self.client, name)
        try:
            rr = await fn(*args, **kwargs)
        except (ModbusIOException, ReplyTimeout) as exc:
            self.errors += 1
            self.timeouts += 1
            raise NoAnswer(f"{self.url}: {name} got no answer within {self.timeout_s * 1000:.0f} ms") from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self.errors += 1
            self.timeouts += 1
            raise NoAnswer(f"{self.url}: {name} timed out") from exc
        except (ConnectionException, ModbusException, LinkClosed, OSError) as exc:
            self.errors += 1
            raise LinkDown(f"{self.url}: {exc}") from exc
        if not rr.isError() and name.startswith("read_"):
            want = kwargs.get("count", 1)
            got = len(rr.bits) if name in ("read_coils", "read_discrete_inputs") else len(rr.registers)
            if got < want:  # a late answer to an earlier request, taken for this one
                self.errors += 1
                self.timeouts += 1
                raise NoAnswer(f"{self.url}: {name} got an answer that does not fit the request")
        if rr.isError():
            self.errors += 1
            self.refusals += 1
            code = getattr(rr, "exception_code", None)
            raise DeviceRefused(f"{self.url}: {name}{args} refused by the device "
                                f"(Modbus exception {code})", code)
        return rr
