"""PLC-tracking mode (`plc.mode: plc_tracking`): an existing PLC tracks the parcels and drives the
diverters itself; the PC reads the cameras, decides, and answers "parcel N -> chute K" in a mailbox
of holding registers before the parcel's deadline, then reads back where each parcel went.

The handshake is described with the registers in plc/config.py (`Mailbox`). Here:

- `MailboxTracker` is the tracker for this mode: a parcel is created when the PLC posts it (its head
  from the PLC's encoder count, else from the post time and its length), so camera reads still
  associate by capture time; it is decided as in direct mode, but the decision becomes an answer
  (`MailboxPlanner` stands in for the diverter-window planner) and the parcel ends with the PLC's
  result: sorted, too_late (the PLC had no answer in time), lost (not where it was sent) or, as
  decided, a reject outcome. Exactly one record per parcel, as in direct mode.
- `MailboxLoop` is the timing loop for this mode: each turn writes a pending answer, else the
  acknowledgement of a result, else does what the direct loop does (heartbeat, tower, poll). It
  never writes a diverter output: those belong to the PLC.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from sorter.controller.timing.belt_clock import WRAP
from sorter.controller.config.line import Config
from sorter.controller.timing.loop import TimingLoop
from sorter.controller.timing.tracker import Parcel, Tracker
from sorter.controller.config.plc import chute_numbers
from sorter.plc.line_io import DeviceRefused

SEQ_MOD = 1 << 16
MAX_POST_GAP_S = 0.025  # without new_head_count: a post seen across a longer poll gap has no usable position
MAX_SEQ_JUMP = 256  # more posts than this between two polls: the PLC restarted its counter
RESULT_OK, RESULT_NO_ANSWER, RESULT_UNCONFIRMED, RESULT_BAD_CHUTE = 0, 1, 2, 3


@dataclass
class PlcParcel(Parcel):
    plc_id: int = 0
    answered_mono: float | None = None


@dataclass(frozen=True)
class Answer:
    plc_id: int
    number: int       # chute number in the PLC, 0 = reject
    pid: int


class MailboxPlanner:
    """Stands in for OutputPlanner: a decision is an answer in the mailbox, not diverter windows.
    It refuses (too_late) a decision that comes later than the PLC could still act on."""

    def __init__(self, cfg: Config, clock):
        self.cfg, self.clock = cfg, clock
        self.induct_mm = cfg.line.induct.position_mm
        self.min_lead_s = cfg.line.min_decision_lead_ms / 1000
        self.max_late_s = cfg.plc.max_late_ms / 1000
        self.diverter = {d.name: d for d in cfg.line.diverters}
        self.numbers = chute_numbers(cfg)
        self.chute_of = {n: c for c, n in self.numbers.items()}
        self.windows: dict[str, list] = {}  # no diverter windows: the PLC switches its own outputs
        self.cancelled: list[tuple[int, str]] = []
        self.last_refusal = ""
        self.answers: deque[Answer] = deque()

    def plan(self, p: PlcParcel, chute, now_mono: float) -> float | None:
        number = self.numbers.get(chute.id)
        if number is None or chute.diverter is None:
            self.last_refusal = f"chute {chute.id} has no number in plc.mailbox.chute_numbers"
            return None
        d = self.diverter[chute.diverter]
        on = p.head_count + self.clock.counts(d.position_mm - d.lead_mm - self.induct_mm)
        due = self.clock.mono_of(on) - d.actuation_ms / 1000
        if due - now_mono < self.min_lead_s:
            self.last_refusal = (f"decided {1000 * (due - now_mono):.0f} ms before {d.name} had to "
                                 f"switch (the PLC needs the answer {1000 * self.min_lead_s:.0f} ms ahead)")
            return None
        self.answers.append(Answer(p.plc_id, number, p.pid))
        centre = (p.head_count + p.tail_count) / 2 + self.clock.counts(d.position_mm - self.induct_mm)
        return self.clock.mono_of(centre)

    def answer_reject(self, p: PlcParcel) -> None:
        self.answers.append(Answer(p.plc_id, 0, p.pid))

    # the OutputPlanner interface the timing loop and tracker use: nothing to fire here
    def next_action(self):
        return None

    def too_late(self, a, now_mono: float) -> bool:
        return False

    def done(self, a, write_mono: float):
        return None

    def outputs_on(self) -> list[str]:
        return []

    def clear(self) -> None:
        self.answers.clear()


class MailboxTracker(Tracker):
    latch = None

    def __init__(self, cfg: Config, decide, emit, run_id: str, wall=time.time, **kwargs):
        super().__init__(cfg, decide, emit, run_id, wall, **kwargs)
        self.mb = cfg.plc.mailbox
        self.outputs = MailboxPlanner(cfg, self.clock)
        self.new_seq: int | None = None
        self.result_seq: int | None = None
        self.by_plc_id: dict[int, PlcParcel] = {}
        self.ack_due: int | None = None
        self.result_grace_s = self.mb.result_timeout_ms / 1000
        self.counters.update({"plc_posted": 0, "plc_missed": 0, "plc_results": 0, "plc_unknown_results": 0,
                              "plc_no_answer": 0, "plc_seq_resets": 0, "answers": 0})

    def setup_latch(self, latch) -> None:
        """The PLC owns the induct photo-eye (and its latch) in this mode."""

    # ---------------------------------------------------------------- inputs
    def on_inputs(self, t_mono: float, values: dict[str, int], enc_mono: float | None = None) -> None:
        self.clock.add(enc_mono if enc_mono is not None else t_mono, values[self.line.encoder_signal])
        gap = None if self.bits_mono is None else t_mono - self.bits_mono
        self.bits, self.bits_mono = values, t_mono
        m = self.mb
        seq = values[m.new_seq]
        if self.new_seq is None:
            self.new_seq = seq  # posted before we started: not ours
        elif seq != self.new_seq:
            n = (seq - self.new_seq) % SEQ_MOD
            self.new_seq = seq
            if n > MAX_SEQ_JUMP:
                self.counters["plc_seq_resets"] += 1
            else:
                for _ in range(n - 1):
                    self._missed()
                p = self._posted(t_mono, values)
                if not m.new_head_count and (gap is None or gap > MAX_POST_GAP_S):
                    # no head count from the PLC and the post time only known to within a long gap:
                    # camera reads could go to the wrong parcel
                    p.outcome, p.reason = "fault", ("posted by the PLC between two polls "
                                                    f"{1000 * (gap or 0):.0f} ms apart: position unknown")
        rs = values[m.result_seq]
        if self.result_seq is None:
            self.result_seq = values[m.result_ack]
        if rs != self.result_seq:
            self.result_seq = rs
            self._result(values[m.result_id], values[m.result_chute],
                         values.get(m.result_code) if m.result_code else None)
            self.ack_due = rs
        self._advance(t_mono)

    def _posted(self, t_mono: float, values: dict[str, int]) -> PlcParcel:
        m, line = self.mb, self.line
        length_mm = float(values[m.new_length_mm]) if m.new_length_mm else line.min_length_mm
        length = self.clock.counts(length_mm)
        if m.new_head_count:
            head = self.clock.count - ((values[line.encoder_signal] - values[m.new_head_count]) % WRAP)
        else:  # posted when its tail cleared the photo-eye, somewhere since the last poll
            head = self.clock.count_at(t_mono) - length
        gap = None if self.last_tail_count is None else (head - self.last_tail_count) / line.encoder_pulses_per_mm
        p = PlcParcel(self.next_pid, head, self.clock.mono_of(head), self.wall(), gap,
                      tail_count=head + length, plc_id=values[m.new_id])
        self.next_pid += 1
        self.last_tail_count = p.tail_count
        old = self.by_plc_id.get(p.plc_id)
        if old is not None and old.state != "done":
            old.outcome, old.reason = "fault", f"the PLC reused its id {p.plc_id} before posting its result"
            self._finish(old)
        self.by_plc_id[p.plc_id] = p
        self._admit(p)
        self.counters["plc_posted"] += 1
        return p

    def _missed(self) -> None:
        """The PLC posted a parcel the PC never saw (the link was down): it gets a record; the PLC
        sends it to reject for want of an answer."""
        now = self.bits_mono or 0.0
        p = PlcParcel(self.next_pid, float(self.clock.count), now, self.wall(), None)
        self.next_pid += 1
        p.outcome, p.reason = "fault", "posted by the PLC while its mailbox could not be read: no answer given"
        self.counters["plc_missed"] += 1
        self._finish(p)

    def _result(self, plc_id: int, number: int, code: int | None) -> None:
        self.counters["plc_results"] += 1
        p = self.by_plc_id.get(plc_id)
        if p is None or p.state == "done":
            self.counters["plc_unknown_results"] += 1  # faulted earlier or never ours: its record exists
            return
        del self.by_plc_id[plc_id]
        reached = self.outputs.chute_of.get(number)
        p.actual_chute = reached or f"#{number}"
        if code == RESULT_NO_ANSWER:
            self.counters["plc_no_answer"] += 1
            if p.outcome is None:
                p.outcome = "too_late"
                p.reason = (f"the PLC had no answer for parcel {plc_id} before its deadline "
                            f"(answered {1000 * (p.answered_mono - p.decided_mono):.0f} ms after the decision)"
                            if p.answered_mono and p.decided_mono else
                            f"the PLC had no answer for parcel {plc_id} before its deadline")
                p.reason += f"; it went to {reached or number}"
                p.chute = None
            else:
                p.reason += "; the PLC had no answer in time"
        elif p.outcome is None:
            if reached == p.chute:
                p.outcome, p.reason = "sorted", f"the PLC confirmed it in {reached}"
            elif code == RESULT_BAD_CHUTE:
                p.outcome, p.reason, p.chute = "fault", f"the PLC does not know chute number {number}", None
            else:  # sent to p.chute (the record keeps it, as a lost parcel's does in direct mode)
                p.outcome, p.reason = "lost", (f"sent to {p.chute}; the PLC reports it reached "
                                               f"{reached or number} (code {code})")
        elif reached != self.line.reject_chute:
            p.reason += f"; but the PLC reports it reached {reached or number}"
        self._finish(p)

    # ---------------------------------------------------------------- decisions
    def _decide(self, p: PlcParcel, now: float, exit_mono: float) -> None:
        super()._decide(p, now, exit_mono)
        if p.chute is None:
            self.outputs.answer_reject(p)  # say so: silence would read as "no answer in time"

    def _expect(self, p: Parcel, chute_id: str, centre_mono: float) -> None:
        super()._expect(p, chute_id, centre_mono)
        p.expect_until_mono += self.result_grace_s  # the result comes through the mailbox, queued

    def _timeout(self, p: PlcParcel) -> None:
        if self.by_plc_id.get(p.plc_id) is p:
            del self.by_plc_id[p.plc_id]
        if p.outcome is None:
            p.outcome, p.reason = "lost", f"the PLC posted no result for parcel {p.plc_id}"
        else:
            p.reason += "; the PLC posted no result"
        self._finish(p)

    def answered(self, a: Answer, t_mono: float) -> None:
        self.counters["answers"] += 1
        p = self.by_plc_id.get(a.plc_id)
        if p is not None and p.pid == a.pid:
            p.answered_mono = t_mono

    def fault_all(self, reason: str) -> None:
        super().fault_all(reason)
        self.by_plc_id.clear()


class MailboxLoop(TimingLoop):
    """The timing loop in plc_tracking mode: answers and result acknowledgements, then the usual
    heartbeat, tower and poll turns. The diverter outputs are the PLC's: never written here."""

    tracker_cls = MailboxTracker

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mb = self.cfg.plc.mailbox
        self.answer_gap_s = self.mb.answer_interval_ms / 1000
        self.next_answer_mono = 0.0
        self.ack_retry_mono = 0.0

    def _safe_signals(self) -> list[str]:
        return [self.plc.induct_enable] if self.plc.induct_enable else []

    async def _cycle(self) -> None:
        t = self.tracker
        q = t.outputs.answers
        now = self._mono()
        if q and now >= self.next_answer_mono:
            a = q.popleft()
            try:
                await self.io.write_register(self.mb.answer_chute, a.number)
                await self.io.write_register(self.mb.answer_id, a.plc_id)  # commits the answer
            except DeviceRefused as exc:
                self.alarms.raise_("plc_refused", f"the PLC refused an answer: {exc}", "plc_refused.answer", error=exc)
                return
            done = self._mono()
            t.answered(a, done)
            self.next_answer_mono = done + self.answer_gap_s
            return
        if t.ack_due is not None and now >= self.ack_retry_mono:
            try:
                await self.io.write_register(self.mb.result_ack, t.ack_due)
            except DeviceRefused as exc:  # the PLC waits for it: try again after a poll or two
                self.alarms.raise_("plc_refused", f"the PLC refused the result acknowledgement: {exc}", "plc_refused.ack",
                                   error=exc)
                self.ack_retry_mono = self._mono() + 10 * self.period
                return
            t.ack_due = None
            return
        await super()._cycle()
