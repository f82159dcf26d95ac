"""The 4-byte `A0 <ch> <state> <sum>` USB relay board driven over a pty, with a fake board on the
other end that behaves like the real ones: it switches on valid frames, ignores bad ones, never
answers a switch command, and (the models that can) answers the 0xFF status query.

A switch command is never answered, so a write returns before the board has the frame (it is on
its way through socat): a test waits for the board to have switched before it closes the port or
stops the board, or the last frame can be lost in between (it was, once, in a baseline run)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import serial

from sorter.controller.config.plc import PlcConfig, RelayBoard, Signal
from sorter.plc.line_io import LineIO, LinkDown, NoAnswer
from sorter.plc.relay_board import frame, parse_frame, parse_status
from tests.plc_helpers import pty_pair, run


class FakeBoard(threading.Thread):
    def __init__(self, port: str, channels: int = 4, answers_query: bool = True):
        super().__init__(daemon=True)
        self.ser = serial.Serial(port, 9600, timeout=0.02)
        self.channels, self.answers_query = channels, answers_query
        self.state = {c: False for c in range(1, channels + 1)}
        self.switched: list[tuple[int, bool, float]] = []
        self.bad_frames = 0
        self.sent_anything = False
        self.running = True

    def run(self) -> None:
        buf = b""
        while self.running:
            try:
                buf += self.ser.read(64)
            except (serial.SerialException, OSError, TypeError):
                return
            while buf:
                if buf[0] == 0xFF:
                    buf = buf[1:]
                    if self.answers_query:
                        text = "".join(f"CH{c}:{'ON' if s else 'OFF'}\r\n" for c, s in self.state.items())
                        self.ser.write(text.encode())
                        self.sent_anything = True
                    continue
                if buf[0] != 0xA0:
                    buf = buf[1:]  # resynchronise on the header byte, as the boards do
                    continue
                if len(buf) < 4:
                    break
                cmd = parse_frame(buf[:4])
                if cmd is None or not 1 <= cmd[0] <= self.channels:
                    self.bad_frames += 1
                    buf = buf[1:]
                    continue
                buf = buf[4:]
                self.state[cmd[0]] = cmd[1]
                self.switched.append((cmd[0], cmd[1], time.monotonic()))

    def stop(self) -> None:
        self.running = False
        self.join(2)
        self.ser.close()

    async def switched_to(self, n: int) -> None:
        """Until the board has taken n switch commands (a bound for a broken build, not a speed)."""
        end = time.monotonic() + 30
        while len(self.switched) < n and time.monotonic() < end:
            await asyncio.sleep(0.005)


def test_frame_format():
    assert frame(1, True) == bytes.fromhex("A00101A2")
    assert frame(1, False) == bytes.fromhex("A00100A1")
    assert frame(2, True) == bytes.fromhex("A00201A3")
    assert parse_frame(bytes.fromhex("A00101A2")) == (1, True)
    assert parse_frame(bytes.fromhex("A00101A3")) is None  # bad sum
    assert parse_status(b"CH1:ON\r\nCH2: OFF\r\n") == {1: True, 2: False}


def _io(port: str, query: bool) -> LineIO:
    plc = PlcConfig(relay_boards=[RelayBoard(name="b1", port=port, channels=4, query=query, timeout_s=0.2)])
    io = {"D1_left": Signal(table="relay", board="b1", address=1),
          "D1_right": Signal(table="relay", board="b1", address=2)}
    return LineIO(plc, io)


def test_relay_board_switches_and_reads_back(tmp_path):
    with pty_pair(tmp_path) as (board_end, pc_end):
        board = FakeBoard(board_end, answers_query=True)
        board.start()
        io = _io(pc_end, query=True)

        async def go():
            assert await io.connect()
            assert io.connected and io.kind == "serial"
            await io.write("D1_left", True)
            await io.write("D1_right", True)
            await io.write("D1_right", False)
            await board.switched_to(3)
            assert await io.read("D1_left") == 1
            assert await io.read("D1_right") == 0
            io.close()

        try:
            run(go(), 20)
        finally:
            board.stop()
        assert [(c, s) for c, s, _ in board.switched] == [(1, True), (2, True), (2, False)]
        assert board.bad_frames == 0


def test_relay_board_that_never_answers(tmp_path):
    """The cheap boards answer nothing: writes still work; a read-back is 'state unknown'."""
    with pty_pair(tmp_path) as (board_end, pc_end):
        board = FakeBoard(board_end, answers_query=False)
        board.start()
        silent = _io(pc_end, query=True)  # configured as if it could answer: it does not

        async def go():
            assert await silent.connect()
            await silent.write("D1_left", True)
            await board.switched_to(1)
            with pytest.raises(NoAnswer, match="no answer to the status query within 200 ms"):
                await silent.read("D1_left")
            silent.close()
            no_query = _io(pc_end, query=False)
            assert await no_query.connect()
            with pytest.raises(NoAnswer, match="cannot be read back"):
                await no_query.read("D1_left")  # nothing to ask: unknown, not a crash
            await no_query.write("D1_left", False)
            await board.switched_to(2)
            no_query.close()

        try:
            run(go(), 20)
        finally:
            board.stop()
        assert [(c, s) for c, s, _ in board.switched] == [(1, True), (1, False)]
        assert not board.sent_anything


def test_relay_board_unplugged(tmp_path):
    io = _io(str(tmp_path / "ttyUSB9"), query=False)

    async def go():
        assert await io.connect() is False
        with pytest.raises(LinkDown):
            await io.write("D1_left", True)

    run(go(), 10)
