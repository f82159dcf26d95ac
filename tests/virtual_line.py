"""The real timing loop against the simulated line, in one process, on a virtual clock.

The loop under test is the one the timing process runs (TimingLoop, or MailboxLoop in PLC-tracking
mode), with nothing replaced but its clock, its I/O and its pipe:

- `VirtualClock`: monotonic time that only moves when the loop sleeps or waits for the line, plus a
  queue of things that happen at given moments (a camera's reads arriving, a link going down). A
  sleep moves time on at once, so the loop never waits and a shift runs in seconds of CPU, the same
  way every time: nothing here depends on how busy the machine is.
- `VirtualIO`: the line-I/O interface (plc/line_io.py) served by the simulated line's own I/O
  module and physics (plc/sim/modbus_server.py, physics.py). Each request costs a round trip of
  virtual time, like one Modbus request, and the physics is sampled (or written) half-way through
  it; the three typed errors come as the real driver raises them.
- `VirtualConn`: the pipe to the service. Reads and watermarks reach the loop through its own
  message handler, records and statuses leave through its own flush, pickled as on the real pipe.
- emulated cameras: when a parcel's centre passes a camera, its visible codes arrive after the
  decode latency, then a watermark; an idle camera says so every `idle_every_s`.
- the world's faults and a supervisor's actions, at virtual moments (VirtualLine.at): a chute full,
  a diverter jammed, a chute disabled, a pause, an input forced (tests/test_scenarios.py).

The carriers' advice goes into the manifest before the run (SimAdvice rows); the truth (where each
parcel landed, where it belongs) comes from the physics and SimAdvice, never from the router.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import os
import pickle
import selectors
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from sorter.controller.config.line import Config
from sorter.controller.routing.manifest import Manifest
from sorter.controller.timing.loop import TimingLoop
from sorter.messages import Inducted, Read, Record, TimingStatus, Watermark
from sorter.plc.line_io import DeviceRefused, LinkDown, NoAnswer
from sorter.plc.modbus_io import plan_reads
from sorter.plc.sim.advice import SimAdvice
from sorter.plc.sim.modbus_server import SimIOModule
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import OFF_BELT, LinePhysics, OutputHistory
from sorter.plc.sim.waybills import make_waybill

OUTCOMES = {"sorted", "no_read", "multi_read", "no_route", "chute_unavailable", "too_late", "gap_too_small",
            "lost", "unconfirmed", "fault"}
WALL0 = 1.7e9  # wall time of virtual monotonic 0


class VirtualClock:
    """monotonic()/wall()/sleep() for the loop; at(t, fn) for the world. Time moves only forward."""

    def __init__(self, t0: float = 1000.0):
        self.t = t0
        self._events: list = []
        self._n = 0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL0 + self.t

    async def sleep(self, seconds: float) -> None:
        # nothing to wait for: the world's events up to the wake-up run now, in time order
        if seconds > 0:
            self.advance_to(self.t + seconds)

    def request_realtime(self) -> str:
        return "virtual"

    def at(self, t: float, fn) -> None:
        self._n += 1
        heapq.heappush(self._events, (t, self._n, fn))

    def advance_to(self, t: float) -> None:
        ev = self._events
        while ev and ev[0][0] <= t:
            te, _, fn = heapq.heappop(ev)
            if te > self.t:
                self.t = te
            fn()
        if t > self.t:
            self.t = t


class VirtualConn:
    """The loop's end of the service pipe. The world puts messages in and calls the loop's reader
    callback, as the event loop does when the pipe becomes readable; what the loop sends is
    unpickled into `received`. `fileno()` is a pipe nothing writes to, for the loop's add_reader."""

    def __init__(self):
        self.inbox: deque[bytes] = deque()
        self.received: list = []
        self._r, self._w = os.pipe()

    def fileno(self) -> int:
        return self._r

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.inbox)

    def recv_bytes(self) -> bytes:
        return self.inbox.popleft()

    def send_bytes(self, data: bytes) -> None:
        self.received.extend(pickle.loads(data))

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class VirtualIO:
    """The line-I/O interface (open_line_io's) on the simulated line's I/O module, in virtual time.

    Like Modbus TCP: inputs are read in one request per block of the I/O map (plan_reads, as
    ModbusIO groups them), each sampled half-way through its round trip; a write acts when it
    arrives (half a round trip after it is sent). Faults, armed by the world:
    - link_down(s): the module is gone for s seconds (the connection drops: LinkDown; connecting
      fails until it is back);
    - drop_quietly(s): the same, but the request in flight still gets its answer and raises
      nothing: the transport only notices the close afterwards (as pymodbus's does when the peer
      resets the connection right after answering);
    - no_answer[signal] = applied: the next switch-on of `signal` gets no answer within timeout_s
      (NoAnswer); the output switched or not as `applied` says;
    - refuse: signals whose writes the device refuses (DeviceRefused);
    - slow(one_way_s, seconds): every request and answer takes one_way_s each way for that long
      (a congested or failing network: writes act that much after they are sent);
    - stall_s: the next request starts this much later (the process was not scheduled; what the
      pipe brings meanwhile is handled after it).
    """

    kind = "tcp"

    def __init__(self, cfg: Config, clock: VirtualClock, module: SimIOModule, rtt_s: float = 0.0003):
        self.cfg, self.clock, self.module = cfg, clock, module
        self.io = cfg.io
        self.boards: dict = {}
        self.url = "virtual://line"
        self.rtt_s, self.half = rtt_s, rtt_s / 2
        self.timeout_s = cfg.plc.timeout_s
        self.blocks = plan_reads(cfg.io)
        self.sample_mono: dict[str, float] = {}
        self.holding: dict[str, int] = {}   # holding registers as last written (they read back)
        self._up = False
        self.down_until = float("-inf")
        self.no_answer: dict[str, bool] = {}
        self.refuse: set[str] = set()
        self.stall_s = 0.0
        self.quiet_drop_s: float | None = None
        self.slow_until, self.slow_half = float("-inf"), 0.0
        self.stalled = False
        self.on_resume = None
        self.errors = self.timeouts = self.refusals = self.requests = 0
        self.writes: list[tuple[float, str, int]] = []   # (arrival, signal, value) of every write made
        self.reads_back: list[tuple[float, str, int]] = []

    # ------------------------------------------------------------------ faults
    def link_down(self, seconds: float) -> None:
        self._up = False
        self.down_until = self.clock.t + seconds

    def drop_quietly(self, seconds: float) -> None:
        self.quiet_drop_s = seconds

    def slow(self, one_way_s: float, seconds: float) -> None:
        self.slow_half, self.slow_until = one_way_s, self.clock.t + seconds

    def _one_way(self) -> float:
        return self.slow_half if self.clock.t < self.slow_until else self.half

    # ------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        return self._up

    async def connect(self) -> bool:
        self._up = False
        self.clock.advance_to(self.clock.t + self.rtt_s)
        self._up = self.clock.t >= self.down_until
        return self._up

    def close(self) -> None:
        self._up = False

    async def resync(self, signal: str) -> bool:
        return await self.connect()  # TCP: a fresh connection, so no late answer is taken for the next

    def status(self) -> dict:
        return {"url": self.url, "kind": self.kind, "connected": self.connected, "errors": self.errors,
                "timeouts": self.timeouts, "refusals": self.refusals, "boards": {}}

    def write_lead_s(self, signal: str, rtt_s: float) -> float:
        return rtt_s / 2

    # ------------------------------------------------------------------ one request
    def _send(self) -> float:
        """Start a request; returns the moment it reaches the device."""
        if not self._up:
            raise LinkDown(f"{self.url}: not connected")
        self.requests += 1
        clock = self.clock
        if self.stall_s:
            stall, self.stall_s = self.stall_s, 0.0
            self.stalled = True  # the process is not running: what the pipe brings waits
            clock.advance_to(clock.t + stall)
            self.stalled = False
            if self.on_resume is not None:
                self.on_resume()
        clock.advance_to(clock.t + self._one_way())
        if not self._up:
            self.errors += 1
            raise LinkDown(f"{self.url}: connection lost")
        return clock.t

    def _answer(self, last: bool = False) -> None:
        """The answer arrives. `last`: a request that is a cycle's only one (a heartbeat, tower or
        output write), after which a quiet drop leaves nothing in that cycle to raise."""
        self.clock.advance_to(self.clock.t + self._one_way())
        if not self._up:
            self.errors += 1
            raise LinkDown(f"{self.url}: connection lost")
        if last and self.quiet_drop_s is not None:  # answered; the close is seen only after
            self.link_down(self.quiet_drop_s)
            self.quiet_drop_s = None

    def _register(self, name: str, words: int, t: float) -> int:
        cur = self.holding.get(name, 0)
        reg = self.module.register_value
        if words == 2:
            return reg(name, 0, t, cur >> 16 & 0xFFFF) << 16 | reg(name, 1, t, cur & 0xFFFF)
        return reg(name, 0, t, cur)

    # ------------------------------------------------------------------ reads
    async def read_inputs(self) -> dict[str, int]:
        values: dict[str, int] = {}
        module, register, sample = self.module, self._register, self.sample_mono
        for b in self.blocks:
            t = self._send()
            if b.table == "discrete_input":
                bits = module.input_bits(t)
                for name, _, _ in b.signals:
                    values[name] = int(bits[name])
            else:
                module.physics.advance(t)
                for name, _, words in b.signals:
                    values[name] = register(name, words, t)
            sample[b.table] = t
            self._answer()
        return values

    async def read(self, signal: str) -> int:
        s = self.io[signal]
        t = self._send()
        self.module.physics.advance(t)
        if s.table == "coil":
            v = int(self.module.bit_value(signal, t))
        elif s.table == "discrete_input":
            v = int(self.module.input_bits(t)[signal])
        else:
            v = self._register(signal, s.words, t)
        self._answer()
        self.reads_back.append((t, signal, v))
        return v

    # ------------------------------------------------------------------ writes
    async def write(self, signal: str, state: bool) -> None:
        s = self.io[signal]
        if s.table != "coil":
            raise DeviceRefused(f"{signal} is a {s.table}: not an output")
        t0 = self.clock.t
        t = self._send()
        if signal in self.refuse:
            self.errors += 1
            self.refusals += 1
            self._answer()
            raise DeviceRefused(f"{self.url}: write_coil {signal} refused by the device (Modbus exception 4)", 4)
        unanswered = state and signal in self.no_answer
        applied = self.no_answer.pop(signal) if unanswered else True
        if applied:
            self.module.write_coil(signal, bool(state), t)
            self.writes.append((t, signal, int(state)))
        if unanswered:
            self.clock.advance_to(t0 + self.timeout_s)
            self.errors += 1
            self.timeouts += 1
            raise NoAnswer(f"{self.url}: write_coil {signal} got no answer within {self.timeout_s * 1000:.0f} ms")
        self._answer()

    async def write_register(self, signal: str, value: int) -> None:
        s = self.io[signal]
        if s.table == "coil":
            await self.write(signal, bool(value & 1))
            return
        t = self._send()
        if signal in self.refuse:
            self.errors += 1
            self.refusals += 1
            self._answer()
            raise DeviceRefused(f"{self.url}: write_register {signal} refused by the device (Modbus exception 4)", 4)
        value = int(value) & (0xFFFFFFFF if s.words == 2 else 0xFFFF)
        self.module.register_written(signal, value, t)
        self.holding[signal] = value
        self.writes.append((t, signal, value))
        self._answer(last=True)


# ---------------------------------------------------------------------------------- parcels
LABELS = ("ok", "damaged", "missing", "face_down")


class ListPlan:
    """Parcels given one by one (a scenario's list), with the plan's interface (get, speed_mm_s).
    Each is plain unless it says otherwise: an intact label with its waybill only (no QR code, no
    stale second waybill), advised to the carrier; its waybill, carrier and town come from the
    seeded plan unless given. Keys: length_mm, gap_mm (to the parcel ahead), town, carrier,
    label (ok | damaged | missing | face_down), qr (true: a QR code that carries the waybill),
    stale_waybill (true or a text), in_manifest (false: the carriers never advised it)."""

    def __init__(self, cfg: Config, seed: int, items: list[dict], gap_mm: float = 400.0):
        base = ParcelPlan(cfg, seed)
        self.speed_mm_s = base.speed_mm_s
        self.parcels = []
        rng = np.random.default_rng([seed, 99])
        prev = None
        for i, item in enumerate(items):
            unknown = set(item) - {"length_mm", "gap_mm", "town", "carrier", "label", "qr", "stale_waybill",
                                   "in_manifest"}
            if unknown:
                raise ValueError(f"parcel {i}: unknown key(s) {sorted(unknown)}")
            b = base.get(i)
            label = item.get("label", "ok")
            if label not in LABELS:
                raise ValueError(f"parcel {i}: label must be one of {LABELS}")
            length = float(item.get("length_mm", b.length_mm))
            head_s = 1.0 if prev is None else prev.head_s + (prev.length_mm + float(item.get("gap_mm", gap_mm))) / self.speed_mm_s
            carrier = item.get("carrier", b.carrier)
            waybill = b.waybill if carrier == b.carrier else make_waybill(carrier, rng)
            town = item.get("town", b.town)
            stale = item.get("stale_waybill")
            if stale is True:
                stale = make_waybill(b.carrier, rng)
            p = dataclasses.replace(
                b, index=i, head_s=head_s, length_mm=length, carrier=carrier, waybill=waybill, town=town,
                in_manifest=bool(item.get("in_manifest", True)),
                qr_text=f"{waybill}|{town}|{carrier}" if item.get("qr") else None, ean13=None,
                stale_waybill=stale or None, damaged=label == "damaged", missing=label == "missing",
                face_down=label == "face_down")
            self.parcels.append(p)
            prev = p

    def get(self, index: int):
        return self.parcels[index]

    def __len__(self) -> int:
        return len(self.parcels)


def label_codes(p) -> list[tuple[str, str]]:
    """What a camera decodes on parcel p: its waybill barcode unless damaged, its QR code and
    product EAN-13 when printed, a stale second waybill when one is stuck on; nothing face down."""
    if p.face_down:
        return []
    codes = []
    if not p.missing:
        if not p.damaged:
            codes.append(("code128", p.waybill))
        if p.qr_text:
            codes.append(("qrcode", p.qr_text))
        if p.stale_waybill:
            codes.append(("code128", p.stale_waybill))
    if p.ean13:
        codes.append(("ean13", p.ean13))
    return codes


# ---------------------------------------------------------------------------------- the world
@dataclass
class ParcelTruth:
    index: int
    head_s: float                 # run seconds when its head reached the induct photo-eye
    expected: str                 # the plan's outcome for it (sorted, no_read, multi_read, no_route)
    want: tuple[str, ...]         # the chutes it belongs in (empty: the reject chute)
    ok: frozenset[str]            # where it may rightly land
    landed: str | None            # where it physically went (None: still on the belt)
    landed_s: float | None
    record: dict | None = None


@dataclass
class Run:
    line: "VirtualLine"
    records: list[dict]
    parcels: list[ParcelTruth]
    statuses: list[dict]
    alarms_seen: set[str]
    messages: Counter = field(default_factory=Counter)

    @property
    def loop(self) -> TimingLoop:
        return self.line.loop

    @property
    def tracker(self):
        return self.line.loop.tracker

    @property
    def physics(self):
        return self.line.physics

    def outcomes(self) -> Counter:
        return Counter(r["outcome"] for r in self.records)

    def wrong_chute(self) -> list[ParcelTruth]:
        reject = self.line.cfg.line.reject_chute
        # (a parcel a person took off the belt is nowhere the line put it)
        return [p for p in self.parcels if p.landed is not None and p.landed not in (reject, OFF_BELT)
                and p.landed not in p.ok]

    def mis_sorts(self) -> list[dict]:
        """Parcels not where they belong, the reject chute included for a sortable one (as the
        simulated line's report lists them)."""
        plan = self.line.plan
        return [{"index": p.index, "waybill": plan.get(p.index).waybill, "town": plan.get(p.index).town,
                 "want": sorted(p.ok), "got": p.landed} for p in self.parcels if p.landed not in p.ok]

    def sortable(self) -> list[ParcelTruth]:
        """Parcels that belong in a chute of theirs and found it available all the way."""
        return [p for p in self.parcels if p.want and p.ok == frozenset(p.want)]

    def with_outcome(self, *outcomes: str) -> list[ParcelTruth]:
        return [p for p in self.parcels if p.record and p.record["outcome"] in outcomes]

    def fire_errors_ms(self) -> list[float]:
        return [f.fire_error_ms for f in self.physics.fates.values() if f.fire_error_ms is not None]


class VirtualLine:
    """One run of the real timing loop against the simulated line. `plan`: a ParcelPlan or
    ListPlan; `n`: how many of its parcels come. Events are scheduled with `at(run_s, fn)` (run
    seconds from the start: the first planned parcel's head is at 1.0 s) before `run()`.
    `advice="inbox"`: the carriers' advice goes through the line's manifest inbox as in `sorter
    sim` (a CSV file, imported), instead of straight into the manifest. `tweak(physics)` may
    change the physics before the run (a blind photo-eye); `start_s` starts the controller late."""

    def __init__(self, cfg: Config, plan, n: int, seed: int = 1, *, decode_latency_s: float = 0.03,
                 rtt_s: float = 0.0003, idle_every_s: float = 0.05, reads: bool = True,
                 cameras_report: bool = True, start_s: float = 0.0, loop_cls=None, tweak=None,
                 advice: str = "manifest", stamp_late_s: float = 0.0):
        """`stamp_late_s`: the cameras stamp each frame this much after it was really taken (an IP
        camera's stream latency that no `latency_ms` corrects)."""
        self.cfg, self.plan, self.n, self.seed = cfg, plan, n, seed
        self.stamp_late_s = stamp_late_s
        self.clock = VirtualClock()
        self.t0 = self.clock.t
        if cfg.plc.mode == "plc_tracking":  # the simulated PLC tracks parcels and drives its diverters
            from sorter.plc.sim.mailbox import attach
            self.module = SimIOModule(cfg, None, clock=self.clock.monotonic)
            self.physics = attach(self.module, cfg, plan, self.t0, n)
        else:
            # the line runs as planned until the controller's own writes say otherwise (a controller
            # that starts late, start_s, finds parcels already coming); the coil decides from its
            # first write on
            self.physics = LinePhysics(cfg, plan, self.t0, n, induct_enabled=True)
            self.module = SimIOModule(cfg, self.physics, clock=self.clock.monotonic)
        if tweak is not None:
            tweak(self.physics)
        self.io = VirtualIO(cfg, self.clock, self.module, rtt_s)
        self.start_s = start_s  # the controller starts this late: a parcel may be on the eye already
        self.advice = SimAdvice(cfg, seed)
        if advice == "inbox":
            self._advise_through_inbox()
        else:
            rows = [self.advice.row(plan.get(i)) for i in range(n) if plan.get(i).in_manifest]
            with Manifest(cfg.routing.manifest) as m:
                m.upsert(rows)
        self.conn = VirtualConn()
        self.io.on_resume = self._resumed
        if loop_cls is None:
            loop_cls = TimingLoop
            if cfg.plc.mode == "plc_tracking":
                from sorter.controller.timing.mailbox import MailboxLoop as loop_cls
        self.loop = loop_cls(cfg, self.conn, "virtual", io=self.io, clock=self.clock)
        self.decode_latency_s, self.idle_every_s = decode_latency_s, idle_every_s
        self.reads, self.cameras_report = reads, cameras_report
        self.forced_full: dict[str, list[list[float]]] = {}  # chute -> [from, to] spans its full PE was forced
        self.disabled_spans: dict[str, list[list[float]]] = {}
        self.statuses: list[dict] = []
        self.alarms_seen: set[str] = set()
        self.records: list[dict] = []
        self.journal: list[int] = []  # parcel ids of the Inducted messages (journal rows opened)
        self.extras: list[int] = []  # physics indexes of parcels put on the belt by hand
        self.messages: Counter = Counter()
        self.horizon_s = plan.get(n - 1).head_s + (cfg.line.end_mm + 2000) / plan.speed_mm_s + 30.0

    def _advise_through_inbox(self) -> None:
        """The advice as `sorter sim` sends it: a manifest file in the line's inbox, imported."""
        from sorter.controller.config.routing import manifest_inbox_folder
        from sorter.controller.routing.inbox import ManifestInbox
        from sorter.plc.sim.line import SimLine
        inbox = ManifestInbox(manifest_inbox_folder(self.cfg.routing, sim=True), self.cfg.routing.manifest, settle_s=0)

        def imported(_path):
            refused = [r.why for r in inbox.poll() if r.status != "done"]
            assert not refused, refused
        try:
            SimLine(self.cfg, self.seed, self.n, self.plan, importer=imported).advise(self.n)
        finally:
            inbox.close()

    # ------------------------------------------------------------------ scheduling
    def at(self, run_s: float, fn) -> None:
        self.clock.at(self.t0 + run_s, fn)

    @property
    def now_s(self) -> float:
        return self.clock.t - self.t0

    def send(self, *msgs) -> None:
        """Messages from the service, handled as the loop handles its pipe (once it runs again,
        when it is stalled)."""
        self.conn.inbox.append(pickle.dumps(list(msgs), protocol=pickle.HIGHEST_PROTOCOL))
        if not self.io.stalled:
            self.loop._on_message()

    def _resumed(self) -> None:
        if self.conn.inbox:
            self.loop._on_message()

    def force(self, signal: str, value: int | None) -> None:
        if value is None:
            self.module.forced.pop(signal, None)
        else:
            self.module.forced[signal] = value

    def chute_full(self, chute: str, seconds: float | None) -> None:
        sig = self.cfg.chute(chute).full_signal
        self.force(sig, 1)
        span = [self.now_s, float("inf")]
        self.forced_full.setdefault(chute, []).append(span)
        if seconds is not None:
            def clear():
                self.force(sig, None)
                span[1] = self.now_s
            self.at(self.now_s + seconds, clear)

    def jam(self, signal: str, seconds: float | None) -> None:
        """The diverter behind `signal` stops acting (jammed, its air supply gone): whatever drives
        the output, the parcels pass it."""
        ph = self.physics
        real = ph.outputs[signal]
        ph.outputs[signal] = _Jammed()
        if seconds is not None:
            self.at(self.now_s + seconds, lambda: ph.outputs.__setitem__(signal, real))

    def set_chute_enabled(self, chute: str, enabled: bool) -> None:
        from sorter.messages import SetChuteEnabled
        spans = self.disabled_spans.setdefault(chute, [])
        if enabled and spans and spans[-1][1] == float("inf"):
            spans[-1][1] = self.now_s
        elif not enabled:
            spans.append([self.now_s, float("inf")])
        self.send(SetChuteEnabled(chute, enabled))

    # ------------------------------------------------------------------ cameras
    def _schedule_cameras(self) -> None:
        v, induct = self.plan.speed_mm_s, self.cfg.line.induct.position_mm
        for cam in self.cfg.cameras:
            state = {"pending": 0}
            for i in range(self.n):
                p = self.plan.get(i)
                t_cap = p.head_s + (cam.position_mm - induct + p.length_mm / 2) / v
                self.at(t_cap, lambda p=p, cam=cam, st=state: self._capture(cam, p, st))
            if self.cameras_report:
                self.at(0.0, lambda cam=cam, st=state: self._idle(cam, st))

    def _capture(self, cam, p, st) -> None:
        # planned for when it would pass with the line never stopped: induction or the belt may
        # have stood still since, so ask the physics, and come back when it really passes
        ph = self.physics
        ph.advance(self.clock.t)
        if p.index in ph.held:
            return  # the watchdog stopped induction: it never came under the camera
        t_pass = ph.point_time(p.index, cam.position_mm, p.length_mm / 2, self.clock.t)
        if t_pass > self.clock.t + 1e-9:
            self.clock.at(t_pass, lambda: self._capture(cam, p, st))
            return
        t_cap = self.clock.t + self.stamp_late_s
        codes = label_codes(p) if self.reads else []
        st["pending"] += 1
        self.at(self.now_s + self.decode_latency_s, lambda: self._deliver(cam, t_cap, codes, st))

    def _deliver(self, cam, t_cap: float, codes, st) -> None:
        st["pending"] -= 1
        msgs = [Read(cam.name, s, text, t_cap) for s, text in codes]
        if self.cameras_report:
            # caught up to now, or only to this frame while others are still being decoded
            msgs.append(Watermark(cam.name, t_cap if st["pending"] else self.clock.t))
        if msgs:
            self.send(*msgs)

    def _idle(self, cam, st) -> None:
        if not st["pending"]:
            self.send(Watermark(cam.name, self.clock.t))
        if self.now_s < self.horizon_s:
            self.at(self.now_s + self.idle_every_s, lambda: self._idle(cam, st))

    # ------------------------------------------------------------------ the run
    def _take_messages(self) -> None:
        for msg in self.conn.received:
            kind = type(msg)
            self.messages[kind.__name__] += 1
            if kind is Record:
                self.records.append(msg.record)
            elif kind is Inducted:
                self.journal.append(msg.parcel_id)
            elif kind is TimingStatus:
                self.statuses.append(msg.status)
                self.alarms_seen.update(a["id"] for a in msg.status["alarms"])
        self.conn.received.clear()

    def _watch(self) -> None:
        """Stop once every parcel has left the belt and has its record (or at the horizon)."""
        self._take_messages()
        ph = self.physics
        done = ph.next_index >= self.n and not ph.on_belt and not self.loop.tracker.parcels
        if self.extras and done:  # a parcel put on by hand has no record: wait until its chute saw it
            last = max(f.t_mono for f in ph.fates.values())
            done = self.clock.t > last + self.cfg.sim.chute_slide_ms / 1000 + 0.5
        if done or self.now_s > self.horizon_s:
            self.loop.stop = True
            return
        self.at(self.now_s + 0.5, self._watch)

    def run(self) -> Run:
        self._schedule_cameras()
        self.at(self.plan.get(0).head_s + 1.0, self._watch)
        self.clock.advance_to(self.t0 + self.start_s)
        ev = asyncio.SelectorEventLoop(selectors.SelectSelector())
        try:
            ev.run_until_complete(self.loop.run())
        finally:
            ev.close()
            self.conn.close()
        self.physics.advance(self.clock.t)
        self._take_messages()
        return Run(self, self.records, self.truth(), self.statuses, self.alarms_seen, self.messages)

    # ------------------------------------------------------------------ the truth
    def _spans_cover(self, spans, a: float, b: float) -> bool:
        return any(lo <= b and hi >= a for lo, hi in spans)

    def truth(self) -> list[ParcelTruth]:
        ph, reject = self.physics, self.cfg.line.reject_chute
        alternates = getattr(self.advice, "alternates", None)
        out = []
        for i in range(ph.next_index):  # the parcels that reached the induct (the rest wait on the infeed)
            if i in ph.held:
                continue  # the watchdog stopped induction: it never entered the line
            p = self.plan.get(i)
            fate = ph.fates.get(i)
            expected = p.expected_outcome
            if expected == "no_read" and p.stale_waybill and not (p.missing or p.face_down):
                expected = "no_route"  # only the stale label reads: routed by it, and nobody advised it
            want = tuple(self.advice.expected_chutes(p)) if expected == "sorted" else ()
            ok = set(want) or {reject}
            if p.expected_outcome == "multi_read" and p.waybill_visible and p.in_manifest:
                ok |= set(self.advice.expected_chutes(p))  # a camera that missed the stale label
            head_s = ph.entered[i] - self.t0  # when it really entered: induction may have stood still
            if want and fate is not None:
                end_s = fate.t_mono - self.t0 + 0.5

                def unavailable(c):
                    return (ph.full_between(c, self.t0 + head_s, fate.t_mono + 0.5)
                            or self._spans_cover(self.forced_full.get(c, ()), head_s, end_s)
                            or self._spans_cover(self.disabled_spans.get(c, ()), head_s, end_s))
                if all(unavailable(c) for c in want):
                    alts = alternates(p) if alternates else {self.cfg.chute(c).alternate for c in want} - {None}
                    ok |= {reject} | set(alts)
            out.append(ParcelTruth(i, head_s, expected, want, frozenset(ok),
                                   fate.chute if fate else None, fate.t_mono - self.t0 if fate else None))
        by_pid = {r["parcel_id"]: r for r in self.records}
        for k, t in enumerate(out):
            # the n-th parcel the controller saw is the n-th that entered (checked in check_invariants)
            t.record = by_pid.get(k + 1)
        return out


class _Jammed(OutputHistory):
    def set(self, t: float, state: bool) -> None:
        pass


def record_head_s(line: VirtualLine, rec: dict) -> float:
    """When the record's parcel reached the induct photo-eye (run seconds), by the controller's
    own belt clock: its scan window starts when its head enters the scan zone."""
    cfg = line.cfg.line
    return rec["_scan_mono"][0] - line.t0 - (cfg.scan_zone.start_mm - cfg.induct.position_mm) / line.plan.speed_mm_s


def check_invariants(run: Run) -> None:
    """What holds whatever happens on the line: no parcel in a chute it does not belong in; every
    parcel that entered has exactly one record, with an outcome and (unless sorted) a reason; a
    record that says sorted is a parcel that really is in that chute."""
    line = run.line
    wrong = run.wrong_chute()
    assert not wrong, [(p.index, p.landed, sorted(p.ok), p.record and p.record["outcome"]) for p in wrong[:10]]
    assert not run.physics.faults, run.physics.faults[:5]
    pids = [r["parcel_id"] for r in run.records]
    assert len(pids) == len(set(pids)), "a parcel has two records"
    assert sorted(pids) == list(range(1, len(run.parcels) + 1)), \
        (len(pids), len(run.parcels), run.outcomes())  # one record for each parcel that entered
    # the journal: every parcel the tracker took onto the belt was journaled at once, and its row is
    # closed by its record (only a parcel known to have passed unseen, by the latch counter or the
    # PLC's mailbox, is recorded at once without one)
    journal = line.journal
    assert len(journal) == len(set(journal)), "a parcel journaled twice"
    assert set(journal) <= set(pids), sorted(set(journal) - set(pids))[:10]
    unseen = ("could not be read (latch counter)", "posted by the PLC while its mailbox could not be read")
    unjournaled = [r for r in run.records if r["parcel_id"] not in set(journal)]
    assert all(any(u in r["reason"] for u in unseen) for r in unjournaled), unjournaled[:3]
    for r in run.records:
        assert r["outcome"] in OUTCOMES, r
        assert r["outcome"] == "sorted" or r["reason"], r
    for p in run.parcels:
        r = p.record
        assert p.landed is not None, f"parcel {p.index} still on the belt at the end"
        if r["outcome"] == "sorted":
            assert abs(record_head_s(line, r) - p.head_s) < 0.005, (p.index, record_head_s(line, r), p.head_s)
            assert r["chute"] == r["actual_chute"] == p.landed, (p.index, r["chute"], r["actual_chute"], p.landed)
            assert p.landed in p.ok, (p.index, p.landed, p.ok)
        elif r["actual_chute"] is not None:
            assert r["actual_chute"] == p.landed, (p.index, r["outcome"], r["actual_chute"], p.landed)
