"""The simulated line's I/O module: a real pymodbus TCP server whose points are the line's physics.

Built from the same I/O map as the controller's config, so a config that commissions the simulated
line commissions a real remote-I/O module laid out the same way.
"""

from __future__ import annotations

import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from controller.config import Config
from plc.sim.physics import LinePhysics

FC_READ_COILS, FC_READ_DI, FC_READ_HR, FC_READ_IR = 1, 2, 3, 4
FC_WRITE_COIL, FC_WRITE_COILS = 5, 15


class SimIOModule:
    """Maps Modbus requests onto LinePhysics; the action hook runs just before each request."""

    def __init__(self, cfg: Config, physics: LinePhysics, clock=time.monotonic):
        self.cfg, self.physics, self.clock = cfg, physics, clock
        io = cfg.io
        self.coil_at = {s.address: name for name, s in io.items() if s.table == "coil"}
        self.di_signals = {name: s.address for name, s in io.items() if s.table == "discrete_input"}
        self.encoder = io[cfg.line.encoder_signal]
        self.induct = cfg.line.induct.signal
        self.confirm_of = {c.confirm_signal: c.id for c in cfg.line.chutes if c.confirm_signal}
        self.full_of = {c.full_signal: c.id for c in cfg.line.chutes if c.full_signal}
        self.requests = 0
        self.units = {s.unit for s in io.values()}

    def device(self, unit: int) -> SimDevice:
        io = self.cfg.io
        n_coils = max([s.address for s in io.values() if s.table == "coil"] + [15]) + 1
        n_di = max([s.address for s in io.values() if s.table == "discrete_input"] + [15]) + 1
        n_ir = max([s.address + s.words for s in io.values() if s.table == "input_register"] + [16])
        n_hr = max([s.address + s.words for s in io.values() if s.table == "holding_register"] + [16])
        return SimDevice(
            id=unit,
            simdata=(
                [SimData(address=0, count=n_coils, values=False, datatype=DataType.BITS)],
                [SimData(address=0, count=n_di, values=False, datatype=DataType.BITS)],
                [SimData(address=0, count=n_hr, values=0, datatype=DataType.REGISTERS)],
                [SimData(address=0, count=n_ir, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )

    def input_bits(self, t: float) -> dict[str, bool]:
        p = self.physics
        p.advance(t)
        bits = {}
        for name in self.di_signals:
            if name == self.induct:
                bits[name] = p.induct_blocked(t)
            elif name in self.confirm_of:
                bits[name] = p.confirm_blocked(self.confirm_of[name], t)
            elif name in self.full_of:
                bits[name] = p.full(self.full_of[name])
            else:
                bits[name] = False
        return bits

    async def action(self, fc: int, start_address: int, address: int, count: int,
                     registers: list[int], values) -> ExcCodes | None:
        t = self.clock()
        self.requests += 1
        if fc == FC_READ_DI:
            flat = [False] * (16 * (len(registers) - 1))
            for name, on in self.input_bits(t).items():
                flat[self.di_signals[name]] = on
            registers[: len(registers) - 1] = SimUtils.bitsToRegisters(flat)
        elif fc == FC_READ_IR:
            value = self.physics.encoder(t)
            a = self.encoder.address
            registers[a], registers[a + 1] = value >> 16, value & 0xFFFF
        elif fc in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None:
            # pymodbus calls the hook again for the read-back of function 5, with values None
            for i, v in enumerate(values):
                sig = self.coil_at.get(address + i)
                if sig is not None and sig in self.physics.outputs:
                    self.physics.write_output(sig, bool(v), t)
        return None


async def start_server(module: SimIOModule, host: str, port: int) -> tuple[ModbusTcpServer, int]:
    devices = [module.device(u) for u in sorted(module.units)]
    server = ModbusTcpServer(devices if len(devices) > 1 else devices[0], address=(host, port))
    await server.serve_forever(background=True)
    bound = server.transport.sockets[0].getsockname()[1] if port == 0 else port
    return server, bound
