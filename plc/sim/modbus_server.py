"""The simulated line's I/O module: a real pymodbus TCP server whose points are the line's physics.

Built from the same I/O map as the controller's config, so a config that commissions the simulated
line commissions a real remote-I/O module laid out the same way.
"""

from __future__ import annotations

import asyncio
import functools
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from sorter.controller.config.line import Config
from sorter.plc.sim.physics import LinePhysics

FC_READ_COILS, FC_READ_DI, FC_READ_HR, FC_READ_IR = 1, 2, 3, 4
FC_WRITE_COIL, FC_WRITE_COILS = 5, 15
FC_WRITE_REG, FC_WRITE_REGS = 6, 16


class SimIOModule:
    """Maps Modbus requests onto LinePhysics; the action hook runs just before each request.

    Besides the photo-eyes, encoder and diverter coils it serves what a PLC on the line would: the
    heartbeat register (its watchdog drops the outputs and stops induction when the heartbeat
    stops), the e-stop input (healthy unless a test forces it to 0, which stops the belt), the run
    input (the belt's real state unless a test forces it), the induct_enable coil (induction runs
    only while it is on), the encoder latch at the induct photo-eye (sim.latch), and coils that
    read back what the device really drives."""

    def __init__(self, cfg: Config, physics: LinePhysics, clock=time.monotonic):
        self.cfg, self.physics, self.clock = cfg, physics, clock
        io = cfg.io
        self.io = io
        self.encoder_name = cfg.line.encoder_signal
        self.induct = cfg.line.induct.signal
        self.confirm_of = {c.confirm_signal: c.id for c in cfg.line.chutes if c.confirm_signal}
        self.full_of = {c.full_signal: c.id for c in cfg.line.chutes if c.full_signal}
        self.requests = 0
        self.units = {s.unit for s in io.values() if s.table != "relay"}
        plc = cfg.plc
        self.heartbeat = plc.heartbeat.signal if plc.heartbeat else None
        self.latch = {}
        if plc.latch is not None and cfg.sim.latch:
            lt = plc.latch
            self.latch = {lt.head_seq: "head_seq", lt.head_count: "head_latch",
                          lt.tail_seq: "tail_seq", lt.tail_count: "tail_latch"}
        self.estop_name, self.run_name, self.induct_enable = plc.estop_signal, plc.run_signal, plc.induct_enable
        self.healthy = {n for n in (plc.estop_signal,) if n}
        self.forced: dict[str, int] = _Forced(self._forced_changed)   # tests: input name -> value
        self.refuse: set[str] = set()      # tests: signals whose writes get an exception response
        self.slow: dict[str, float] = {}    # tests: signal -> delay of its next switch-on (a hung device)
        self.coils: dict[str, bool] = {}   # non-diverter coils as written (tower, induct enable)
        self.mailbox = None                 # set by sorter.plc.sim.mailbox for mode plc_tracking
        # (unit, table) -> {address: (name, word)} for every Modbus signal
        self.at: dict[tuple[int, str], dict[int, tuple[str, int]]] = {}
        for name, sg in io.items():
            if sg.table == "relay":
                continue
            for w in range(sg.words):
                self.at.setdefault((sg.unit, sg.table), {})[sg.address + w] = (name, w)

    def device(self, unit: int) -> SimDevice:
        io = [s for s in self.io.values() if s.unit == unit and s.table != "relay"]
        n_coils = max([s.address for s in io if s.table == "coil"] + [15]) + 17
        n_di = max([s.address for s in io if s.table == "discrete_input"] + [15]) + 17
        n_ir = max([s.address + s.words for s in io if s.table == "input_register"] + [16])
        n_hr = max([s.address + s.words for s in io if s.table == "holding_register"] + [16])
        return SimDevice(
            id=unit,
            simdata=(
                [SimData(address=0, count=n_coils, values=False, datatype=DataType.BITS)],
                [SimData(address=0, count=n_di, values=False, datatype=DataType.BITS)],
                [SimData(address=0, count=n_hr, values=0, datatype=DataType.REGISTERS)],
                [SimData(address=0, count=n_ir, values=0, datatype=DataType.REGISTERS)],
            ),
            action=functools.partial(self.action, unit),
        )

    def input_bits(self, t: float) -> dict[str, bool]:
        p = self.physics
        p.advance(t)
        bits = {}
        for name, sg in self.io.items():
            if sg.table != "discrete_input":
                continue
            if name in self.forced:
                bits[name] = bool(self.forced[name])
            elif name == self.induct:
                bits[name] = p.induct_blocked(t)
            elif name in self.confirm_of:
                bits[name] = p.confirm_blocked(self.confirm_of[name], t)
            elif name in self.full_of:
                bits[name] = p.full(self.full_of[name])
            elif name == self.run_name:
                bits[name] = getattr(p, "belt_running", True)
            else:
                bits[name] = name in self.healthy
        return bits

    def induct_enabled(self) -> bool:
        """Induction as the PLC holds it now: as last written; before any write, on only when no
        induct_enable coil is mapped (a real PLC does not induct before the controller says so)."""
        if self.induct_enable is None:
            return True
        return self.coils.get(self.induct_enable, False)

    def use(self, physics, t: float) -> None:
        """Serve `physics` from now on (the run starts), with the inputs and coils as they are."""
        self.physics = physics
        if self.estop_name and not self.forced.get(self.estop_name, 1):
            physics.set_estop(True, t)

    def _forced_changed(self, name: str) -> None:
        # a forced e-stop input is the e-stop circuit opening: the belt stops at that moment. Tests
        # force from other threads, so the physics takes it at its next advance, on its own thread.
        if name == self.estop_name:
            post = getattr(self.physics, "post_estop", None)
            if post is not None:
                post(not self.forced.get(name, 1), self.clock())
        elif name in self.full_of:
            force_full = getattr(self.physics, "force_full", None)
            if force_full is not None:
                force_full(self.full_of[name], bool(self.forced.get(name)), self.clock())

    def write_coil(self, name: str, state: bool, t: float) -> None:
        """A coil write as the device takes it at t: a diverter output goes to the physics
        (time-stamped), induct_enable switches induction; every coil reads back as written."""
        if name in self.physics.outputs:
            self.physics.write_output(name, state, t)
            return
        self.coils[name] = state
        if name == self.induct_enable:
            enable = getattr(self.physics, "set_induct_enable", None)
            if enable is not None:
                enable(state, t)

    def bit_value(self, name: str, t: float) -> bool:
        """A coil as the device drives it now (a dropped watchdog shows here too)."""
        out = getattr(self.physics, "outputs", {}).get(name)
        if out is not None:
            return out.now if hasattr(out, "now") else bool(out)
        return self.coils.get(name, False)

    def register_value(self, name: str, word: int, t: float, current: int) -> int:
        if name in self.forced:
            v = self.forced[name]
        elif name == self.encoder_name:
            v = self.physics.encoder(t)
        elif name in self.latch:
            v = getattr(self.physics, self.latch[name], 0)
        elif self.mailbox is not None and name in self.mailbox.plc_side:
            v = self.mailbox.value(name, t)
        else:
            return current
        sg = self.io[name]
        if sg.words == 2:
            return (v >> 16) & 0xFFFF if word == 0 else v & 0xFFFF
        return v & 0xFFFF

    @staticmethod
    def _fill_bits(registers: list[int], start: int, address: int, n_regs: int, value_of) -> None:
        """Put bit values where pymodbus will read them for this request (its packing, not ours:
        for bit tables the hook is given the count of 16-bit registers the request spans)."""
        offset, bit_offset = address // 16 - start, address % 16  # non-shared blocks: bit addressing
        count = 16 * n_regs - bit_offset
        bits = SimUtils.registersToBits(registers[offset: offset + n_regs])
        for i in range(count):
            v = value_of(address + i)
            if v is not None:
                bits[bit_offset + i] = v
        registers[offset: offset + n_regs] = SimUtils.bitsToRegisters(bits)

    async def action(self, unit: int, fc: int, start_address: int, address: int, count: int,
                     registers: list[int], values) -> ExcCodes | None:
        t = self.clock()
        self.requests += 1
        if fc == FC_READ_DI:
            names = self.at.get((unit, "discrete_input"), {})
            bits = self.input_bits(t)
            self._fill_bits(registers, start_address, address, count,
                            lambda a: bits.get(names[a][0]) if a in names else None)
        elif fc == FC_READ_COILS:
            names = self.at.get((unit, "coil"), {})
            self.physics.advance(t)
            self._fill_bits(registers, start_address, address, count,
                            lambda a: self.bit_value(names[a][0], t) if a in names else None)
        elif fc in (FC_READ_IR, FC_READ_HR):
            table = "input_register" if fc == FC_READ_IR else "holding_register"
            names = self.at.get((unit, table), {})
            self.physics.advance(t)
            for a in range(address, address + count):
                if a in names:
                    name, word = names[a]
                    registers[a - start_address] = self.register_value(name, word, t, registers[a - start_address])
        elif fc in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None:
            # pymodbus calls the hook again for the read-back of function 5, with values None
            names = self.at.get((unit, "coil"), {})
            for i in range(len(values)):
                name = names.get(address + i, (None,))[0]
                delay = self.slow.pop(name, None) if values[i] and name in self.slow else None
                if delay:  # tests: this switch-on is answered (and applied) late, once
                    await asyncio.sleep(delay)
                    t = self.clock()
            for i, v in enumerate(values):
                name = names.get(address + i, (None,))[0]
                if name in self.refuse:
                    return ExcCodes.DEVICE_FAILURE
                if name is not None:
                    self.write_coil(name, bool(v), t)
        elif fc in (FC_WRITE_REG, FC_WRITE_REGS) and values is not None:
            names = self.at.get((unit, "holding_register"), {})
            written = {}
            for i, v in enumerate(values):
                if address + i in names:
                    name, word = names[address + i]
                    if name in self.refuse:
                        return ExcCodes.DEVICE_FAILURE
                    written[name] = (written.get(name, 0) << 16) | int(v) if self.io[name].words == 2 else int(v)
            for name, v in written.items():
                self.register_written(name, v, t)
        return None

    def register_written(self, name: str, value: int, t: float) -> None:
        """What a holding-register write does to the line: a heartbeat feeds the watchdog, a
        mailbox register goes to the simulated PLC."""
        if name == self.heartbeat:
            hb = getattr(self.physics, "heartbeat", None)
            if hb is not None:
                hb(t)
        elif self.mailbox is not None:
            self.mailbox.written(name, value, t)


class _Forced(dict):
    """The forced inputs; tells the module when one changes (the e-stop's moves the belt)."""

    def __init__(self, changed):
        super().__init__()
        self._changed = changed

    def __setitem__(self, name, value):
        super().__setitem__(name, value)
        self._changed(name)

    def __delitem__(self, name):
        super().__delitem__(name)
        self._changed(name)

    def pop(self, name, *default):  # dict.pop does not go through __delitem__
        had = name in self
        value = super().pop(name, *default)
        if had:
            self._changed(name)
        return value

    def pop(self, name, *default):
        had = name in self
        v = super().pop(name, *default)
        if had:
            self._changed(name)
        return v

    def clear(self):
        names = list(self)
        super().clear()
        for name in names:
            self._changed(name)


async def start_server(module: SimIOModule, host: str, port: int) -> tuple[ModbusTcpServer, int]:
    devices = [module.device(u) for u in sorted(module.units)]
    server = ModbusTcpServer(devices if len(devices) > 1 else devices[0], address=(host, port))
    await server.serve_forever(background=True)
    bound = server.transport.sockets[0].getsockname()[1] if port == 0 else port
    return server, bound
