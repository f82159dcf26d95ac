"""The line's I/O behind one interface, whatever carries it: Modbus TCP, Modbus RTU (RS-485) and
serial relay boards. The timing loop, the commissioning commands and the bench talk only to this.

    io = open_line_io(cfg, url)          # url overrides cfg.plc.url
    await io.connect()                   # -> bool; every transport
    values = await io.read_inputs()      # every mapped input, in bulk
    await io.write(signal, state)        # a coil or a relay channel
    await io.read(signal)                # read-back (coils, registers, relay boards with query)
    await io.write_register(signal, v)   # heartbeat, mailbox
    io.sample_mono                       # table -> when the device sampled it
    io.write_lead_s(rtt)                 # from sending a write to the device acting on it

Errors: DeviceRefused (exception response), NoAnswer (timeout: state unknown), LinkDown.
"""

from __future__ import annotations

from sorter.controller.config.plc import PlcConfig, Signal
from sorter.plc.modbus_io import MODBUS_TABLES, DeviceRefused, LinkDown, ModbusIO, NoAnswer
from sorter.plc.relay_board import RelayBoardIO

__all__ = ["LineIO", "open_line_io", "DeviceRefused", "LinkDown", "NoAnswer"]


class LineIO:
    def __init__(self, plc: PlcConfig, io: dict[str, Signal], url: str | None = None):
        self.url = url or plc.url
        self.io = io
        # the heartbeat is ours to write: reading it back every poll was a third of the poll's requests
        written = frozenset([plc.heartbeat.signal] if plc.heartbeat else [])
        self.modbus = ModbusIO(self.url, io, plc.timeout_s, plc.retries, not_polled=written) \
            if any(s.table in MODBUS_TABLES for s in io.values()) else None
        self.boards = {b.name: RelayBoardIO(b) for b in plc.relay_boards
                       if any(s.table == "relay" and s.board == b.name for s in io.values())}

    @property
    def kind(self) -> str:
        return self.modbus.kind if self.modbus else "serial"

    @property
    def connected(self) -> bool:
        return (self.modbus is None or self.modbus.connected) and all(b.connected for b in self.boards.values())

    @property
    def errors(self) -> int:
        return (self.modbus.errors if self.modbus else 0) + sum(b.errors for b in self.boards.values())

    @property
    def sample_mono(self) -> dict[str, float]:
        return self.modbus.sample_mono if self.modbus else {}

    def status(self) -> dict:
        m = self.modbus
        return {"url": self.url, "kind": self.kind, "connected": self.connected, "errors": self.errors,
                "timeouts": m.timeouts if m else 0, "refusals": m.refusals if m else 0,
                "boards": {n: b.connected for n, b in self.boards.items()}}

    async def connect(self) -> bool:
        ok = True
        if self.modbus is not None and not self.modbus.connected:
            ok = await self.modbus.connect()
        for b in self.boards.values():
            if not b.connected:
                ok = b.connect() and ok
        return ok

    def close(self) -> None:
        if self.modbus is not None:
            self.modbus.close()
        for b in self.boards.values():
            b.close()

    async def resync(self, signal: str) -> bool:
        """Before talking again to the device that left `signal`'s request unanswered."""
        if self.io[signal].table == "relay":
            return True
        return await self.modbus.resync()

    def write_lead_s(self, signal: str, rtt_s: float) -> float:
        s = self.io[signal]
        if s.table == "relay":
            return self.boards[s.board].write_lead_s()
        return self.modbus.write_lead_s(rtt_s)

    async def read_inputs(self) -> dict[str, int]:
        if self.modbus is None:
            return {}
        return await self.modbus.read_inputs()

    async def write(self, signal: str, state: bool) -> None:
        s = self.io[signal]
        if s.table == "relay":
            await self.boards[s.board].write(s.address, state)
        elif s.table == "coil":
            await self.modbus.write(signal, state)
        else:
            raise DeviceRefused(f"{signal} is a {s.table}: not an output")

    async def read(self, signal: str) -> int:
        s = self.io[signal]
        if s.table == "relay":
            return await self.boards[s.board].read(s.address)
        return await self.modbus.read(signal)

    async def write_register(self, signal: str, value: int) -> None:
        s = self.io[signal]
        if s.table == "coil" or s.table == "relay":
            await self.write(signal, bool(value & 1))
        else:
            await self.modbus.write_register(signal, value)


def open_line_io(cfg, url: str | None = None) -> LineIO:
    return LineIO(cfg.plc, cfg.io, url)
