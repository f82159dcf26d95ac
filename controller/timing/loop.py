"""The timing process: reads the line's inputs, decides parcels, fires diverters. Nothing else.

It runs alone in its own process (no API, no JSON, no SQLite writes, no threads) on an asyncio loop
built on select(), whose timers have microsecond resolution (epoll rounds waits up to whole
milliseconds). Messages to and from the service process go over one pipe, pickled.

Each turn of the loop does exactly one I/O request, chosen by urgency: a diverter output that falls
due within the next poll (waited for to the microsecond), else a heartbeat or a signal-tower write
that is due, else one poll of every input.

Fail safe:
- every diverter output has a maximum on-time (controller/outputs.py);
- a heartbeat register is written every `plc.heartbeat.period_ms`: the PLC or relay board drops its
  outputs and stops induction when it stops (the PC died, the link is gone);
- a lost link raises `plc_link`, sends every parcel in flight to reject (`fault`), and reconnects
  with backoff (reconnect_min_s doubling to reconnect_max_s); the line recovers without a restart;
- a write that got no answer leaves the output's state unknown: it is switched off, read back, and
  the parcels of that window go to reject (`fault`);
- `shutdown(reason)` is the one path to the safe state: parcels in flight to reject, every output
  off, induction disabled, tower red.

The clock and the I/O are handed in (timing/clock.py; anything with open_line_io's interface), so
the tests run this very loop on a virtual clock against the simulated line (tests/virtual_line.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
from bisect import bisect_right
from multiprocessing.connection import Connection

from sorter.controller.timing.alarms import Alarms
from sorter.controller.timing.clock import SystemClock
from sorter.controller.config.line import Config
from sorter.controller.routing.router import RouteDecision, Router
from sorter.controller.timing.line_state import LineState
from sorter.controller.timing.link_pace import LinkPace
from sorter.controller.timing.outputs import Action
from sorter.controller.timing.tracker import Tracker
from sorter.controller.timing.latch import PlcTracker
from sorter.plc.line_io import DeviceRefused, LinkDown, NoAnswer, open_line_io
from sorter.messages import (Hello, Inducted, InstallRouting, Read, Record, ResetLine, SetChuteEnabled, SetPaused,
                             SetTestMode, SilenceBuzzer, Stop,
                             TimingStatus, Watermark)

log = logging.getLogger("sorter.timing")
STATUS_EVERY_S = 0.25
UNEXPECTED_ALARM_S = 60  # the unexpected-parcel alarm stays this long after the last one
TURN_EVERY_S = 0.01  # the longest the loop runs without a real event-loop turn (see TimingLoop._wait)
# fire timing error histogram (ms): bucket i counts errors in [EDGES[i-1], EDGES[i])
FIRE_HIST_EDGES = (-5.0, -2.0, -1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def test_mode_decide(cfg: Config, decide):
    """Commissioning: every parcel to plc.test_chute (fixed) or to each diverter chute in turn
    (round_robin), whatever its reads; the record says so."""
    mode = cfg.plc.test_mode
    if mode == "off":
        return decide
    chutes = [c.id for c in cfg.line.chutes if c.diverter]
    turn = itertools.cycle(chutes)

    def decide_test(reads, available=lambda c: True):
        d = decide(reads, available)
        chute = cfg.plc.test_chute if mode == "fixed" else next(turn)
        if not available(chute):
            return RouteDecision("chute_unavailable", None, d.waybill, d.carrier, d.destination,
                                 f"test mode {mode}: {chute} is full or disabled", f"test:{mode}")
        return RouteDecision("sorted", chute, d.waybill, d.carrier, d.destination,
                             f"test mode {mode}: sent to {chute}", f"test:{mode}")
    return decide_test


class FireHistogram:
    def __init__(self):
        self.counts = [0] * (len(FIRE_HIST_EDGES) + 1)
        self.n = 0

    def add(self, err_ms: float) -> None:
        self.counts[bisect_right(FIRE_HIST_EDGES, err_ms)] += 1
        self.n += 1

    def snapshot(self) -> dict:
        return {"edges_ms": list(FIRE_HIST_EDGES), "counts": list(self.counts), "n": self.n}


class TimingLoop:
    tracker_cls = PlcTracker  # plc/mailbox.py: MailboxLoop uses its own for plc_tracking
    gc_pauses = None  # a GcPauses when the loop runs in its own process (timing/process.py)

    def __init__(self, cfg: Config, conn: Connection | None, run_id: str, plc_url: str | None = None, *,
                 io=None, clock=None, tracker: Tracker | None = None, routing=None, first_pid: int = 1,
                 latch_baseline: int | None = None):
        """`io`: the line's I/O (default: open_line_io(cfg, url)); `clock`: monotonic(), wall(),
        async sleep(s) and request_realtime() (default: SystemClock; tests pass a virtual one).
        `routing`: the tables the service loaded (a RoutingState), or why there are none (a str: the
        line stays `faulted` until a table is installed), or None to load the config's files here.
        `first_pid`: the run's next parcel id (a restarted process goes on from the last one);
        `latch_baseline`: the latch's head-edge count the process before this one had accounted for."""
        self.cfg, self.conn = cfg, conn
        self.plc = cfg.plc
        self.url = plc_url or cfg.plc.url
        self.io = io if io is not None else open_line_io(cfg, self.url)
        self.clock = clock if clock is not None else SystemClock()
        # bound once: the hot path calls them every turn
        self._mono, self._sleep = self.clock.monotonic, self.clock.sleep
        self._block = getattr(self.clock, "wait_readable", None) if conn is not None else None
        self.turned_at = 0.0  # the last real event-loop turn (see _wait)
        self.line = LineState(estop_mapped=bool(cfg.plc.estop_signal), run_mapped=bool(cfg.plc.run_signal),
                              test_mode=cfg.plc.test_mode, wall=self.clock.wall)
        self.router = None
        if tracker is None:
            self.router = self._open_router(routing)
            tracker = self.tracker_cls(cfg, test_mode_decide(cfg, self._decide), self._emit_record, run_id,
                                       wall=self.clock.wall, first_pid=first_pid, on_induct=self._inducted)
            if cfg.plc.latch:
                tracker.setup_latch(cfg.plc.latch)
                tracker.latch_baseline = latch_baseline
        self.tracker = tracker
        self.tracker.outputs.max_late_s = cfg.plc.max_late_ms / 1000
        self.latched = isinstance(tracker, PlcTracker) and tracker.latch is not None
        self.alarms = Alarms(wall=self.clock.wall)
        self.period = 1.0 / cfg.plc.poll_hz
        self.idle_period = 1.0 / cfg.plc.idle_poll_hz if cfg.plc.idle_poll_hz else None
        self.quiet_since: float | None = None
        self.idle_polls = 0
        self.stop = False
        self.rtt = 0.0003      # a write's round trip (moving average)
        self.pace = LinkPace(cfg.plc.max_late_ms / 1000, timed_by_answer=getattr(self.io, "kind", "tcp") == "tcp")
        self.poll_s = 0.0006   # one poll of every input (moving average)
        self.policy = "normal"
        self.outbox: list = []  # messages for the service, sent once per turn
        self.polls = 0
        self.fires = FireHistogram()
        self.values: dict[str, int] = {}
        self.hb_value = 0
        self.hb_next = 0.0
        self.hb_period = cfg.plc.heartbeat.period_ms / 1000 if cfg.plc.heartbeat else None
        self.aux: dict[str, int] = {}  # low-priority writes pending: signal -> value (tower, induct enable)
        # the last turn wrote the heartbeat or an aux signal: this one polls (over a slow link the
        # heartbeat, always due again, would otherwise leave the inputs unread)
        self.wrote_last = False
        self.tower_state: str | None = None
        self.buzzer_silenced = False
        self.induct_state: int | None = None
        self.link_losses = 0
        # outputs a switch-on was sent to and no answered switch-off since: on at the device, perhaps
        self.maybe_on: set[str] = set()
        self.write_faults = 0
        self.reset_input: int | None = None
        self.drain_until: float | None = None  # stopping: the parcels in flight have until then
        self.drain_before_pid = 0
        self.unexpected_seen = 0
        self.unexpected_mono: float | None = None

    # ---------------------------------------------------------------- routing
    def _open_router(self, routing) -> Router | None:
        if isinstance(routing, str):
            self.line.set_config_fault(f"no routing table: {routing}")
            return None
        try:
            return Router.from_config(self.cfg, state=routing)
        except Exception as exc:  # noqa: BLE001 - a bad file on disk must not crash-loop this process
            log.error("no routing table: %s", exc)
            self.line.set_config_fault(f"no routing table: {exc}")
            return None

    def _decide(self, reads, available=lambda c: True) -> RouteDecision:
        if self.router is None:
            return RouteDecision("fault", None, None, None, None, self.line.config_fault or "no routing table", "")
        return self.router.decide(reads, available)

    def _install(self, state) -> None:
        # the service process parsed and validated the files; here the new table is only swapped in
        if self.router is None:
            try:
                self.router = Router.from_config(self.cfg, state=state)
            except Exception as exc:  # noqa: BLE001 - e.g. the manifest cannot be opened
                self.line.set_config_fault(f"no routing table: {exc}")
                return
            self.line.set_config_fault(None)
        else:
            self.router.install(state)

    # ---------------------------------------------------------------- messages
    def _emit_record(self, rec: dict) -> None:
        rec["_latch_seq"] = getattr(self.tracker, "accounted_seq", None)
        self.outbox.append(Record(rec))

    def _inducted(self, p) -> None:
        self.outbox.append(Inducted(self.tracker.run_id, p.pid, p.induct_wall,
                                    getattr(self.tracker, "accounted_seq", None)))

    def _flush(self) -> None:
        if self.outbox and self.conn is not None:
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

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is Read:
            self.tracker.add_read(msg)
        elif kind is Watermark:
            self.tracker.camera_caught_up(msg.camera, msg.mono)
        elif kind is SetChuteEnabled:
            (self.tracker.disabled.discard if msg.enabled else self.tracker.disabled.add)(msg.chute_id)
        elif kind is SetPaused:
            self.line.set_paused(bool(msg.paused))
        elif kind is ResetLine:
            self._reset(msg.who or "the API")
        elif kind is SilenceBuzzer:
            self._silence_buzzer(msg.who)
        elif kind is SetTestMode:
            self._set_test_mode(msg.mode, msg.chute, msg.who)
        elif kind is InstallRouting:
            self._install(msg.state)
        elif kind is Stop:
            if msg.drain_s > 0 and self.io.connected and self.line.state not in ("stopping",):
                self.line.stop()  # induction off; the parcels in flight go on to their chutes
                self.drain_until = self._mono() + msg.drain_s
                # on a line that cannot stop its infeed, parcels keep coming: only these are waited for
                self.drain_before_pid = self.tracker.next_pid
            else:
                self.stop = True
        else:
            log.warning("unknown message %r", kind.__name__)

    def _status(self) -> dict:
        t = self.tracker
        plc = self.io.status()
        plc["url"] = self.url
        return {
            "plc": plc,
            "belt_speed_mps": round(t.clock.speed_mm_s / 1000, 3) if t.clock.last_mono else None,
            "tracked": len(t.parcels), "outputs_on": t.outputs.outputs_on(),
            "counters": dict(t.counters, polls=self.polls, link_losses=self.link_losses,
                             write_faults=self.write_faults, idle_polls=self.idle_polls, slow_link_spells=self.pace.slow_spells,
                             switch_ons_refused_slow_link=self.pace.refused_switch_ons,
                             switch_ons_answered_late=self.pace.late_switch_ons,
                             **(self.gc_pauses.counters() if self.gc_pauses is not None else {})),
            "unexpected_by_chute": dict(t.unexpected_by_chute),
            "read_offsets": t.read_offsets(),
            "confirm_offsets": t.confirm_offsets(),
            "alarms": self.alarms.list(),
            "full": {c.id: bool(c.full_signal and t.bits.get(c.full_signal)) for c in self.cfg.line.chutes},
            "disabled": sorted(t.disabled), "paused": self.line.paused, "policy": self.policy,
            "line": self.line.snapshot(),
            "routing_version": self.router.version if self.router else "",
            # for plc/api_plc.py (GET /api/io): the live I/O and the fire timing histogram
            "io": {"mode": self.plc.mode, "test_mode": self.plc.test_mode, "inputs": dict(self.values),
                   "safe_reason": self.safe_reason, "latch": self.latched, "rtt_ms": round(self.rtt * 1000, 3),
                   "pace": self.pace.snapshot(),
                   "heartbeat": self.hb_value if self.hb_period else None, "tower": self.tower_state,
                   "buzzer_silenced": self.buzzer_silenced,
                   "fire_hist": self.fires.snapshot()},
        }

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.conn is not None:
            loop.add_reader(self.conn.fileno(), self._on_message)
        self.policy = self.clock.request_realtime()
        backoff = self.plc.reconnect_min_s
        next_status = 0.0
        self.outbox.append(Hello({"policy": self.policy, "pid": os.getpid()}))
        self._flush()
        linked = False  # a connection is up whose loss has not been handled yet
        while not self.stop:
            if linked and not self.io.connected:
                # the transport saw the connection close (between two cycles, or during one whose
                # calls all got their answers) before any call could raise LinkDown: the same loss
                self._link_lost(LinkDown(f"{self.url}: connection closed"))
                linked = False
            if not self.io.connected:
                if await self.io.connect():
                    log.info("connected to the line's I/O at %s", self.url)
                    self.alarms.clear("plc_link")
                    backoff = self.plc.reconnect_min_s
                    self.tracker.bits_mono = None
                    if await self._safe_outputs():
                        linked = True
                        self.line.link(True)
                        self.hb_next = 0.0
                        self._set_tower()
                    else:
                        self.io.close()
                        continue
                else:
                    self.alarms.raise_("plc_link", f"no connection to the line's I/O at {self.url}; "
                                                   f"retrying every {backoff:.1f} s", "plc_link.no_connection",
                                       url=self.url, every_s=f"{backoff:.1f}")
                    self.line.link(False, f"no connection to the line's I/O at {self.url}")
                    if self.drain_until is not None:
                        break  # stopping: without the I/O nothing in flight can be tracked
                    self.outbox.append(TimingStatus(self._status()))
                    self._flush()
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.plc.reconnect_max_s)
                    continue
            try:
                await self._cycle()
            except LinkDown as exc:  # NoAnswer on a poll too: the link is not trustworthy
                self._link_lost(exc)
                linked = False
            except DeviceRefused as exc:
                self.alarms.raise_("plc_refused", f"the device refused a request: {exc}", "plc_refused.request",
                                   error=exc)
            now = self._mono()
            if self.drain_until is not None and (now >= self.drain_until or not self._in_flight()):
                self.stop = True
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self._check_unexpected(now)
                self.outbox.append(TimingStatus(self._status()))
            self._flush()
        self.line.stop()
        await self.shutdown("controller stopped")
        self.outbox.append(TimingStatus(self._status()))
        self._flush()
        self.io.close()

    def _check_unexpected(self, now: float) -> None:
        """A chute saw a parcel nobody sent it (put on the belt by hand after the induct eye, or
        one that fell in by itself): counted per chute, and an alarm for a minute after the last."""
        n = self.tracker.counters["unexpected_confirms"]
        if n != self.unexpected_seen:
            self.unexpected_seen, self.unexpected_mono = n, now
            where = ", ".join(f"{c} {k}" for c, k in sorted(self.tracker.unexpected_by_chute.items()))
            self.alarms.raise_("unexpected_confirms", f"{n} parcels arrived in chutes nobody sent them to ({where}): "
                                                      "put on the belt by hand after the induct eye?",
                               "unexpected_confirms.count", n=n, where=where)
        elif self.unexpected_mono is not None and now - self.unexpected_mono > UNEXPECTED_ALARM_S:
            self.alarms.clear("unexpected_confirms")
            self.unexpected_mono = None

    def _in_flight(self) -> bool:
        """A parcel that was on the belt when the drain began is still on its way."""
        return any(p.state != "done" and p.pid < self.drain_before_pid for p in self.tracker.parcels)

    @property
    def safe_reason(self) -> str | None:
        """Why the line is not sorting (None while it is)."""
        return None if self.line.state == "running" else self.line.reason

    def _link_lost(self, exc: Exception) -> None:
        log.warning("line I/O lost: %s", exc)
        self.link_losses += 1
        text = f"lost the line's I/O ({exc}); parcels in flight go to reject; reconnecting"
        if self.maybe_on:
            # no switch-off can reach them now: they stay on until the device's watchdog drops them
            self.pace.held_on_losses += 1
            outputs = ", ".join(sorted(self.maybe_on))
            self.alarms.raise_("plc_link", f"{text}; {outputs} may still be on until the device's watchdog "
                                           "drops it (a parcel behind may be pushed into that chute)",
                               "plc_link.lost_held", error=exc, outputs=outputs)
        else:
            self.alarms.raise_("plc_link", text, "plc_link.lost", error=exc)
        self.line.link(False, f"link lost: {exc}")
        self.tracker.fault_all(f"PLC link lost: {exc}")
        self.io.close()

    async def shutdown(self, reason: str) -> bool:
        """The one path to the safe state: parcels in flight to reject (fault), every output off,
        induction disabled, tower red. The heartbeat stops with the loop, so the PLC's watchdog
        holds the line safe even if these writes cannot be made. Returns False when the link
        failed on the way."""
        log.warning("safe state: %s", reason)
        self.tracker.fault_all(reason)
        return await self._safe_outputs(tower="red")

    async def _safe_outputs(self, tower: str | None = "red") -> bool:
        """Every diverter output off (and induction off, tower to `tower`) — on (re)connect too."""
        self.tracker.outputs.clear()
        if not self.io.connected:
            return False
        sigs = self._safe_signals()
        for sig in sigs:
            try:
                await self.io.write(sig, False)
                self.maybe_on.discard(sig)
            except DeviceRefused as exc:
                # the link works; the device will not take this output: alarm, and every parcel
                # planned on it becomes a fault when its switch-on is refused too
                self.alarms.raise_("plc_refused", f"cannot switch {sig} off: {exc}", "plc_refused.switch_off",
                                   signal=sig, error=exc)
            except LinkDown:
                return False
        if self.plc.induct_enable:
            self.induct_state = 0
        if tower:
            self._set_tower(tower, induct=False)
            while self.aux:  # the safe state is written now, not when the loop finds time
                sig, value = self.aux.popitem()
                try:
                    await self.io.write_register(sig, value)
                except DeviceRefused as exc:
                    self.alarms.raise_("plc_refused", f"cannot write {sig}: {exc}", "plc_refused.write",
                                       signal=sig, error=exc)
                except LinkDown:
                    return False
        return True

    def _safe_signals(self) -> list[str]:
        """The outputs `_safe_outputs` switches off: every diverter output and induction enable."""
        sigs = [s for d in self.cfg.line.diverters for s in d.outputs.values()]
        if self.plc.induct_enable:
            sigs.append(self.plc.induct_enable)
        return sigs

    # ---------------------------------------------------------------- tower & aux writes
    def _set_tower(self, state: str | None = None, induct: bool | None = None) -> None:
        """The tower lamps and induct enable as the line state says (`state`, `induct`: the safe
        state's own, whatever the line state)."""
        t = self.plc.tower
        if state is None:
            state = self.line.tower(bool(self.alarms.active))
        if self.plc.induct_enable:
            want = int(self.line.induct_enable if induct is None else induct)
            if self.induct_state != want:
                self.aux[self.plc.induct_enable] = want
                self.induct_state = want
        if t is None or state == self.tower_state:
            return
        self.tower_state = state
        for colour in ("green", "amber", "red"):
            sig = getattr(t, colour)
            if sig:
                self.aux[sig] = int(colour == state)
        if state == "red":
            self.buzzer_silenced = False   # a new red sounds again, whoever silenced the last one
        if t.buzzer:
            self.aux[t.buzzer] = int(state == "red" and not self.buzzer_silenced)

    def _set_test_mode(self, mode: str, chute: str | None, who: str) -> None:
        """A test mode switched while the line runs: the parcels decided from now on follow it."""
        if not hasattr(self.tracker, "decide_fn"):   # PLC tracking: the PLC decides nothing of ours
            log.warning("test mode %s from %s refused: this tracking mode has no test modes", mode, who)
            return
        plc = self.cfg.plc.model_copy(update={"test_mode": mode, "test_chute": chute if mode == "fixed" else None})
        self.cfg = self.cfg.model_copy(update={"plc": plc})
        self.plc = plc
        self.tracker.decide_fn = test_mode_decide(self.cfg, self._decide)
        self.line.test_mode = None if mode == "off" else (f"fixed:{chute}" if mode == "fixed" else mode)
        self._set_tower()
        log.warning("test mode %s%s switched by %s", mode, f" ({chute})" if chute else "", who or "the API")

    def _silence_buzzer(self, who: str) -> None:
        """An acknowledge on the page: the buzzer stops, the lamps stay as the line state says."""
        self.buzzer_silenced = True
        t = self.plc.tower
        if t is not None and t.buzzer:
            self.aux[t.buzzer] = 0
        log.info("buzzer silenced by %s", who or "the API")

    def _check_line_inputs(self, values: dict[str, int]) -> str | None:
        """The e-stop, run and reset inputs into the line state. Returns why the line must go to its
        safe state now (the e-stop opened, the belt stopped), else None."""
        p, line = self.plc, self.line
        if p.estop_signal:
            ok = bool(values.get(p.estop_signal))
            was = line.estop_input_ok
            if line.estop_input(ok):
                self.alarms.raise_("estop", "emergency stop pressed: parcels in flight go to reject; "
                                            "reset after it is released", "estop.pressed")
                return "emergency stop"
            if ok and was is False and line.estop_latched:
                self.alarms.raise_("estop", "emergency stop released: press reset (page, API or the reset "
                                            "button) to restart the line", "estop.released")
        if p.run_signal:
            running = bool(values.get(p.run_signal))
            was = line.belt_running
            if running != was:
                line.belt_input(running)
                if not running and was:
                    self.alarms.raise_("belt_stopped", "the belt stopped with parcels possibly in flight",
                                       "belt_stopped.in_flight")
                    return "the belt stopped with parcels possibly in flight"
                if running:
                    self.alarms.clear("belt_stopped")
        if p.reset_signal:
            pressed = int(bool(values.get(p.reset_signal)))
            if pressed and self.reset_input == 0:
                self._reset("the reset button")
            self.reset_input = pressed
        return None

    def _reset(self, who: str) -> None:
        ok, text = self.line.reset()
        log.warning("reset by %s: %s", who, text)
        if ok and not self.line.estop_latched:
            self.alarms.clear("estop")

    # ---------------------------------------------------------------- one turn
    async def _cycle(self) -> None:
        t_start = self._mono()
        out = self.tracker.outputs
        a = out.next_action()
        # a write that falls due while a poll is in flight would wait a round trip: skip the poll
        if a is not None and a.due_mono - t_start < self.period + self.poll_s + self.rtt:
            if out.too_late(a, t_start):
                self.tracker.settle_cancelled()
                return
            await self._fire(a)
            return
        busy_until = a.due_mono - self.poll_s - self.rtt - self.period if a is not None else float("inf")
        if self.wrote_last:
            busy_until = float("-inf")  # one heartbeat or tower write between two polls, never a run of them
        self.wrote_last = False
        if self.hb_period is not None and t_start >= self.hb_next and busy_until > t_start:
            self.wrote_last = True
            self.hb_next = t_start + self.hb_period
            self.hb_value = (self.hb_value + 1) & 0xFFFF
            await self.io.write_register(self.plc.heartbeat.signal, self.hb_value)
            self._paced(t_start)
            return
        if self.aux and busy_until > t_start:
            self.wrote_last = True
            sig, value = self.aux.popitem()
            try:
                await self.io.write_register(sig, value)
            except DeviceRefused as exc:
                self.alarms.raise_("plc_refused", f"cannot write {sig}: {exc}", "plc_refused.write",
                                   signal=sig, error=exc)
            self._paced(t_start)
            return
        values = await self.io.read_inputs()
        self.poll_s = 0.9 * self.poll_s + 0.1 * self._paced(t_start)
        self.polls += 1
        self.values = values
        s = self.io.sample_mono
        why = self._check_line_inputs(values)
        if why is not None:
            await self.shutdown(why)  # the line state holds induction off until it may run again
        if self.latched:
            self.tracker.on_latch(values)
        self.tracker.on_inputs(s.get("discrete_input", self._mono()), values,
                               s.get("input_register", s.get("holding_register")))
        if self.latched:
            self.tracker.after_poll()
        self.tracker.settle_cancelled()
        self.tracker.intake_closed = None if self.line.state == "running" else f"the line was {self.line.state}"
        if self.plc.tower or self.plc.induct_enable:
            self._set_tower()
        wait = t_start + self._poll_period(t_start) - self._mono()
        if wait > 0:
            await self._wait(wait)

    async def _wait(self, s: float) -> None:
        """Wait `s` seconds, the service's messages handled as they come. On the real clock a short
        wait is a select() on the service's pipe alone: an event-loop turn per wait (with the two per
        request it replaced) cost more CPU than the poll it waited for (issue 11). A real turn is
        still taken at least every TURN_EVERY_S, so the loop's signal handlers (SIGTERM) run."""
        block = self._block
        now = self._mono()
        if block is None or s > TURN_EVERY_S or now - self.turned_at >= TURN_EVERY_S:
            self.turned_at = now
            await self._sleep(s)
            return
        deadline = now + s
        while not self.stop:
            if block(self.conn, deadline - now):
                self._on_message()
            now = self._mono()
            if now >= deadline:
                return

    def _poll_period(self, now: float) -> float:
        """poll_hz's period; idle_poll_hz's once the belt has been empty for idle_after_s."""
        if self.idle_period is None:
            return self.period
        t = self.tracker
        quiet = (not t.parcels and not any(t.outputs.windows.values()) and not self.aux
                 and not self.values.get(self.cfg.line.induct.signal) and not getattr(t.outputs, "answers", None))
        if not quiet:
            self.quiet_since = None
            return self.period
        if self.quiet_since is None:
            self.quiet_since = now
        if now - self.quiet_since < self.plc.idle_after_s:
            return self.period
        self.idle_polls += 1
        return self.idle_period

    # ---------------------------------------------------------------- the link's pace
    def _paced(self, t0: float) -> float:
        """A request sent at `t0` has just been answered: its round trip, noted. A slow one raises
        `plc_slow` (no switch-ons until the link is fast again; controller/timing/link_pace.py)."""
        now = self._mono()
        rt = now - t0
        pace = self.pace
        if pace.note(rt, now):
            if self.tracker.outputs.outputs_on():
                pace.held_on_spells += 1  # its switch-off waits behind the slow link: see link_pace.py
            log.warning("PLC link slow: a round trip took %.1f ms (limit %.1f ms)", rt * 1000, pace.limit_s * 1000)
            self.alarms.raise_("plc_slow", f"the PLC link is slow (a round trip took {rt * 1000:.0f} ms, over "
                                           f"{pace.limit_s * 1000:.0f} ms = 2 x plc.max_late_ms): no diverter is "
                                           "switched on until it is fast again; parcels go to reject",
                               "plc_slow.round_trip", ms=f"{rt * 1000:.0f}", limit_ms=f"{pace.limit_s * 1000:.0f}")
        elif not pace.slow and "plc_slow" in self.alarms.active:
            self.alarms.clear("plc_slow")
        return rt

    def _timed_by_answer(self, signal: str) -> bool:
        return self.pace.limit_s is not None and self.io.io[signal].table != "relay"

    async def _fire(self, a) -> None:
        timed = self._timed_by_answer(a.signal)
        if a.state and timed and self.pace.slow:
            self.pace.refused_switch_ons += 1
            self.tracker.outputs.refuse(a, f"not switched on: the PLC link is slow (last round trip "
                                           f"{self.pace.last_s * 1000:.0f} ms)")
            self.tracker.settle_cancelled()
            return
        lead = self.io.write_lead_s(a.signal, self.rtt)
        delay = a.due_mono - self._mono() - lead
        if delay > 0:
            await self._wait(delay)
        t0 = self._mono()
        if not await self._write_output(a):
            return
        t1 = self._mono()
        late = timed and self.pace.too_slow(self._paced(t0))
        if late and a.state:
            await self._late_switch_on(a, t0, t1)
            return
        if not late:  # a late answer says nothing reliable about the link's usual round trip
            self.rtt = 0.9 * self.rtt + 0.1 * (t1 - t0)
        if self.io.io[a.signal].table == "relay" or self.io.kind == "rtu":
            applied = t0 + lead
        else:
            applied = (t0 + t1) / 2
        if a.state:
            self.fires.add((applied - a.due_mono) * 1000)
        self.tracker.output_done(a, applied)

    async def _late_switch_on(self, a, t0: float, t1: float) -> None:
        """A switch-on answered `t1 - t0` after it was sent acted anywhere in that span, perhaps
        too late for its parcel: off at once, before anything else goes on. Its parcels' records
        say where they went only if a confirm photo-eye sees them."""
        self.pace.late_switch_ons += 1
        late_ms = (t1 - a.due_mono) * 1000
        log.warning("%s: switch-on answered %.0f ms after it was sent: switched off at once", a.signal,
                    (t1 - t0) * 1000)
        self.tracker.output_done(a, t1)  # the window is on since (at the latest) now
        off = Action(a.signal, False, self._mono(), a.pids)
        if not await self._write_output(off):
            return
        self._paced(off.due_mono)
        self.tracker.output_late(a, f"{a.signal} switched on up to {late_ms:.0f} ms late (the PLC link "
                                    "was slow) and off again at once: where the parcel went is known only "
                                    "from its chute's photo-eye")
        self.tracker.output_done(off, self._mono())

    async def _write_output(self, a) -> bool:
        """Write `a`'s output; False when the write failed (handled: its window's parcels to reject)."""
        if a.state:
            self.maybe_on.add(a.signal)
        try:
            await self.io.write(a.signal, a.state)
            if not a.state:
                self.maybe_on.discard(a.signal)
        except NoAnswer as exc:
            await self._write_unknown(a, exc)
            return False
        except DeviceRefused as exc:
            self.alarms.raise_("plc_refused", f"{a.signal}: {exc}", "plc_refused.output", signal=a.signal, error=exc)
            self._reject_window(a.signal, "fault", f"the device refused to switch {a.signal} "
                                                   f"{'on' if a.state else 'off'}: {exc}")
            return False
        return True

    async def _write_unknown(self, a, exc: Exception) -> None:
        """No answer to a write: the output may or may not have switched. Switch it off, read it
        back, and send the window's parcels to reject. If that fails too, the link is lost."""
        self.write_faults += 1
        log.warning("%s: write got no answer (%s); state unknown", a.signal, exc)
        self.alarms.raise_("plc_write", f"{a.signal}: a write got no answer; parcels sent to reject",
                           "plc_write.no_answer", signal=a.signal)
        self._reject_window(a.signal, "fault", f"no answer to the write of {a.signal}: output state unknown")
        for _attempt in range(2):
            try:
                if not await self.io.resync(a.signal):
                    break
                await self.io.write(a.signal, False)
                if self.io.io[a.signal].table == "relay" and not self.io.boards[self.io.io[a.signal].board].cfg.query:
                    self.maybe_on.discard(a.signal)
                    return
                if await self.io.read(a.signal) == 0:
                    self.maybe_on.discard(a.signal)
                    return
            except NoAnswer:
                continue
        raise LinkDown(f"{a.signal}: no answer to writes or read-back; output state unknown")

    def _reject_window(self, signal: str, outcome: str, reason: str) -> None:
        """Drop the first window of `signal`; its parcels go to the reject chute with `outcome`."""
        wins = self.tracker.outputs.windows[signal]
        if not wins:
            return
        w = wins.pop(0)
        for p in self.tracker.parcels:
            if p.pid in w.pids and p.state == "travelling" and (p.outcome is None or p.outcome == "sorted"):
                p.outcome, p.reason, p.chute = outcome, reason, None
                self.tracker._expect_reject(p)  # see the note to the lead: a public Tracker.reject()
