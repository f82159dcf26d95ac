"""The timing process: reads the line's inputs, decides parcels, fires diverters. Nothing else.

It runs alone in its own process (no API, no JSON, no SQLite writes, no threads) on an asyncio loop
built on select(), whose timers have microsecond resolution (epoll rounds waits up to whole
milliseconds). Messages to and from the service process go over one pipe, pickled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import selectors
import time
from multiprocessing.connection import Connection

from controller.alarms import Alarms
from controller.config import Config
from controller.routing import Router
from controller.tracker import Read, Tracker
from plc.modbus_io import DeviceRefused, LinkDown, ModbusIO

log = logging.getLogger("sorter.timing")
STATUS_EVERY_S = 0.25


def request_realtime() -> str:
    """Ask for SCHED_FIFO (granted under systemd's CPUSchedulingPolicy or CAP_SYS_NICE)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
        return "fifo"
    except (PermissionError, OSError, AttributeError):
        return "normal"


class TimingLoop:
    def __init__(self, cfg: Config, conn: Connection, run_id: str, plc_url: str | None = None):
        self.cfg, self.conn = cfg, conn
        self.url = plc_url or cfg.plc.url
        self.io = ModbusIO(self.url, cfg.io, cfg.plc.timeout_s)
        self.router = Router.from_config(cfg)
        self.tracker = Tracker(cfg, self.router.decide, self._emit_record, run_id)
        self.alarms = Alarms()
        self.period = 1.0 / cfg.plc.poll_hz
        self.stop = False
        self.rtt = 0.0003
        self.policy = "normal"
        self.outbox: list[tuple] = []
        self.polls = 0

    # ---------------------------------------------------------------- messages
    def _emit_record(self, rec: dict) -> None:
        self.outbox.append(("record", rec))

    def _flush(self) -> None:
        if self.outbox:
            try:
                self.conn.send_bytes(pickle.dumps(self.outbox, protocol=pickle.HIGHEST_PROTOCOL))
            except (BrokenPipeError, OSError):
                self.stop = True
            self.outbox = []

    def _on_message(self) -> None:
        try:
            while self.conn.poll():
                for msg in pickle.loads(self.conn.recv_bytes()):
                    self._handle(msg)
        except (EOFError, OSError):
            self.stop = True

    def _handle(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "read":
            _, camera, capture_mono, symbology, text, offset_mm = msg
            self.tracker.add_read(Read(camera, symbology, text, capture_mono, offset_mm))
        elif kind == "watermark":
            self.tracker.camera_caught_up(msg[1], msg[2])
        elif kind == "chute_enabled":
            _, chute, enabled = msg
            (self.tracker.disabled.discard if enabled else self.tracker.disabled.add)(chute)
        elif kind == "pause":
            self.tracker.paused = bool(msg[1])
        elif kind == "reload_routes":
            ok, text = self.router.reload()
            self.outbox.append(("reload_result", ok, text))
        elif kind == "stop":
            self.stop = True

    def _status(self) -> dict:
        t = self.tracker
        return {
            "plc": {"url": self.url, "connected": self.io.connected, "errors": self.io.errors},
            "belt_speed_mps": round(t.clock.speed_mm_s / 1000, 3) if t.clock.last_mono else None,
            "tracked": len(t.parcels), "outputs_on": t.outputs.outputs_on(),
            "counters": dict(t.counters, polls=self.polls), "alarms": self.alarms.list(),
            "full": {c.id: bool(c.full_signal and t.bits.get(c.full_signal)) for c in self.cfg.line.chutes},
            "disabled": sorted(t.disabled), "paused": t.paused, "policy": self.policy,
            "routing_version": self.router.version,
        }

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_message)
        self.policy = request_realtime()
        backoff = self.cfg.plc.reconnect_min_s
        next_status = 0.0
        self.outbox.append(("hello", {"policy": self.policy, "pid": os.getpid()}))
        self._flush()
        while not self.stop:
            if not self.io.connected:
                if await self.io.connect():
                    self.alarms.clear("plc_link")
                    await self._all_off()
                    backoff = self.cfg.plc.reconnect_min_s
                    self.tracker.bits_mono = None
                else:
                    self.alarms.raise_("plc_link", f"no connection to the line's I/O at {self.url}; retrying")
                    self.outbox.append(("status", self._status()))
                    self._flush()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.cfg.plc.reconnect_max_s)
                    continue
            try:
                await self._cycle()
            except LinkDown as exc:
                log.warning("line I/O lost: %s", exc)
                self.alarms.raise_("plc_link", f"lost the line's I/O ({exc}); parcels in flight go to reject")
                self.tracker.fault_all(f"PLC link lost: {exc}")
                self.io.close()
            except DeviceRefused as exc:
                self.alarms.raise_("plc_refused", str(exc))
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self.outbox.append(("status", self._status()))
            self._flush()
        await self._all_off()
        self._flush()
        self.io.close()

    async def _all_off(self) -> None:
        """The safe state: every diverter output off."""
        self.tracker.outputs.clear()
        if not self.io.connected:
            return
        for d in self.cfg.line.diverters:
            for sig in d.outputs.values():
                try:
                    await self.io.write(sig, False)
                except (LinkDown, DeviceRefused):
                    return

    async def _cycle(self) -> None:
        t_start = time.monotonic()
        a = self.tracker.outputs.next_action()
        # a write that falls due while a poll is in flight would wait a round trip: skip the poll
        if a is not None and a.due_mono - t_start < self.period + 2 * self.rtt:
            if self.tracker.outputs.too_late(a, t_start):
                self.tracker.settle_cancelled()
                return
            delay = a.due_mono - time.monotonic() - self.rtt / 2
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.monotonic()
            await self.io.write(a.signal, a.state)
            t1 = time.monotonic()
            self.rtt = 0.9 * self.rtt + 0.1 * (t1 - t0)
            self.tracker.output_done(a, (t0 + t1) / 2)
            return
        values = await self.io.read_inputs()
        self.polls += 1
        s = self.io.sample_mono
        self.tracker.on_inputs(s.get("discrete_input", time.monotonic()), values,
                               s.get("input_register", s.get("holding_register")))
        self.tracker.settle_cancelled()
        wait = t_start + self.period - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


def timing_main(cfg: Config, conn: Connection, run_id: str, plc_url: str | None = None) -> None:
    """Entry point of the timing process (spawned)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s timing %(levelname)s %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # link errors are reported as alarms
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(TimingLoop(cfg, conn, run_id, plc_url).run())
    finally:
        loop.close()
