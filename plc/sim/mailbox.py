"""The simulated line as a PLC that tracks parcels itself (`plc.mode: plc_tracking`).

The PLC, not the PC, knows where each parcel is and switches the diverters: exactly, at the moment
the parcel's head reaches the diverter (minus its lead and actuation). It talks to the PC only
through the mailbox registers (plc.mailbox; the handshake is described in controller/config/plc.py):

- when a parcel's tail clears the induct photo-eye it posts new_id (index + 1, never 0), the
  encoder count at its head and its length, and increments new_seq;
- it takes an answer (answer_chute, committed by the write of answer_id) only up to
  `sim.plc_answer_lead_ms` before that parcel's diverter must switch; a late answer is ignored and
  the parcel runs on to the reject chute;
- when a parcel has landed and slid to its chute's photo-eye it queues a result; it posts the next
  result (result_id, result_chute, result_code, then result_seq) once the PC has acknowledged the
  last one (result_ack == result_seq).

Like the rest of the simulation it is evaluated lazily at the moment of each Modbus request: the
diverter windows the PLC decides on are edges in time applied to the output histories as the
physics advances, so its diverters fire with zero timing error. Everything is timed by the line's
clocks: a parcel is posted when its tail really clears the eye (late when induction was off), and a
window is kept as belt positions, its edges timed again whenever the belt stops or starts (a PLC
tracking by encoder switches when the parcel is there, not when it was planned to be).
"""

from __future__ import annotations

import heapq

from sorter.controller.config.line import Config
from sorter.controller.config.plc import chute_numbers
from sorter.plc.sim.belt_clock import INF
from sorter.plc.sim.physics import LinePhysics

SEQ_MOD = 1 << 16
RESULT_OK, RESULT_NO_ANSWER, RESULT_UNCONFIRMED, RESULT_BAD_CHUTE = 0, 1, 2, 3


def plc_id_of(index: int) -> int:
    return index % 65535 + 1


class Window:
    """A diverter window the PLC decided on: its output on while the parcel's point `on` is at the
    switch-on position, off when `off` is at the switch-off one (each (at_mm, point_mm)), both
    `act_s` early for the actuation."""

    __slots__ = ("signal", "p", "on", "off", "act_s", "state")

    def __init__(self, signal: str, p, on: tuple[float, float], off: tuple[float, float], act_s: float):
        self.signal, self.p, self.on, self.off, self.act_s = signal, p, on, off, act_s
        self.state = 0  # 0 before it opened, 1 open, 2 closed


class TrackingPhysics(LinePhysics):
    """The line whose diverter outputs the PLC switches itself, where the parcels are."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._windows: dict[int, Window] = {}
        self._edges: list[tuple[float, int, int]] = []  # (t, window number, +1 on / -1 off)
        self._level = {sig: 0 for sig in self.outputs}
        self._n = 0
        self._belt_seen = self.belt.n_changes

    def schedule(self, window: Window) -> None:
        self._n += 1
        self._windows[self._n] = window
        self._push(self._n, window)

    def _push(self, n: int, w: Window) -> None:
        for d, (at_mm, point_mm) in ((1, w.on), (-1, w.off)):
            if (d == 1 and w.state == 0) or (d == -1 and w.state < 2):
                t = self._at(w.p, at_mm, point_mm) - w.act_s
                if t < INF:  # while the belt stands, no edge is known (timed again when it runs)
                    heapq.heappush(self._edges, (t, n, d))

    def _retime(self) -> bool:
        """The belt stopped or started since the edges were timed: time them again. True if so."""
        if self.belt.n_changes == self._belt_seen:
            return False
        self._belt_seen = self.belt.n_changes
        self._edges = []
        for n, w in self._windows.items():
            self._push(n, w)
        return True

    def advance(self, t: float) -> None:
        if t < self.t:
            t = self.t
        while True:
            self._retime()
            if self._edges and self._edges[0][0] <= t:
                te = max(self._edges[0][0], self.t)
                self._check_watchdog(te)
                self._advance(te)
                if self._retime():
                    continue  # an e-stop on the way moved the edge
                _, n, d = heapq.heappop(self._edges)
                w = self._windows[n]
                w.state = 1 if d == 1 else 2
                if w.state == 2:
                    del self._windows[n]
                self._level[w.signal] += d
                if self.tripped_at is None:
                    self.outputs[w.signal].set(te, self._level[w.signal] > 0)
                continue
            self._check_watchdog(t)  # e-stops posted up to t first: they move the edges before t
            if not self._retime():
                break
        self._advance(t)

    def write_output(self, signal: str, state: bool, t: float) -> None:
        """The PC does not drive the diverters in this mode: the PLC owns them."""
        self.advance(t)


class SimMailbox:
    """The PLC's side of the mailbox; plugged into SimIOModule (module.mailbox)."""

    def __init__(self, cfg: Config, physics: TrackingPhysics):
        self.cfg, self.ph = cfg, physics
        m = cfg.plc.mailbox
        self.m = m
        self.plc_side = {n for n in (m.new_seq, m.new_id, m.new_head_count, m.new_length_mm, m.result_seq,
                                     m.result_id, m.result_chute, m.result_code) if n}
        self.regs = {n: 0 for n in self.plc_side}
        self.numbers = chute_numbers(cfg)
        self.chute_of = {n: c for c, n in self.numbers.items()}
        self.chutes = {c.id: c for c in cfg.line.chutes}
        self.diverters = {d.name: d for d in cfg.line.diverters}
        self.first = min(cfg.line.diverters, key=lambda d: d.position_mm)
        self.reject = cfg.line.reject_chute
        self.lead_s = cfg.sim.plc_answer_lead_ms / 1000
        self.slide_s = cfg.sim.chute_slide_ms / 1000
        self.posted = 0                      # plan index of the next parcel to post
        self.ids: dict[int, int] = {}        # PLC id -> plan index, parcels posted and not yet landed
        self.answer: dict[int, int] = {}     # plan index -> chute number it took
        self.late: set[int] = set()          # plan indices whose answer came too late
        self.waiting: set[int] = set()       # posted, not landed
        self.results: list[tuple[float, int, int, int, int]] = []  # (post at, index, id, chute no, code)
        self.answer_chute = 0
        self.ack = 0
        self._synced: float | None = None
        self.counts = {"answers": 0, "late_answers": 0, "unknown_answers": 0}

    # --- the PLC's scan ------------------------------------------------------------------
    def _sync(self, t: float) -> None:
        if t == self._synced:
            return  # one request reads several registers at one moment
        self._synced = t
        ph, plan = self.ph, self.ph.plan
        ph.advance(t)
        while self.posted < ph.next_index:
            i = self.posted
            if i in ph.held:
                self.posted += 1
                continue
            p = plan.get(i)
            t_in = ph.entered[i]
            if ph.belt.after(t_in, p.length_mm / ph.v) > t:  # its tail clears the eye then
                break
            pid = plc_id_of(i)
            self.ids[pid] = i
            self.waiting.add(i)
            r = self.regs
            r[self.m.new_id] = pid
            if self.m.new_head_count:
                r[self.m.new_head_count] = ph.encoder(t_in)
            if self.m.new_length_mm:
                r[self.m.new_length_mm] = int(round(p.length_mm))
            r[self.m.new_seq] = (r[self.m.new_seq] + 1) % SEQ_MOD
            self.posted += 1
        for i in [i for i in self.waiting if i in ph.fates]:
            self.waiting.discard(i)
            fate = ph.fates[i]
            got = self.numbers.get(fate.chute, 0)
            if i in self.answer:
                want = self.answer[i]
                code = RESULT_OK if want == got else (RESULT_BAD_CHUTE if want not in self.chute_of
                                                      else RESULT_UNCONFIRMED)
            else:
                code = RESULT_NO_ANSWER
            heapq.heappush(self.results, (fate.t_mono + self.slide_s, i, plc_id_of(i), got, code))
            self.ids.pop(plc_id_of(i), None)
            self.answer.pop(i, None)
            self.late.discard(i)
        r = self.regs
        if self.results and self.results[0][0] <= t and self.ack == r[self.m.result_seq]:
            _, _, pid, got, code = heapq.heappop(self.results)
            r[self.m.result_id] = pid
            r[self.m.result_chute] = got
            if self.m.result_code:
                r[self.m.result_code] = code
            r[self.m.result_seq] = (r[self.m.result_seq] + 1) % SEQ_MOD

    def value(self, name: str, t: float) -> int:
        self._sync(t)
        return self.regs.get(name, 0)

    def written(self, name: str, value: int, t: float) -> None:
        m = self.m
        if name == m.answer_chute:
            self.answer_chute = value
        elif name == m.result_ack:
            self.ack = value
        elif name == m.answer_id:
            self._sync(t)
            self._take_answer(value, self.answer_chute, t)

    def _take_answer(self, pid: int, number: int, t: float) -> None:
        i = self.ids.get(pid)
        if i is None or i in self.answer or i not in self.waiting:
            self.counts["unknown_answers"] += 1
            return
        p = self.ph.plan.get(i)
        chute = self.chutes.get(self.chute_of.get(number, ""))
        d = self.diverters.get(chute.diverter) if chute is not None and chute.diverter else self.first
        on_t = self.ph._at(p, d.position_mm - d.lead_mm, 0.0) - d.actuation_ms / 1000
        if t > on_t - self.lead_s:
            self.late.add(i)
            self.counts["late_answers"] += 1
            return
        self.answer[i] = number
        self.counts["answers"] += 1
        if chute is not None and chute.diverter:
            self.ph.schedule(Window(d.outputs[chute.side], p, (d.position_mm - d.lead_mm, 0.0),
                                    (d.position_mm + d.trail_mm, p.length_mm), d.actuation_ms / 1000))


def attach(module, cfg: Config, plan, t0: float, n: int | None) -> TrackingPhysics:
    """Start the simulated line as a tracking PLC: its physics, and its mailbox on the I/O module."""
    physics = TrackingPhysics(cfg, plan, t0, n)
    module.physics = physics
    module.mailbox = SimMailbox(cfg, physics)
    return physics
