"""Physics of the simulated line, evaluated exactly at any moment asked.

Parcels move with the belt; nothing is ticked. When Modbus asks for the inputs at time t, the line
is advanced to t event by event: each parcel's centre reaches each diverter at a known time, and the
diverter's output history (time-stamped when each write arrived) says whether it was effective then.
So the simulation adds no jitter of its own to what the controller's timing is judged by.

Two clocks (belt_clock.RunClock) make the line stop and start like a real one:
- the belt clock stands still while the e-stop is open: parcels stay where they are, the encoder
  stops counting, no parcel reaches a diverter, the run input reads 0;
- the infeed clock stands still while induction is off: the induct_enable coil written 0 or the
  belt stopped. A parcel planned at infeed time head_s enters when the infeed clock reads head_s,
  so parcels waiting on the infeed keep their planned spacing and enter late by the time induction
  was off. Without a stop both clocks are the old constant-speed formulas, bit for bit.
The PLC's watchdog, when it trips, holds back the parcels due while it is tripped for good (`held`):
they never enter and nothing behind them moves (kept as it was when the cameras followed only the
plan; the camera frame process now follows both clocks, clock_feed.py, so it could become an
ordinary infeed stop). People may also lift a parcel off the belt (`take_off`: it lands nowhere,
OFF_BELT) or put one on past the induct eye (`put_on`: no photo-eye counted it).
Every time a parcel meets next (a diverter, the end of the belt, its tail clearing the induct eye)
is cached, and recomputed only when the belt stops or starts: a poll costs a comparison a parcel.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from dataclasses import dataclass, field

from sorter.controller.config.line import Config
from sorter.plc.sim.belt_clock import INF, RunClock
from sorter.plc.sim.parcels import ParcelPlan, PlannedParcel

ENCODER_MOD = 2**32
OFF_BELT = "OFF_BELT"  # where a parcel taken off the belt by hand ends up
EXTRA_INDEX = 1_000_000  # parcels put on the belt by hand are numbered from here
WAITING_SCAN_MAX = 10_000  # an endless plan keeps 20,000 parcels: never make it drop one still in use


class OutputHistory:
    """When one output (coil) switched, as the device saw the writes arrive."""

    def __init__(self) -> None:
        self.times: list[float] = [float("-inf")]
        self.states: list[bool] = [False]

    def set(self, t: float, state: bool) -> None:
        if state != self.states[-1]:
            self.times.append(t)
            self.states.append(state)
            if len(self.times) > 4096:
                del self.times[:2048], self.states[:2048]

    def at(self, t: float) -> bool:
        return self.states[bisect.bisect_right(self.times, t) - 1]

    def last_rise_before(self, t: float) -> float | None:
        i = bisect.bisect_right(self.times, t) - 1
        while i > 0:
            if self.states[i] and not self.states[i - 1]:
                return self.times[i]
            i -= 1
        return None

    @property
    def now(self) -> bool:
        return self.states[-1]


@dataclass
class ChuteState:
    count: int = 0
    full_since: float | None = None
    full_spans: list[tuple[float, float]] = field(default_factory=list)
    # a test forced the full input on (a chute-full storm): full as far as the controller can know
    forced_since: float | None = None
    forced_spans: list[tuple[float, float]] = field(default_factory=list)
    confirms: deque = field(default_factory=deque)  # (start, end) intervals the confirm PE is blocked


@dataclass
class ParcelFate:
    index: int
    chute: str                # where it physically went (the reject chute at the end of the belt)
    t_mono: float             # when it left the belt
    fire_error_ms: float | None = None
    diverter: str | None = None


class OnBelt:
    """A parcel on the belt: when its head crossed the induct eye, the next diverter it meets, and
    the cached mono times of its next event and of its tail clearing the induct eye."""

    __slots__ = ("p", "t_in", "run_in", "k", "t_next", "t_tail", "gone")

    def __init__(self, p: PlannedParcel, t_in: float, run_in: float):
        self.p, self.t_in, self.run_in = p, t_in, run_in
        self.k = 0
        self.t_next = self.t_tail = INF
        self.gone = False


class LinePhysics:
    """`induct_enabled`: whether the infeed runs before the controller first writes the
    induct_enable coil. A real PLC does not induct before it is told to: pass
    `cfg.plc.induct_enable is None` for that (SimLine, tests/virtual_line.py); the default (on)
    serves a bare I/O module that nobody enables (the driver and `sorter plc` tests)."""

    def __init__(self, cfg: Config, plan: ParcelPlan, t0_mono: float, n_parcels: int | None = None,
                 induct_enabled: bool = True):
        self.cfg, self.plan, self.t0, self.n = cfg, plan, t0_mono, n_parcels
        line = cfg.line
        self.v = plan.speed_mm_s
        self.induct_mm = line.induct.position_mm
        self.diverters = sorted(line.diverters, key=lambda d: d.position_mm)
        self.chute_at = {(c.diverter, c.side): c.id for c in line.chutes if c.diverter}
        self.outputs: dict[str, OutputHistory] = {
            sig: OutputHistory() for d in self.diverters for sig in d.outputs.values()
        }
        self.chutes = {c.id: ChuteState() for c in line.chutes}
        self.on_belt: deque[OnBelt] = deque()
        self.next_index = 0                   # parcels that reached the induct so far (entered or held)
        self.entered: dict[int, float] = {}   # index -> mono time its head crossed the induct eye
        self.fates: dict[int, ParcelFate] = {}
        self.faults: list[str] = []
        self.t = t0_mono
        self.ppmm = line.encoder_pulses_per_mm
        self.encoder_start = cfg.sim.encoder_start
        # the line's state: belt (stopped by the e-stop) and infeed (off unless enabled, belt running
        # and watchdog healthy)
        self.belt = RunClock(t0_mono)
        self.infeed = RunClock(t0_mono, running=induct_enabled)
        self.induct_enabled = induct_enabled
        self.estop = False
        self._posted: list[tuple[float, bool]] = []  # e-stop changes posted from another thread
        # the PLC's watchdog: armed by the first heartbeat; when it trips, outputs drop and induction
        # stops (parcels due at the induct while it is tripped are held back: they never enter)
        self.watchdog_s = cfg.sim.watchdog_ms / 1000 if cfg.plc.heartbeat and cfg.sim.watchdog_ms > 0 else None
        self.hb_last: float | None = None
        self.tripped_at: float | None = None
        self.trips: list[tuple[float, float | None]] = []
        self.held: set[int] = set()
        # the encoder latch at the induct photo-eye: edges so far and the count at the last one
        self.head_seq = self.tail_seq = 0
        self.head_latch = self.tail_latch = 0
        self._tails: deque[OnBelt] = deque()
        self._next_in = self._next_entry()
        self.extras = 0  # parcels put on the belt by hand

    # --- time of a parcel point --------------------------------------------------------
    def _at(self, p: PlannedParcel, at_mm: float, point_mm: float, resume_at: float | None = None) -> float:
        """Mono time when the point `point_mm` behind the head is (or was) at belt position at_mm,
        as far as it is known now (inf behind a stop still going on, unless resume_at)."""
        t_in = self.entered.get(p.index)
        if t_in is None:
            if p.index in self.held:
                return INF  # it never comes
            t_in = self.infeed.mono_at(p.head_s, resume_at)
            if t_in == INF:
                return INF
        return self.belt.after(t_in, (at_mm - self.induct_mm + point_mm) / self.v, resume_at)

    def point_time(self, index: int, at_mm: float, point_mm: float, now: float) -> float:
        """When that point of parcel `index` is (was) at at_mm, if whatever stands still now ran again
        from `now`: exact for the past, the earliest possible moment for the future."""
        return self._at(self.plan.get(index), at_mm, point_mm, resume_at=now)

    def head_mm(self, p: PlannedParcel, t: float) -> float:
        t_in = self.entered.get(p.index)
        if t_in is None:
            return self.induct_mm + (t - self.t0 - p.head_s) * self.v  # as planned (not entered)
        return self.induct_mm + (self.belt.run_s(t) - self.belt.run_s(t_in)) * self.v

    # --- the line's state ----------------------------------------------------------------
    @property
    def belt_running(self) -> bool:
        return self.belt.running

    def set_induct_enable(self, state: bool, t: float) -> None:
        """The induct_enable coil as written at t."""
        self.advance(t)
        self.induct_enabled = bool(state)
        self._update_infeed(self.t)

    def set_estop(self, active: bool, t: float) -> None:
        """The e-stop circuit opened (active) or closed at t: the belt stops or runs again."""
        self.advance(t)
        self._apply_estop(active, self.t)

    def post_estop(self, active: bool, t: float) -> None:
        """set_estop from any thread (a test forcing the input while the server runs): applied at
        its time by the next advance, on the thread that drives the physics."""
        self._posted.append((t, active))

    def _apply_estop(self, active: bool, t: float) -> None:
        self.estop = bool(active)
        changed = self.belt.stop(t) if active else self.belt.start(t)
        if changed:
            # every cached time beyond now moved (or became unknown while stopped)
            for c in self.on_belt:
                c.t_next = self._next_time(c)
            for c in self._tails:
                c.t_tail = self.belt.after(c.t_in, c.p.length_mm / self.v)
        self._update_infeed(t)

    def _update_infeed(self, t: float) -> None:
        want = self.induct_enabled and not self.estop
        if want != self.infeed.running:
            self.infeed.start(t) if want else self.infeed.stop(t)
            self._next_in = self._next_entry()

    def _next_entry(self) -> float:
        if self.n is not None and self.next_index >= self.n:
            return INF
        return self.infeed.mono_at(self.plan.get(self.next_index).head_s)

    def waiting(self, t: float) -> int:
        """Parcels due at the infeed by t as planned that have not reached it: waiting on the infeed
        (while induction is off, and the backlog that left them late since)."""
        i = self.next_index
        while (self.n is None or i < self.n) and i - self.next_index < WAITING_SCAN_MAX and \
                self.t0 + self.plan.get(i).head_s <= t:
            i += 1
        return i - self.next_index

    # --- the PLC's watchdog --------------------------------------------------------------
    def heartbeat(self, t: float) -> None:
        self.advance(t)
        if self.tripped_at is not None:
            self.trips[-1] = (self.tripped_at, self.t)
            self.tripped_at = None
        # no earlier than the line's own time: heartbeats before the run starts (t0 may lie ahead)
        # must not trip the watchdog before t0
        self.hb_last = self.t

    def _check_watchdog(self, t: float) -> None:
        """The PLC's own events up to t, in time order: posted e-stop changes, the watchdog tripping."""
        while True:
            t_trip = INF
            if self.watchdog_s is not None and self.hb_last is not None and self.tripped_at is None:
                t_trip = self.hb_last + self.watchdog_s
            t_post = self._posted[0][0] if self._posted else INF
            if t_trip > t and t_post > t:
                return
            if t_post <= t_trip:
                _, active = self._posted.pop(0)
                t_post = max(t_post, self.t)
                self._advance(t_post)
                self._apply_estop(active, t_post)
                continue
            self._advance(t_trip)
            for h in self.outputs.values():
                h.set(t_trip, False)
            self.tripped_at = t_trip
            self.trips.append((t_trip, None))

    # --- writes ------------------------------------------------------------------------
    def write_output(self, signal: str, state: bool, t: float) -> None:
        self.advance(t)
        if self.tripped_at is not None:
            return  # the watchdog holds every output off until the heartbeat returns
        self.outputs[signal].set(t, state)

    # --- evolution ---------------------------------------------------------------------
    def advance(self, t: float) -> None:
        if t < self.t:
            t = self.t  # never run the clock backwards
        self._check_watchdog(t)
        self._advance(t)

    def _next_time(self, c: OnBelt) -> float:
        """When parcel c next meets something: its centre at its next diverter, or its head at the
        end of the belt."""
        p = c.p
        if c.k < len(self.diverters):
            at_mm, point_mm = self.diverters[c.k].position_mm, p.length_mm / 2
        else:
            at_mm, point_mm = self.cfg.line.end_mm, 0.0
        return self.belt.after(c.t_in, (at_mm - self.induct_mm + point_mm) / self.v)

    def _enter(self, t_head: float) -> None:
        p = self.plan.get(self.next_index)
        self.next_index += 1
        if self.tripped_at is not None and t_head >= self.tripped_at:
            self.held.add(p.index)  # induction is stopped by the watchdog: it stays off the line
            self._next_in = self._next_entry()
            return
        self.entered[p.index] = t_head
        c = OnBelt(p, t_head, self.belt.run_s(t_head))
        c.t_next = self._next_time(c)
        c.t_tail = self.belt.after(t_head, p.length_mm / self.v)
        self.on_belt.append(c)
        self._tails.append(c)
        self.head_seq = (self.head_seq + 1) & 0xFFFF
        self.head_latch = self.encoder(t_head)
        self._next_in = self._next_entry()

    def _advance(self, t: float) -> None:
        if t < self.t:
            t = self.t
        while self._next_in <= t:
            self._enter(self._next_in)
        tails = self._tails
        while tails and tails[0].t_tail <= t:
            self.tail_seq = (self.tail_seq + 1) & 0xFFFF
            self.tail_latch = self.encoder(tails.popleft().t_tail)
        landed = False
        for c in self.on_belt:
            while c.t_next <= t:
                self._meet(c)
                if c.gone:
                    landed = True
                    break
        if landed:
            self.on_belt = deque(c for c in self.on_belt if not c.gone)
        for cid, ch in self.chutes.items():
            if ch.full_since is not None and t >= ch.full_since + self.cfg.sim.chute_empty_s:
                ch.full_spans.append((ch.full_since, ch.full_since + self.cfg.sim.chute_empty_s))
                ch.full_since, ch.count = None, 0
            while ch.confirms and ch.confirms[0][1] < t - 1.0:
                ch.confirms.popleft()
        self.t = t

    def _meet(self, c: OnBelt) -> None:
        """Parcel c reaches what it meets next, at c.t_next."""
        p, t_c = c.p, c.t_next
        if c.k >= len(self.diverters):
            self._land(p, self.cfg.line.reject_chute, t_c, None, None)
            c.gone = True
            return
        d = self.diverters[c.k]
        # the diverter is where its output was actuation_ms ago (a time delay, belt moving or not)
        effective = t_c - d.actuation_ms / 1000.0
        sides = [s for s, sig in d.outputs.items() if self.outputs[sig].at(effective)]
        if sides:
            if len(sides) > 1:
                self.faults.append(f"{d.name}: both outputs on at {t_c:.3f}")
            self._divert(p, d, sides[0], t_c)
            c.gone = True
            return
        c.k += 1
        c.t_next = self._next_time(c)

    def _divert(self, p: PlannedParcel, d, side: str, t_c: float) -> None:
        sig = d.outputs[side]
        ideal_on = self._at(p, d.position_mm - d.lead_mm, 0.0) - d.actuation_ms / 1000.0
        rise = self.outputs[sig].last_rise_before(t_c - d.actuation_ms / 1000.0)
        err = None
        # an output already on well before this parcel's window was held on for the parcel ahead
        if rise is not None and not self.outputs[sig].at(ideal_on - 0.1):
            err = (rise - ideal_on) * 1000.0
        self._land(p, self.chute_at[(d.name, side)], t_c, err, d.name)

    def _land(self, p, chute_id: str, t: float, err: float | None, diverter: str | None) -> None:
        self.fates[p.index] = ParcelFate(p.index, chute_id, t, err, diverter)
        ch = self.chutes[chute_id]
        slide = self.cfg.sim.chute_slide_ms / 1000.0
        # the confirm eye sees parcels in the order and spacing they left the belt (head first)
        t_head = t - (p.length_mm / 2 / self.v if diverter is not None else 0.0)
        ch.confirms.append((t_head + slide, t_head + slide + p.length_mm / self.v))
        ch.count += 1
        if ch.count >= self.cfg.sim.chute_capacity and ch.full_since is None and chute_id != self.cfg.line.reject_chute:
            ch.full_since = t

    # --- what people do to the belt -------------------------------------------------------
    def take_off(self, index: int, t: float) -> bool:
        """Someone lifts parcel `index` off the belt at t (its tail past the induct eye): it lands
        nowhere (OFF_BELT). False when it is not on the belt."""
        self.advance(t)
        for c in self.on_belt:
            if c.p.index == index and c.t_tail <= t:
                c.gone = True
                self.fates[index] = ParcelFate(index, OFF_BELT, t, None, None)
                self.on_belt = deque(x for x in self.on_belt if not x.gone)
                return True
        return False

    def put_on(self, t: float, at_mm: float, length_mm: float) -> int:
        """Someone puts a parcel on the belt at t, its head at belt position `at_mm` past the induct
        eye (so no photo-eye counted it). It rides on like any other; returns its index (beyond the
        plan's). Assumes the belt ran steadily over the stretch it is placed on."""
        self.advance(t)
        index = EXTRA_INDEX + self.extras
        self.extras += 1
        extra = dataclasses.replace(self.plan.get(0), index=index, head_s=float("nan"), length_mm=length_mm)
        t_in = t - (at_mm - self.induct_mm) / self.v  # when its head would have passed the induct eye
        self.entered[index] = t_in
        c = OnBelt(extra, t_in, self.belt.run_s(t_in))
        c.t_next = self._next_time(c)
        while c.k < len(self.diverters) and self.diverters[c.k].position_mm < at_mm:
            c.k += 1  # placed past these diverters
            c.t_next = self._next_time(c)
        c.t_tail = t  # its tail is past the eye already
        self.on_belt.append(c)
        return index

    def forget_before(self, index: int) -> None:
        """Drop the fates of parcels long gone (endless runs)."""
        for d in (self.fates, self.entered):
            for i in [i for i in d if i < index]:
                del d[i]
        self.held = {i for i in self.held if i >= index}

    # --- what the I/O module shows -----------------------------------------------------
    def induct_blocked(self, t: float) -> bool:
        run_now = self.belt.run_s(t)
        for c in reversed(self.on_belt):
            head = self.induct_mm + (run_now - c.run_in) * self.v
            if head - c.p.length_mm <= self.induct_mm <= head:
                return True
            if head - c.p.length_mm > self.induct_mm:
                break
        # the next parcel may be just about to be admitted
        return False

    def confirm_blocked(self, chute_id: str, t: float) -> bool:
        return any(a <= t <= b for a, b in self.chutes[chute_id].confirms)

    def full(self, chute_id: str) -> bool:
        return self.chutes[chute_id].full_since is not None

    def encoder(self, t: float) -> int:
        return (self.encoder_start + int(self.belt.run_s(t) * self.v * self.ppmm)) % ENCODER_MOD

    def full_between(self, chute_id: str, t_a: float, t_b: float) -> bool:
        """The chute was full (or its full input forced on) at some moment from t_a to t_b."""
        ch = self.chutes[chute_id]
        spans = list(ch.full_spans) + ([(ch.full_since, float("inf"))] if ch.full_since is not None else [])
        spans += ch.forced_spans + ([(ch.forced_since, float("inf"))] if ch.forced_since is not None else [])
        return any(a <= t_b and b >= t_a for a, b in spans)

    def force_full(self, chute_id: str, on: bool, t: float) -> None:
        """A test forced the chute's full input on (or let it go): the controller rightly sends the
        chute's parcels elsewhere meanwhile, so the truth counts the chute full too."""
        ch = self.chutes[chute_id]
        if on and ch.forced_since is None:
            ch.forced_since = t
        elif not on and ch.forced_since is not None:
            ch.forced_spans.append((ch.forced_since, t))
            ch.forced_since = None
