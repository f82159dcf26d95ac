"""Tracking parcels on the belt, from the induct photo-eye to the chute that confirms them.

Plain logic, no I/O: the timing loop hands it input samples and reads, asks it which output is due
next, and tells it when a write was made. Tests drive a whole shift through it in milliseconds.

Every parcel ends in exactly one record with one outcome (see DESIGN.md).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from sorter.controller.timing.belt_clock import BeltClock
from sorter.controller.config.line import Config
from sorter.controller.timing.outputs import OutputPlanner
from sorter.controller.routing.router import RouteDecision
from sorter.messages import Read


@dataclass
class Parcel:
    pid: int
    head_count: float
    induct_mono: float
    induct_wall: float
    gap_mm: float | None
    tail_count: float | None = None
    reads: list[Read] = field(default_factory=list)
    state: str = "scanning"  # scanning -> decided -> travelling -> done
    decision: RouteDecision | None = None
    outcome: str | None = None
    reason: str = ""
    chute: str | None = None        # where we send it
    expect_chute: str | None = None  # where we expect the confirm
    expect_from_mono: float = 0.0
    expect_at_mono: float = 0.0      # when its centre passes the diverter (or reaches the end)
    expect_until_mono: float = 0.0
    decided_mono: float | None = None
    decided_wall: float | None = None
    decision_ms: float | None = None
    fire_error_ms: float | None = None
    actual_chute: str | None = None
    fired_mono: float | None = None      # the switch-on as the device took it
    confirmed_mono: float | None = None  # the confirm photo-eye's edge
    # (camera, symbology, text) -> (mm from the parcel's head, s after induct): where each read was made
    read_at: dict = field(default_factory=dict)

    @property
    def length_counts(self) -> float | None:
        return None if self.tail_count is None else self.tail_count - self.head_count


class Tracker:
    def __init__(self, cfg: Config, decide: Callable[..., RouteDecision],
                 emit: Callable[[dict], None], run_id: str, wall=time.time, *, first_pid: int = 1,
                 on_induct: Callable[[Parcel], None] | None = None):
        """`first_pid`: the first parcel id (a restarted timing process goes on from where the one
        before it stopped, so no id of the run is given twice); `on_induct`: told of every parcel
        that enters the belt, before anything else happens to it (its journal row)."""
        self.cfg, self.line = cfg, cfg.line
        self.decide_fn, self.emit, self.run_id, self.wall = decide, emit, run_id, wall
        self.on_induct = on_induct
        self.clock = BeltClock(cfg.line.encoder_pulses_per_mm, cfg.line.belt_speed_mps * 1000)
        self.outputs = OutputPlanner(cfg, self.clock)
        self.parcels: deque[Parcel] = deque()
        self.next_pid = first_pid
        self.bits: dict[str, int] = {}
        self.bits_mono: float | None = None
        self.last_tail_count: float | None = None
        self.chutes = {c.id: c for c in cfg.line.chutes}
        self.cameras = {c.name: c for c in cfg.cameras}
        self.disabled: set[str] = set()
        # per camera: where on the belt its reads put their parcel's centre, from the camera's centre
        # line (mm, + = downstream). A camera whose frames arrive late reads parcels that seem to have
        # gone on by speed x latency: the median is what `sorter calibrate latency` reads
        self.read_offsets_mm: dict[str, deque] = {c.name: deque(maxlen=200) for c in cfg.cameras}
        # per diverter: confirm edge - when the parcel's head passed the diverter as planned (ms). The
        # confirm eye sees the head first, so this is the chute's slide plus the diverter's placement
        # error / belt speed: `sorter calibrate timing` compares the diverters' medians
        self.confirm_offsets_ms: dict[str, deque] = {d.name: deque(maxlen=200) for d in cfg.line.diverters}
        self.counters = {"orphan_reads": 0, "late_reads": 0, "unexpected_confirms": 0, "noise_pulses": 0,
                         "decisions_without_all_cameras": 0, "weak_reads": 0, "weak_reads_held_back": 0,
                         "confirms_after_fault": 0}
        # after a fault dropped the tracking of the parcels on the belt, they still arrive in chutes:
        # until then a confirm nobody waits for is one of theirs, not a parcel put on by hand
        self.ghosts_until_mono = float("-inf")
        # cameras whose weak reads (one decoding attempt only) may decide a parcel's chute
        self.weak_sorts = {c.name for c in cfg.cameras if getattr(c, "weak_reads_sort", False)}
        self.unexpected_by_chute: dict[str, int] = {}
        # diverter -> confirm photo-eye, per chute: the configured nominal delay, then learned
        self.confirm_delay_s: dict[str, float] = {}
        for c in cfg.line.chutes:
            nominal = c.confirm_delay_ms if c.confirm_delay_ms is not None else cfg.line.confirm_delay_ms
            if nominal is not None and c.diverter:
                self.confirm_delay_s[c.id] = nominal / 1000
        # why parcels must not be coming in now (paused, stopping), else None: a parcel inducted
        # meanwhile goes to reject saying so; the ones already on the belt finish as usual
        self.intake_closed: str | None = None
        # per camera: every frame captured before this moment has been decoded and its reads sent
        self.watermarks: dict[str, float] = {}
        first = min(cfg.line.diverters, key=lambda d: d.position_mm, default=None)
        self.first_diverter = first
        # gaps between two polls in which the shortest parcel could have crossed a photo-eye
        # unseen (a slow link, a stalled process): a confirm due then may have been missed
        self.blind_gap_s = cfg.line.min_length_mm / (cfg.line.belt_speed_mps * 1000)
        self.blind_spans: deque[tuple[float, float]] = deque(maxlen=32)

    def read_offsets(self) -> dict[str, dict]:
        """Per camera: the median offset of its reads' parcels (mm) and the latency it suggests."""
        out = {}
        speed = self.clock.speed_mm_s if self.clock.last_mono else self.line.belt_speed_mps * 1000
        for name, d in self.read_offsets_mm.items():
            if len(d) >= 5:
                med = float(sorted(d)[len(d) // 2])
                out[name] = {"median_mm": round(med, 1), "n": len(d),
                             "latency_ms": round(1000 * med / max(speed, 1.0), 1)}
        return out

    def confirm_offsets(self) -> dict[str, dict]:
        """Per diverter with confirms: their number and median offset (ms) from the planned head time."""
        out = {}
        for name, d in self.confirm_offsets_ms.items():
            if d:
                out[name] = {"n": len(d), "median_ms": round(float(sorted(d)[len(d) // 2]), 2),
                             "min_ms": round(float(min(d)), 2), "max_ms": round(float(max(d)), 2)}
        return out

    def camera_caught_up(self, camera: str, mono: float) -> None:
        if mono > self.watermarks.get(camera, float("-inf")):
            self.watermarks[camera] = mono

    def _latest_decision_mono(self, p: Parcel) -> float:
        """After this, the first diverter could no longer switch in time for the parcel."""
        d = self.first_diverter
        if d is None:
            return float("inf")
        on = p.head_count + self.clock.counts(d.position_mm - d.lead_mm - self.line.induct.position_mm)
        return (self.clock.mono_of(on) - d.actuation_ms / 1000
                - self.line.min_decision_lead_ms / 1000 - 0.005)

    def _reads_complete(self, p: Parcel, exit_mono: float, now: float) -> bool:
        """Every camera has decoded what it captured until the parcel left its view. A source that
        never says how far it has got (a code reader) is given a fixed grace instead."""
        grace_over = now >= exit_mono + self.line.decision_grace_ms / 1000
        induct = self.line.induct.position_mm
        for name, cam in self.cameras.items():
            mark = self.watermarks.get(name)
            if mark is None:
                if not grace_over:
                    return False
                continue
            out_of_view = p.tail_count + self.clock.counts(cam.position_mm + cam.view_mm / 2 - induct)
            if mark < self.clock.mono_of(out_of_view):
                return False
        return True

    # ---------------------------------------------------------------- inputs
    def on_inputs(self, t_mono: float, values: dict[str, int], enc_mono: float | None = None) -> None:
        """One poll of every input; `t_mono` is the moment the device sampled them (best estimate)."""
        self.clock.add(enc_mono if enc_mono is not None else t_mono, values[self.line.encoder_signal])
        prev, prev_t = self.bits, self.bits_mono
        self.bits, self.bits_mono = values, t_mono
        if prev_t is None:
            return
        if t_mono - prev_t > self.blind_gap_s:
            self.blind_spans.append((prev_t, t_mono))
        # an edge happened somewhere between the two samples: take the middle
        t_edge = (prev_t + t_mono) / 2
        induct = self.line.induct.signal
        if values[induct] and not prev.get(induct):
            self._induct_head(t_edge)
        elif not values[induct] and prev.get(induct):
            self._induct_tail(t_edge)
        for c in self.line.chutes:
            s = c.confirm_signal
            if s and values.get(s) and not prev.get(s):
                self._confirm(c.id, t_edge, (t_mono - prev_t) / 2)
        self._advance(t_mono)

    def _induct_head(self, t_edge: float) -> None:
        head = self.clock.count_at(t_edge)
        gap = None
        if self.last_tail_count is not None:
            gap = (head - self.last_tail_count) / self.line.encoder_pulses_per_mm
        p = Parcel(self.next_pid, head, t_edge, self.wall(), gap)
        self.next_pid += 1
        self._admit(p)

    def _induct_tail(self, t_edge: float) -> None:
        tail = self.clock.count_at(t_edge)
        self.last_tail_count = tail
        for p in reversed(self.parcels):
            if p.tail_count is None:
                p.tail_count = tail
                length = (tail - p.head_count) / self.line.encoder_pulses_per_mm
                if length < self.line.min_length_mm:
                    # a flicker of the photo-eye, not a parcel: it never gets a record
                    self.parcels.remove(p)
                    self.counters["noise_pulses"] += 1
                return
        # the photo-eye was already blocked when tracking (re)started: a parcel whose head nobody saw
        p = Parcel(self.next_pid, tail - self.clock.counts(self.line.min_length_mm), t_edge, self.wall(), None,
                   tail_count=tail, state="travelling", outcome="fault",
                   reason="head not seen (tracking started while the induct photo-eye was blocked)")
        self.next_pid += 1
        self._admit(p)
        self._expect_reject(p)

    def _admit(self, p: Parcel) -> None:
        """A parcel is on the belt: from now on it ends in exactly one record."""
        if self.intake_closed is not None and p.outcome is None:
            p.outcome, p.reason = "chute_unavailable", f"inducted while {self.intake_closed}"
        self.parcels.append(p)
        if self.on_induct is not None:
            self.on_induct(p)

    # ---------------------------------------------------------------- reads
    def add_read(self, read: Read) -> None:
        cam = self.cameras.get(read.camera)
        if cam is None:
            self.counters["orphan_reads"] += 1
            return
        at = self.clock.count_at(read.capture_mono)
        tol = self.clock.counts(60 if read.offset_mm is None else 20)
        where_mm = cam.position_mm + (read.offset_mm or 0.0)
        pos = self.clock.counts(where_mm - self.line.induct.position_mm)
        best, best_d, best_d_signed = None, None, 0.0
        for p in self.parcels:
            head = at - p.head_count  # distance the head has travelled past the induct PE
            tail = head - (p.length_counts if p.length_counts is not None else 0)
            if tail - tol <= pos <= head + tol:
                centre = (head + tail) / 2
                d = abs(centre - pos)
                if best_d is None or d < best_d:
                    best, best_d, best_d_signed = p, d, centre - pos
        if best is not None:
            self.read_offsets_mm[read.camera].append(best_d_signed / self.line.encoder_pulses_per_mm)
            head_mm = (at - best.head_count - pos) / self.line.encoder_pulses_per_mm
            best.read_at.setdefault((read.camera, read.symbology, read.text),
                                    (round(head_mm, 1), round(read.capture_mono - best.induct_mono, 3)))
        if best is None:
            self.counters["orphan_reads"] += 1
        elif best.state != "scanning":
            self.counters["late_reads"] += 1
        else:
            same = next((i for i, r in enumerate(best.reads) if (r.symbology, r.text) == (read.symbology, read.text)),
                        None)
            if same is None:
                best.reads.append(read)
            elif best.reads[same].weak and not read.weak:
                best.reads[same] = read  # another frame confirmed it: no longer weak

    # ---------------------------------------------------------------- decisions
    def _pos_mm(self, count_from_induct: float) -> float:
        return self.line.induct.position_mm + count_from_induct / self.line.encoder_pulses_per_mm

    def _advance(self, now: float) -> None:
        now_count = self.clock.count
        ppmm = self.line.encoder_pulses_per_mm
        exit_at = self.clock.counts(self.line.scan_zone.end_mm - self.line.induct.position_mm)
        for p in list(self.parcels):
            if p.state == "scanning" and p.tail_count is not None:
                exit_count = p.tail_count + exit_at
                if now_count >= exit_count:
                    exit_mono = self.clock.mono_of(exit_count)
                    if self._reads_complete(p, exit_mono, now):
                        self._decide(p, now, exit_mono)
                    elif now >= self._latest_decision_mono(p):
                        self.counters["decisions_without_all_cameras"] += 1
                        self._decide(p, now, exit_mono)
            elif p.state == "scanning" and p.tail_count is None:
                length = (now_count - p.head_count) / ppmm
                if length > self.line.max_length_mm and p.outcome is None:
                    p.outcome, p.reason = "gap_too_small", (
                        f"photo-eye blocked for over {self.line.max_length_mm:.0f} mm: parcels touching or a jam")
            if p.state == "travelling" and now > p.expect_until_mono:
                self._timeout(p)
        while self.parcels and self.parcels[0].state == "done":
            self.parcels.popleft()

    def _decide(self, p: Parcel, now: float, exit_mono: float) -> None:
        p.decided_mono, p.decided_wall = now, self.wall()
        p.decision_ms = (now - exit_mono) * 1000
        length_mm = p.length_counts / self.line.encoder_pulses_per_mm
        d = self.decide_fn(self.votes(p), lambda c: self.available(c))
        p.decision = d
        if p.outcome is None and length_mm > self.line.max_length_mm:
            p.outcome, p.reason = "gap_too_small", f"length {length_mm:.0f} mm > {self.line.max_length_mm:.0f} mm: parcels touching?"
        elif p.outcome is None and p.gap_mm is not None and p.gap_mm < self.line.min_gap_mm:
            p.outcome, p.reason = "gap_too_small", f"gap {p.gap_mm:.0f} mm to the parcel ahead < {self.line.min_gap_mm:.0f} mm"
        elif p.outcome is None and d.outcome != "sorted":
            p.outcome, p.reason = d.outcome, d.reason
        if p.outcome is None:
            plan = self.outputs.plan(p, self.chutes[d.chute], now)
            if plan is None:
                p.outcome, p.reason = "too_late", self.outputs.last_refusal
            else:
                p.chute = d.chute
                self._expect(p, d.chute, plan)
        if p.outcome is not None:
            self._expect_reject(p)
        p.state = "travelling"

    def votes(self, p: Parcel) -> list[tuple[str, str]]:
        """The reads that decide the parcel's chute: a weak one only from a camera allowed to sort
        on weak reads (the others stay on the record, flagged, and are counted)."""
        out = []
        for r in p.reads:
            if getattr(r, "weak", False):
                self.counters["weak_reads"] += 1
                if r.camera not in self.weak_sorts:
                    self.counters["weak_reads_held_back"] += 1
                    continue
            out.append((r.symbology, r.text))
        return out

    def available(self, chute_id: str) -> bool:
        c = self.chutes.get(chute_id)
        if c is None or chute_id in self.disabled:
            return False
        return not (c.full_signal and self.bits.get(c.full_signal))

    def _expect(self, p: Parcel, chute_id: str, centre_mono: float) -> None:
        c = self.chutes[chute_id]
        p.expect_chute = chute_id
        p.expect_at_mono = centre_mono
        p.expect_from_mono = centre_mono - 0.05
        p.expect_until_mono = centre_mono + c.confirm_timeout_ms / 1000

    def _expect_reject(self, p: Parcel) -> None:
        end = p.head_count + self.clock.counts(self.line.end_mm - self.line.induct.position_mm)
        self._expect(p, self.line.reject_chute, self.clock.mono_of(end))

    # ---------------------------------------------------------------- outputs
    def output_done(self, action, write_mono: float) -> None:
        err = self.outputs.done(action, write_mono)
        if action.state and err is not None:
            for p in self.parcels:
                if p.pid == action.pids[0]:
                    p.fire_error_ms = round(err, 3)
                    p.fired_mono = write_mono

    def output_late(self, action, reason: str) -> None:
        """The switch-on for `action` may have acted too late for its parcels. With a confirm
        photo-eye their chute tells (sorted, or lost, with `reason`); without one they are a fault."""
        for p in self.parcels:
            if p.pid in action.pids and p.state == "travelling" and p.outcome is None:
                c = self.chutes.get(p.expect_chute)
                if c is not None and c.confirm_signal:
                    p.reason = reason
                else:
                    p.outcome, p.reason = "fault", reason

    def settle_cancelled(self) -> None:
        """Parcels whose output could not switch in time go to reject as too_late."""
        while self.outputs.cancelled:
            pid, reason = self.outputs.cancelled.pop(0)
            for p in self.parcels:
                if p.pid == pid and p.state == "travelling":
                    p.outcome, p.reason, p.chute = "too_late", reason, None
                    self._expect_reject(p)

    # ---------------------------------------------------------------- confirms
    def _confirm(self, chute_id: str, t: float, tol: float = 0.0) -> None:
        """A confirm photo-eye's rising edge at about `t` (± `tol`: half the gap between the polls
        that saw it, which a slow link or a stalled process makes long)."""
        waiting = [p for p in self.parcels if p.state == "travelling" and p.expect_chute == chute_id
                   and p.expect_from_mono - tol <= t <= p.expect_until_mono + tol]
        if not waiting and t <= self.ghosts_until_mono:
            self.counters["confirms_after_fault"] += 1
            return
        if not waiting:
            self.counters["unexpected_confirms"] += 1
            self.unexpected_by_chute[chute_id] = self.unexpected_by_chute.get(chute_id, 0) + 1
            return
        delay = self.confirm_delay_s.get(chute_id)
        # with the chute's usual delay known, the parcel due closest to now is the one that arrived:
        # a lost parcel ahead must not take the confirm of the one behind it
        p = waiting[0] if delay is None else min(waiting, key=lambda q: abs(t - q.expect_at_mono - delay))
        seen = t - p.expect_at_mono
        self.confirm_delay_s[chute_id] = seen if delay is None else 0.9 * delay + 0.1 * seen
        c = self.chutes.get(chute_id)
        if c is not None and c.diverter in self.confirm_offsets_ms and p.chute == chute_id:
            d = self.outputs.diverter[c.diverter]
            head_at = self.clock.mono_of(p.head_count + self.clock.counts(d.position_mm - self.line.induct.position_mm))
            self.confirm_offsets_ms[c.diverter].append(1000 * (t - head_at))
        p.actual_chute, p.confirmed_mono = chute_id, t
        if p.outcome is None:
            p.outcome, p.reason = "sorted", f"confirmed in {chute_id}" + (f" ({p.reason})" if p.reason else "")
        self._finish(p)

    def _blind_during(self, lo: float, hi: float) -> float | None:
        """The longest gap between polls overlapping [lo, hi] in which a confirm could be missed."""
        gaps = [b - a for a, b in self.blind_spans if a < hi and b > lo]
        return max(gaps) if gaps else None

    def _timeout(self, p: Parcel) -> None:
        c = self.chutes[p.expect_chute]
        blind = self._blind_during(p.expect_from_mono, p.expect_until_mono) if c.confirm_signal else None
        if p.outcome is None:
            if c.confirm_signal is None:
                p.outcome, p.reason = "unconfirmed", f"{c.id} has no confirm photo-eye"
            elif blind is not None:
                p.outcome, p.reason = "unconfirmed", (
                    f"{c.id}'s photo-eye went unread for {blind * 1000:.0f} ms while the parcel was due there "
                    "(a slow link or a stalled process): it may have arrived unseen")
                self.counters["confirms_unreadable"] = self.counters.get("confirms_unreadable", 0) + 1
            else:
                p.outcome, p.reason = "lost", (f"diverted to {c.id} but its photo-eye never saw it"
                                               + (f" ({p.reason})" if p.reason else ""))
        elif c.confirm_signal is not None:
            p.reason += f"; not seen at {c.id}"
        self._finish(p)

    def _settle_s(self) -> float:
        """From now until every parcel on the belt now has reached its chute and been confirmed."""
        travel_s = (self.line.end_mm - self.line.induct.position_mm) / max(self.clock.speed_mm_s, 1.0)
        return travel_s + max((c.confirm_timeout_ms for c in self.line.chutes), default=0) / 1000 + 1.0

    def fault_all(self, reason: str) -> None:
        """The link to the line is gone: nothing in flight can be trusted to reach its chute."""
        if self.bits_mono is not None and any(p.state != "done" for p in self.parcels):
            self.ghosts_until_mono = self.bits_mono + self._settle_s()
        for p in self.parcels:
            if p.state != "done":
                p.outcome, p.reason = "fault", reason
                self._finish(p)
        self.parcels.clear()
        self.outputs.clear()
        self.bits_mono = None

    def _finish(self, p: Parcel) -> None:
        p.state = "done"
        d = p.decision
        induct = self.line.induct.position_mm
        scan_lo = self.clock.mono_of(p.head_count + self.clock.counts(self.line.scan_zone.start_mm - induct))
        tail = p.tail_count if p.tail_count is not None else p.head_count
        scan_hi = self.clock.mono_of(tail + self.clock.counts(self.line.scan_zone.end_mm - induct))
        self.emit({
            # keys starting with "_" are for the service process, not the record
            "_scan_mono": (scan_lo, scan_hi),
            "run_id": self.run_id, "parcel_id": p.pid,
            "induct_wall": p.induct_wall,
            "decided_wall": p.decided_wall, "ended_wall": self.wall(),
            "length_mm": None if p.length_counts is None else round(p.length_counts / self.line.encoder_pulses_per_mm, 1),
            "reads": [_read_dict(r, p) for r in p.reads],
            "waybill": d.waybill if d else None, "carrier": d.carrier if d else None,
            "destination": d.destination if d else None, "chute": p.chute,
            "actual_chute": p.actual_chute, "outcome": p.outcome, "reason": p.reason,
            "routing_version": d.routing_version if d else None,
            "rule": getattr(d, "rule", None) if d else None,
            "sort_code": getattr(d, "sort_code", None) if d else None,
            "fire_error_ms": p.fire_error_ms, "decision_ms": p.decision_ms,
            "fired_wall": _wall_of(p, p.fired_mono), "confirmed_wall": _wall_of(p, p.confirmed_mono),
        })


def _wall_of(p: Parcel, mono: float | None) -> float | None:
    """A moment of the parcel's on the wall clock, through its induct (one clock for the record's times)."""
    return None if mono is None else round(p.induct_wall + (mono - p.induct_mono), 4)


def _read_dict(r, p: Parcel) -> dict:
    d = {"camera": r.camera, "symbology": r.symbology, "text": r.text}
    at = p.read_at.get((r.camera, r.symbology, r.text))
    if at is not None:
        d["at_mm"], d["t_s"] = at   # from the parcel's head; after its induct
    if r.weak:
        d["weak"] = True
    return d

