"""Modbus TCP against the simulated line's real server on 127.0.0.1: the driver interface, a client
that is not pymodbus, exception responses told apart from timeouts, the heartbeat and the latch."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time

import pytest

from sorter.controller.config.load import load_config
from sorter.plc.line_io import DeviceRefused, LineIO, LinkDown, NoAnswer, open_line_io
from sorter.plc.sim.modbus_server import SimIOModule, start_server
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics
from tests.plc_helpers import RawModbusTcp, line_config, run


class ServerThread:
    """The simulated line's I/O module served from a thread (its own select() loop)."""

    def __init__(self, cfg, physics):
        self.module = SimIOModule(cfg, physics)
        self.loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server, self.port = await start_server(self.module, "127.0.0.1", 0)
            self.ready.set()
            while not getattr(self, "stopping", False):
                await asyncio.sleep(0.05)
            await self.server.shutdown()
        self.loop.run_until_complete(main())

    def stop(self):
        self.stopping = True
        self.thread.join(5)


@pytest.fixture
def line(tmp_path):
    # a watchdog long enough that no stall of this process between two requests trips it
    cfg = load_config(line_config(tmp_path, failsafe=True, hb_ms=20, watchdog_ms=500))
    plan = ParcelPlan(cfg, 5, rate_pph=12000)
    physics = LinePhysics(cfg, plan, time.monotonic() - 0.99, 50)  # first parcel's head now
    srv = ServerThread(cfg, physics)
    yield cfg, physics, srv
    srv.stop()


def test_driver_reads_the_line_and_writes_outputs(line):
    cfg, physics, srv = line
    io = open_line_io(cfg, f"tcp://127.0.0.1:{srv.port}")

    async def go():
        assert await io.connect()
        heads, encs = 0, []
        prev = 0
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            v = await io.read_inputs()
            heads += v["pe_induct"] and not prev
            prev = v["pe_induct"]
            encs.append(v["encoder"])
            assert v["estop_ok"] == 1 and v["belt_running"] == 1
            await asyncio.sleep(0.002)
        assert heads >= 2, "parcels pass the induct photo-eye"
        assert encs == sorted(encs) and encs[-1] - encs[0] > 15000  # 2 m/s * 10 pulses/mm
        await io.write("D1_left", True)
        assert await io.read("D1_left") == 1
        await io.write("D1_left", False)
        await io.write_register("heartbeat", 7)
        assert physics.hb_last is not None
        io.close()

    run(go(), 30)


def test_raw_socket_client_reads_the_simulated_line(line):
    """A Modbus TCP client written here with plain sockets (not pymodbus) talks to the line."""
    cfg, physics, srv = line
    c = RawModbusTcp("127.0.0.1", srv.port)
    try:
        seen_blocked, encs = False, []
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            bits = c.read_bits(2, 0, 19)
            seen_blocked |= bits[0]
            hi, lo = c.read_regs(4, 0, 2)
            encs.append(hi << 16 | lo)
            time.sleep(0.005)
        assert seen_blocked
        assert encs[-1] > encs[0]
        # the latch: head edges counted, and the count at the last one is an encoder count we passed
        seq_h, seq_t, hc_hi, hc_lo = c.read_regs(4, 2, 4)
        assert seq_h >= 2 and seq_t >= 1
        assert encs[0] - 30000 < (hc_hi << 16 | hc_lo) <= encs[-1]
        # coil write and read-back through the device
        c.write_coil(2, True)
        assert c.read_bits(1, 2, 1) == [True]
        assert physics.outputs["D2_left"].now
        c.write_coil(2, False)
        assert c.read_bits(1, 2, 1) == [False]
        c.write_reg(100, 1)  # the heartbeat arms the watchdog
        assert physics.hb_last is not None
    finally:
        c.close()


def test_watchdog_drops_outputs_when_the_heartbeat_stops(line):
    cfg, physics, srv = line
    c = RawModbusTcp("127.0.0.1", srv.port)
    try:
        c.write_reg(100, 1)
        c.write_coil(4, True)
        assert c.read_bits(1, 4, 1) == [True]
        time.sleep(0.6)  # no heartbeat for longer than the 500 ms watchdog
        assert c.read_bits(1, 4, 1) == [False], "the device dropped the output"
        c.write_coil(4, True)
        assert c.read_bits(1, 4, 1) == [False], "held off while the watchdog is tripped"
        c.write_reg(100, 2)
        c.write_coil(4, True)
        assert c.read_bits(1, 4, 1) == [True], "back after the heartbeat returns"
        c.write_coil(4, False)
        assert physics.trips and physics.trips[0][1] is not None
    finally:
        c.close()


def test_exception_response_is_not_a_timeout(line):
    cfg, physics, srv = line
    io = open_line_io(cfg, f"tcp://127.0.0.1:{srv.port}")
    srv.module.refuse = {"D3_left"}

    async def go():
        assert await io.connect()
        with pytest.raises(DeviceRefused) as exc:
            await io.write("D3_left", True)
        assert exc.value.code == 4  # device failure
        assert io.connected, "a refusal leaves the link up"
        await io.write("D3_right", True)
        await io.write("D3_right", False)
        assert io.modbus.refusals == 1 and io.modbus.timeouts == 0
        io.close()

    run(go(), 30)


@pytest.fixture
def mute_server():
    """A TCP server that accepts requests but never answers (a hung device): (port, connections)."""
    sock = socket.create_server(("127.0.0.1", 0))
    conns = []
    stop = threading.Event()

    def serve():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = sock.accept()
                conns.append(c)
            except OSError:
                continue
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1], conns
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    sock.close()


def test_timeout_is_no_answer_state_unknown(tmp_path, mute_server):
    port, conns = mute_server
    cfg = load_config(line_config(tmp_path, failsafe=False))
    io = LineIO(cfg.plc.model_copy(update={"timeout_s": 0.1}), cfg.io, f"tcp://127.0.0.1:{port}")

    async def go():
        assert await io.connect()
        with pytest.raises(NoAnswer, match="no answer within 100 ms|timed out"):
            await io.write("D1_left", True)
        assert io.modbus.timeouts == 1 and io.modbus.refusals == 0
        # the request did reach the device (which may have switched the output): state unknown
        for _ in range(1000):  # the server thread accepts the connection in its own time
            if conns:
                break
            await asyncio.sleep(0.01)
        conns[0].settimeout(10)
        request = conns[0].recv(256)
        assert request[7] == 5 and request[8:12] == bytes.fromhex("0000FF00")  # write coil 0 on
        io.close()
        with pytest.raises(LinkDown):
            await io.write("D1_left", False)

    run(go(), 30)


def test_nothing_listening_is_link_down(tmp_path, free_port):
    cfg = load_config(line_config(tmp_path, failsafe=False))
    io = open_line_io(cfg, f"tcp://127.0.0.1:{free_port()}")
    assert run(io.connect(), 10) is False
    assert not io.connected


def test_a_poll_reads_inputs_only_not_the_heartbeat_it_writes(line):
    """The heartbeat register is ours to write; reading it back on every poll was one request in
    three (issue 11). The device still sees each heartbeat written."""
    cfg, physics, srv = line
    assert cfg.plc.heartbeat is not None
    io = open_line_io(cfg, f"tcp://127.0.0.1:{srv.port}")
    hb = cfg.plc.heartbeat.signal
    assert [b.table for b in io.modbus.blocks] == ["discrete_input", "input_register"]

    async def go():
        assert await io.connect()
        values = await io.read_inputs()
        assert hb not in values and cfg.line.induct.signal in values
        await io.write_register(hb, 4321)
        assert await io.read(hb) == 4321  # a read-back on demand still works
        io.close()

    run(go(), 30)
