"""A lean Modbus TCP client for the timing loop's hot path.

The timing loop polls at up to 1 kHz, two reads per poll, plus the fires and the heartbeat: a few
thousand requests a second. pymodbus's client spends ~60-90 µs of CPU on each (framer, transaction
manager, the event loop's turns), a large share of the timing process's CPU (issue 11). A request
here is one `struct.pack`, one `send` and one `recv` (bench/modbus_client.py).

Only what the loop uses: function codes 1, 2, 3, 4, 5, 6 and 16, one request at a time.
Each reply is matched to its request by the MBAP transaction id, unit and function code; a reply
that does not match (the late answer to a request that already timed out) is dropped and counted,
never taken for the current one. Replies look like pymodbus's (`bits`, `registers`, `isError()`,
`exception_code`) so `ModbusIO` handles both transports the same way.

Checked against pymodbus's and modbus-tk's servers (tests/test_modbus_tcp.py), not only against
the simulated line.
"""

from __future__ import annotations

import socket
import struct
import time

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length, unit


class Reply:
    """One answer; the fields pymodbus's responses have, so callers treat both alike."""

    __slots__ = ("function_code", "bits", "registers", "exception_code")

    def __init__(self, fc: int, bits=(), registers=(), exception_code: int | None = None):
        self.function_code = fc
        self.bits = bits
        self.registers = registers
        self.exception_code = exception_code

    def isError(self) -> bool:  # noqa: N802 - pymodbus's name, on purpose
        return self.exception_code is not None


class LinkClosed(ConnectionError):
    """The connection closed, or was never open."""


class ReplyTimeout(TimeoutError):
    """No matching answer within the timeout."""


class ModbusTcpClient:
    """One connection to one Modbus TCP device; one call at a time.

    The calls are coroutines for the loop's sake but never suspend: the request is sent and its
    answer read on a blocking socket. On the timing process's event loop an await that suspends
    costs two extra select() turns and a task wake-up per request, more CPU than the request itself
    (issue 11); the loop awaits every call before its next step anyway, so nothing waits behind it
    that would not have waited before. A dead link blocks the loop for at most `timeout`.
    """

    def __init__(self, host: str, port: int = 502, timeout: float = 0.25):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self._tid = 0
        self._buf = bytearray()
        self._short = False  # the kernel's timeout was cut short for one request
        self.stray = 0    # answers that fit no request in flight (late, duplicated)
        self.garbled = 0  # streams that were not Modbus TCP

    @property
    def connected(self) -> bool:
        return self.sock is not None

    async def connect(self) -> bool:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError:
            return False
        # a request is one small segment: never wait for Nagle
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the kernel times the calls out (SO_RCVTIMEO): a Python socket timeout would add a poll()
        # before every send and every recv
        sock.settimeout(None)
        _set_timeout(sock, self.timeout)
        self.sock = sock
        self._buf.clear()
        return True

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _broken(self, why: str) -> LinkClosed:
        self.close()
        return LinkClosed(why)

    def _request(self, unit: int, fc: int, body: bytes, count: int) -> Reply:
        sock = self.sock
        if sock is None:
            raise LinkClosed("not connected")
        self._tid = tid = (self._tid + 1) & 0xFFFF
        try:
            if self._short:
                _set_timeout(sock, self.timeout)
                self._short = False
            sock.sendall(_MBAP.pack(tid, 0, len(body) + 2, unit) + bytes((fc,)) + body)
        except BlockingIOError as exc:
            raise ReplyTimeout("the request could not be sent in time") from exc
        except OSError as exc:
            raise self._broken(f"connection lost: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        shortened = False
        buf = self._buf
        while True:
            while len(buf) >= 7:
                rtid, proto, length, runit = _MBAP.unpack_from(buf)
                if proto != 0 or length < 2 or length > 254:
                    # not Modbus TCP (or a stream out of step): nothing after this can be trusted
                    self.garbled += 1
                    buf.clear()
                    raise self._broken("garbled Modbus TCP stream")
                end = 6 + length
                if len(buf) < end:
                    break
                pdu = bytes(buf[7:end])
                del buf[:end]
                if rtid != tid or runit != unit or (pdu[0] & 0x7F) != fc:
                    self.stray += 1  # the late answer to a request that timed out: never this one's
                    shortened = True
                    continue
                try:
                    return _parse(fc, pdu, count)
                except ValueError as exc:  # a reply of the wrong size: treated as no answer
                    raise ReplyTimeout(str(exc)) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReplyTimeout("no answer in time")
            try:
                if shortened:  # rare: a stray answer used part of this request's time
                    _set_timeout(sock, left)
                    self._short = True
                data = sock.recv(4096)
            except BlockingIOError as exc:
                raise ReplyTimeout("no answer in time") from exc
            except OSError as exc:
                raise self._broken(f"connection lost: {exc}") from exc
            if not data:
                raise self._broken("connection closed by the device")
            buf += data

    # ------------------------------------------------------------------ the calls ModbusIO makes
    async def read_coils(self, address: int, count: int = 1, device_id: int = 1) -> Reply:
        return self._request(device_id, 1, struct.pack(">HH", address, count), count)

    async def read_discrete_inputs(self, address: int, count: int = 1, device_id: int = 1) -> Reply:
        return self._request(device_id, 2, struct.pack(">HH", address, count), count)

    async def read_holding_registers(self, address: int, count: int = 1, device_id: int = 1) -> Reply:
        return self._request(device_id, 3, struct.pack(">HH", address, count), count)

    async def read_input_registers(self, address: int, count: int = 1, device_id: int = 1) -> Reply:
        return self._request(device_id, 4, struct.pack(">HH", address, count), count)

    async def write_coil(self, address: int, value: bool, device_id: int = 1) -> Reply:
        return self._request(device_id, 5, struct.pack(">HH", address, 0xFF00 if value else 0), 1)

    async def write_register(self, address: int, value: int, device_id: int = 1) -> Reply:
        return self._request(device_id, 6, struct.pack(">HH", address, value & 0xFFFF), 1)

    async def write_registers(self, address: int, values: list[int], device_id: int = 1) -> Reply:
        n = len(values)
        body = struct.pack(f">HHB{n}H", address, n, 2 * n, *[v & 0xFFFF for v in values])
        return self._request(device_id, 16, body, n)


def _set_timeout(sock: socket.socket, s: float) -> None:
    tv = struct.pack("ll", int(s), int((s % 1) * 1e6) or (0 if s >= 1 else 1))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _parse(fc: int, pdu: bytes, count: int) -> Reply:
    if pdu[0] & 0x80:
        if len(pdu) < 2:
            raise ValueError("short exception reply")
        return Reply(fc, exception_code=pdu[1])
    if fc in (1, 2):
        n = pdu[1] if len(pdu) > 1 else -1
        if n != (count + 7) // 8 or len(pdu) != 2 + n:
            raise ValueError(f"a bit reply of {n} bytes for {count} bits")
        raw = int.from_bytes(pdu[2:], "little")
        return Reply(fc, bits=[(raw >> i) & 1 == 1 for i in range(count)])
    if fc in (3, 4):
        n = pdu[1] if len(pdu) > 1 else -1
        if n != 2 * count or len(pdu) != 2 + n:
            raise ValueError(f"a register reply of {n} bytes for {count} registers")
        return Reply(fc, registers=list(struct.unpack_from(f">{count}H", pdu, 2)))
    if len(pdu) != 5:  # 5, 6, 16 echo address and value/count
        raise ValueError(f"a write reply of {len(pdu)} bytes")
    return Reply(fc)
