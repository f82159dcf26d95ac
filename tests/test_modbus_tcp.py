"""The lean Modbus TCP client (plc/modbus_tcp.py) against servers we did not write: modbus-tk's and
pymodbus's; and against a misbehaving device (late, garbled, closing) as real ones do."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from sorter.plc.modbus_tcp import LinkClosed, ModbusTcpClient, ReplyTimeout
from tests.plc_helpers import run

pytestmark = pytest.mark.filterwarnings("ignore:isSet:DeprecationWarning")
mtk_defines = pytest.importorskip("modbus_tk.defines")
from modbus_tk import modbus_tcp as mtk_tcp  # noqa: E402


@pytest.fixture
def mtk_server(free_port):
    port = free_port()
    server = mtk_tcp.TcpServer(port=port, address="127.0.0.1")
    server.start()
    # modbus-tk binds and listens on its own thread: wait until it does
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.02)
    slave = server.add_slave(3)
    slave.add_block("coils", mtk_defines.COILS, 0, 40)
    slave.add_block("inputs", mtk_defines.DISCRETE_INPUTS, 0, 40)
    slave.add_block("holding", mtk_defines.HOLDING_REGISTERS, 0, 20)
    slave.add_block("input_regs", mtk_defines.ANALOG_INPUTS, 0, 20)
    yield port, slave
    server.stop()


def test_every_call_against_modbus_tk(mtk_server):
    port, slave = mtk_server
    slave.set_values("inputs", 0, [1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1])  # 11 bits: spans two bytes
    slave.set_values("input_regs", 4, [0x1234, 0xFFFF])

    async def go():
        c = ModbusTcpClient("127.0.0.1", port, timeout=2.0)
        assert await c.connect()
        r = await c.read_discrete_inputs(0, count=11, device_id=3)
        assert [int(b) for b in r.bits] == [1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1]
        r = await c.read_input_registers(4, count=2, device_id=3)
        assert r.registers == [0x1234, 0xFFFF]
        assert not (await c.write_coil(17, True, device_id=3)).isError()
        assert [int(b) for b in (await c.read_coils(16, count=3, device_id=3)).bits] == [0, 1, 0]
        assert not (await c.write_register(2, 54321, device_id=3)).isError()
        assert not (await c.write_registers(5, [7, 0xBEEF], device_id=3)).isError()
        r = await c.read_holding_registers(2, count=5, device_id=3)
        assert r.registers == [54321, 0, 0, 7, 0xBEEF]
        # an address the device does not have: its Modbus exception, not a timeout
        r = await c.read_coils(39, count=5, device_id=3)
        assert r.isError() and r.exception_code == 2
        # many round trips on one connection stay in step
        for i in range(300):
            await c.write_register(0, i, device_id=3)
            assert (await c.read_holding_registers(0, count=1, device_id=3)).registers == [i]
        assert c.stray == 0
        c.close()
        with pytest.raises(LinkClosed):
            await c.read_coils(0, device_id=3)

    run(go(), 60)
    # what modbus-tk stored is what we wrote
    assert slave.get_values("coils", 17, 1) == (1,)
    assert slave.get_values("holding", 5, 2) == (7, 0xBEEF)


def test_against_pymodbus_server():
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    ready, stop = threading.Event(), threading.Event()
    port = {}

    def serve():  # the server on its own loop: our client blocks the loop it is called from
        async def main():
            dev = SimDevice(id=1, simdata=([SimData(0, count=32, values=False, datatype=DataType.BITS)],
                                           [SimData(0, count=32, values=False, datatype=DataType.BITS)],
                                           [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
                                           [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]))
            server = ModbusTcpServer(dev, address=("127.0.0.1", 0))
            await server.serve_forever(background=True)
            port["n"] = server.transport.sockets[0].getsockname()[1]
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.02)
            await server.shutdown()
        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(30)

    async def go():
        c = ModbusTcpClient("127.0.0.1", port["n"], timeout=2.0)
        assert await c.connect()
        await c.write_coil(9, True)
        assert [int(b) for b in (await c.read_coils(8, count=3)).bits] == [0, 1, 0]
        await c.write_registers(3, [1, 2, 3])
        assert (await c.read_holding_registers(2, count=5)).registers == [0, 1, 2, 3, 0]
        r = await c.read_input_registers(30, count=4)  # beyond the device's 16 registers
        assert r.isError() and r.exception_code == 2
        c.close()

    try:
        run(go(), 60)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()


class OddDevice:
    """A device that answers in ways real ones do on a bad day: one answer late, one garbled, or
    the connection closed under a request."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self.session(conn)

    def session(self, conn):
        conn.settimeout(5)
        first = True
        while not self.stop.is_set():
            try:
                head = conn.recv(7)
                if len(head) < 7:
                    return
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = conn.recv(length - 1)
            except OSError:
                return
            answer = bytes((pdu[0], 2, 0x34, 0x12))  # read holding registers: one register
            if self.mode == "close":
                return
            if self.mode == "garbled":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                continue
            if self.mode == "late" and first:
                first = False
                self.release.wait(5)  # answered only after the client gave up on it
            conn.sendall(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)

    def close(self):
        self.stop.set()
        self.release.set()
        self.thread.join(5)
        self.sock.close()


def test_a_late_answer_is_never_taken_for_the_next_request():
    dev = OddDevice("late")

    async def go():
        c = ModbusTcpClient("127.0.0.1", dev.port, timeout=0.2)
        assert await c.connect()
        with pytest.raises(ReplyTimeout):
            await c.read_holding_registers(0, count=1)
        dev.release.set()  # the late answer now arrives, then the answer to the next request
        await asyncio.sleep(0.05)
        r = await c.read_holding_registers(1, count=1)
        assert r.registers == [0x3412]
        assert c.stray == 1  # the late one was seen and dropped, not handed to the second read
        c.close()

    try:
        run(go(), 30)
    finally:
        dev.close()


@pytest.mark.parametrize("mode,error", [("garbled", LinkClosed), ("close", LinkClosed)])
def test_a_broken_stream_ends_the_request_at_once(mode, error):
    dev = OddDevice(mode)

    async def go():
        c = ModbusTcpClient("127.0.0.1", dev.port, timeout=5.0)  # a long timeout: the error must come first
        assert await c.connect()
        with pytest.raises(error):  # LinkClosed, not ReplyTimeout: the broken stream ended it
            await c.read_holding_registers(0, count=1)
        for _ in range(100):
            if not c.connected:
                break
            await asyncio.sleep(0.01)
        assert not c.connected
        if mode == "garbled":
            assert c.garbled == 1

    try:
        run(go(), 30)
    finally:
        dev.close()


def test_a_reply_of_the_wrong_size_is_no_answer():
    dev = OddDevice("right")  # answers one register whatever was asked

    async def go():
        c = ModbusTcpClient("127.0.0.1", dev.port, timeout=2.0)
        assert await c.connect()
        assert (await c.read_holding_registers(0, count=1)).registers == [0x3412]
        with pytest.raises(ReplyTimeout, match="register reply of 2 bytes for 2 registers"):
            await c.read_holding_registers(0, count=2)
        c.close()

    try:
        run(go(), 30)
    finally:
        dev.close()


def test_nothing_listening(free_port):
    async def go():
        c = ModbusTcpClient("127.0.0.1", free_port(), timeout=0.5)
        assert not await c.connect()
        with pytest.raises(LinkClosed):
            await c.read_coils(0)

    run(go(), 30)
