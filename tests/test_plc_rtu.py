"""Modbus RTU over a virtual serial line (socat pty pair) against a Modbus device that is NOT
pymodbus (modbus-tk's RTU server), through the same driver interface the timing loop uses."""

from __future__ import annotations


import pytest
import serial

from sorter.controller.config.plc import PlcConfig, Signal
from sorter.plc.line_io import DeviceRefused, LineIO, NoAnswer
from tests.plc_helpers import pty_pair, run

mtk_defines = pytest.importorskip("modbus_tk.defines")
from modbus_tk import modbus_rtu  # noqa: E402

IO = {
    "pe_induct": Signal(table="discrete_input", address=0),
    "C01_confirm": Signal(table="discrete_input", address=1),
    "encoder": Signal(table="input_register", address=0, words=2),
    "D1_left": Signal(table="coil", address=0),
    "D1_right": Signal(table="coil", address=1),
    "heartbeat": Signal(table="holding_register", address=10),
    "nowhere": Signal(table="coil", address=500),          # the device has no such coil
    "other_unit": Signal(table="coil", address=0, unit=7),  # no device 7 on the bus
}


@pytest.fixture
def rtu_device(tmp_path):
    with pty_pair(tmp_path) as (dev_end, ctl_end):
        ser = serial.Serial(dev_end, 115200, timeout=0.01)
        server = modbus_rtu.RtuServer(ser, error_on_missing_slave=False)
        slave = server.add_slave(1)
        slave.add_block("di", mtk_defines.DISCRETE_INPUTS, 0, 16)
        slave.add_block("ir", mtk_defines.ANALOG_INPUTS, 0, 4)
        slave.add_block("co", mtk_defines.COILS, 0, 16)
        slave.add_block("hr", mtk_defines.HOLDING_REGISTERS, 0, 16)
        slave.set_values("di", 0, [1, 0, 1])
        slave.set_values("ir", 0, [0x0001, 0x86A0])  # 100000
        server.start()
        try:
            yield slave, ctl_end
        finally:
            server.stop()
            ser.close()


def test_rtu_reads_writes_and_tells_refusal_from_timeout(rtu_device):
    slave, port = rtu_device
    plc = PlcConfig(url=f"rtu://{port}?baud=115200&parity=N", timeout_s=0.3)
    io = LineIO(plc, IO)
    assert io.kind == "rtu"

    async def go():
        assert await io.connect()
        values = await io.read_inputs()
        assert values["pe_induct"] == 1 and values["C01_confirm"] == 0
        assert values["encoder"] == 100000
        await io.write("D1_left", True)
        assert await io.read("D1_left") == 1
        await io.write_register("heartbeat", 4242)
        with pytest.raises(DeviceRefused) as refused:
            await io.write("nowhere", True)  # the device answers: illegal data address
        assert refused.value.code == 2
        with pytest.raises(NoAnswer):
            await io.write("other_unit", True)  # nobody answers on the bus: state unknown
        # the link is still usable after both
        await io.write("D1_left", False)
        assert await io.read("D1_left") == 0
        # the device samples when the request has arrived (wire time modelled at 115200 baud)
        assert io.write_lead_s("D1_left", 0.01) == pytest.approx(11.5 * 10 / 115200)
        io.close()

    run(go(), 30)
    assert slave.get_values("co", 0, 2) == (0, 0)
    assert slave.get_values("hr", 10, 1) == (4242,)


def test_rtu_unit_in_the_url_overrides_the_map(rtu_device):
    slave, port = rtu_device
    io = LineIO(PlcConfig(url=f"rtu://{port}?baud=115200&unit=1", timeout_s=0.3), IO)

    async def go():
        assert await io.connect()
        await io.write("other_unit", True)  # unit 7 in the map, unit 1 from the URL
        io.close()

    run(go(), 30)
    assert slave.get_values("co", 0, 1) == (1,)


def test_rtu_device_missing_is_link_trouble_not_a_crash(tmp_path):
    with pty_pair(tmp_path) as (_dev_end, ctl_end):
        io = LineIO(PlcConfig(url=f"rtu://{ctl_end}?baud=115200", timeout_s=0.1), IO)

        async def go():
            assert await io.connect()  # the port opens; nothing is on the other end
            with pytest.raises(NoAnswer):
                await io.read_inputs()
            io.close()

        run(go(), 30)
    io = LineIO(PlcConfig(url="rtu:///dev/does-not-exist?baud=115200", timeout_s=0.1), IO)
    assert run(io.connect(), 10) is False
