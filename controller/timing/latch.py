"""The encoder latch: a PLC or counter module that latches the encoder count at each edge of the
induct photo-eye gives each parcel's head and tail to the count, instead of "somewhere between two
polls" (±0.5 ms at 1 kHz = ±1 mm at 2 m/s; ±2 ms over RS-485 at 115200).

The latch registers (plc.latch) hold a 16-bit edge counter and the 32-bit count at the last edge,
for the rising (head) and falling (tail) edge. The edge counters also prove that no parcel passed
unseen: after a lost link, every rising edge the controller did not see becomes a `fault` record.

`PlcTracker` is the tracker as the timing loop runs it: with the latch fitted (when the I/O map has
one) it is fed the latch registers before each poll (`on_latch`) and substitutes the latched count
for the poll-interpolated one at each edge. With or without a latch it also makes sure a parcel that
was under the induct photo-eye when the link was lost gets one record, not two (its tail edge after
the reconnect is not a new parcel).
The inputs are read in two requests (discrete inputs, then registers), so a latch can arrive one
poll before the photo-eye bit shows the edge; it is never later.
"""

from __future__ import annotations

from collections import deque

from sorter.controller.timing.belt_clock import WRAP
from sorter.controller.timing.tracker import Parcel, Tracker

SEQ_MOD = 1 << 16
UNMATCHED_POLLS = 3  # a latched edge the photo-eye bit has not shown within this many polls was not seen
MAX_UNSEEN = 1000  # a baseline further behind than this is another device's counter (replaced, reset)


class PlcTracker(Tracker):
    latch = None
    _faulted_open_head: float | None = None
    _allow_orphan_tail = True
    # the head-edge counter value up to which every edge has become a parcel (admitted or recorded
    # unseen): a restarted timing process starts counting from here (`latch_baseline`), so a parcel
    # that crossed the eye while no process was watching gets its record, and no parcel gets two
    accounted_seq: int | None = None
    latch_baseline: int | None = None

    max_edge_gap_s = 0.025  # an edge seen across a longer gap between polls has no usable time

    def on_inputs(self, t_mono: float, values: dict[str, int], enc_mono: float | None = None) -> None:
        """As Tracker.on_inputs; but a parcel whose induct edge fell in a long gap between two polls
        (a stalled process, a retried request) and was not latched goes to reject: its position is
        only known to within half the gap."""
        gap = None if self.bits_mono is None else t_mono - self.bits_mono
        before = self.next_pid
        had_tails = {p.pid for p in self.parcels if p.tail_count is not None}
        self._latched_edge = False
        super().on_inputs(t_mono, values, enc_mono)
        if gap is None or gap <= self.max_edge_gap_s or self._latched_edge:
            return
        for p in self.parcels:
            new_head = p.pid >= before
            new_tail = p.tail_count is not None and p.pid not in had_tails
            if (new_head or new_tail) and p.outcome is None and p.state == "scanning":
                p.outcome, p.reason = "fault", (f"induct photo-eye edge between two polls {gap * 1000:.0f} ms "
                                                f"apart: position unknown to ±{gap * 500:.0f} ms")
                self.counters["uncertain_edges"] = self.counters.get("uncertain_edges", 0) + 1

    def setup_latch(self, latch) -> None:
        self.latch = latch
        self._allow_orphan_tail = False
        self._hseq: int | None = None
        self._tseq: int | None = None
        self._heads: deque[list] = deque()  # [raw count, polls waited]
        self._tails: deque[list] = deque()
        self._raw_now: int | None = None
        self.counters.update({"latched_heads": 0, "latched_tails": 0, "unseen_parcels": 0})

    # -- fed by the timing loop -------------------------------------------------------------
    def on_latch(self, values: dict[str, int]) -> None:
        """The latch registers of this poll; call before on_inputs."""
        lt = self.latch
        h, t = values[lt.head_seq], values[lt.tail_seq]
        if self._hseq is None:
            if self.latch_baseline is not None and (h - self.latch_baseline) % SEQ_MOD <= MAX_UNSEEN:
                # the process before this one accounted for every edge up to the baseline; the ones
                # since crossed while nobody watched: they become records below. A parcel on the eye
                # now has its record either way, so its tail makes none.
                self._hseq, self._tseq = self.latch_baseline, t
                self._allow_orphan_tail = False
            else:
                self._hseq, self._tseq = h, t
                self.accounted_seq = h
                # a parcel already on the eye now is outside the latch's accounting: its tail may make a record
                self._allow_orphan_tail = bool(values.get(self.line.induct.signal))
                return
        nh, nt = (h - self._hseq) % SEQ_MOD, (t - self._tseq) % SEQ_MOD
        old_h = self._hseq
        self._hseq, self._tseq = h, t
        # edges before the last one have no count left in the registers: mark them None
        for i in range(nh):
            self._heads.append([values[lt.head_count] if i == nh - 1 else None, 0, (old_h + i + 1) % SEQ_MOD])
        for i in range(nt):
            self._tails.append([values[lt.tail_count] if i == nt - 1 else None, 0])

    def fault_all(self, reason: str) -> None:
        open_heads = [p.head_count for p in self.parcels if p.tail_count is None and p.state != "done"]
        self._faulted_open_head = open_heads[-1] if open_heads else None
        super().fault_all(reason)
        if self.latch is not None:
            self.reset_latch_matching()

    def after_poll(self) -> None:
        """Age the unmatched latches; a head edge the bits never showed was a parcel nobody saw."""
        if self.bits_mono is None:
            return  # the first poll after (re)connecting can show no edge: wait for the next
        for q in (self._heads, self._tails):
            for item in q:
                item[1] += 1
        while self._heads and self._heads[0][1] >= UNMATCHED_POLLS:
            # a parcel went by unseen while another may still be on the eye: that one's tail is
            # uncertain (the unseen one's tail may be taken for it)
            self._uncertain_on_eye("another parcel crossed the induct photo-eye unseen while it was on it: "
                                   "its length is not known")
            self._record_unseen(self._heads.popleft())
        while self._tails and self._tails[0][1] >= UNMATCHED_POLLS:
            self._tails.popleft()

    def reset_latch_matching(self) -> None:
        """After a lost link: pending latches are for parcels already faulted or never seen."""
        while self._heads:
            self._record_unseen(self._heads.popleft())
        self._tails.clear()

    # -- edges --------------------------------------------------------------------------------
    def _latched_mono(self, raw: int | None, t_edge: float) -> float:
        if raw is None:
            return t_edge
        enc_raw = self.bits.get(self.line.encoder_signal)
        if enc_raw is None:
            return t_edge
        count = self.clock.count - ((enc_raw - raw) % WRAP)
        # the moment at which the clock's own interpolation gives exactly the latched count
        t = self.clock.mono_of(count)
        for _ in range(3):
            err = count - self.clock.count_at(t)
            if abs(err) < 0.01:
                break
            t += err / max(self.clock.counts_s, 1e-6)
        return t

    def _induct_head(self, t_edge: float) -> None:
        self._faulted_open_head = None
        if self.latch is not None and self._heads:
            while len(self._heads) > 1:  # older edges: parcels that passed unseen
                self._record_unseen(self._heads.popleft())
            raw, _, self.accounted_seq = self._heads.popleft()
            self.counters["latched_heads"] += raw is not None
            self._latched_edge = raw is not None
            t_edge = self._latched_mono(raw, t_edge)
        super()._induct_head(t_edge)

    def _induct_tail(self, t_edge: float) -> None:
        if self.latch is not None and self._tails:
            if len(self._tails) > 1:
                # several parcels left the eye between two polls: which latched tail is this
                # parcel's is not known, and a wrong one would stretch it over the next parcel
                self._uncertain_on_eye("several parcels crossed the induct photo-eye between two polls: "
                                       "its length is not known")
            while len(self._tails) > 1:
                self._tails.popleft()
            raw, _ = self._tails.popleft()
            self.counters["latched_tails"] += raw is not None
            self._latched_edge = raw is not None
            t_edge = self._latched_mono(raw, t_edge)
        if not any(p.tail_count is None for p in self.parcels):
            # a tail with no head: the tracker would record a parcel "whose head nobody saw"
            tail = self.clock.count_at(t_edge)
            head, self._faulted_open_head = self._faulted_open_head, None
            if head is not None and (tail - head) / self.line.encoder_pulses_per_mm <= self.line.max_length_mm:
                self.last_tail_count = tail
                return  # the parcel that was on the eye when the link was lost: it has its record
            if self.latch is not None and not self._allow_orphan_tail:
                self.last_tail_count = tail
                return  # the latch counted its head: it has its record (unseen) already
            self._allow_orphan_tail = self.latch is None
        super()._induct_tail(t_edge)

    def _uncertain_on_eye(self, reason: str) -> None:
        for p in self.parcels:
            if p.tail_count is None and p.outcome is None and p.state == "scanning":
                p.outcome, p.reason = "fault", reason
                self.counters["uncertain_edges"] = self.counters.get("uncertain_edges", 0) + 1

    def _record_unseen(self, edge: list | None = None) -> None:
        """A parcel crossed the induct photo-eye while the controller could not see it: it gets a
        record (it goes to the reject chute: no output is switched for it)."""
        if edge is not None:
            self.accounted_seq = edge[2]
        now = self.bits_mono or 0.0
        # it rides on to the reject chute nobody sent it to: its confirm there is not a stranger's
        self.ghosts_until_mono = max(self.ghosts_until_mono, now + self._settle_s())
        p = Parcel(self.next_pid, float(self.clock.count), now, self.wall(), None)
        self.next_pid += 1
        p.outcome, p.reason = "fault", "crossed the induct photo-eye while the line's I/O could not be read (latch counter)"
        self.counters["unseen_parcels"] += 1
        self._finish(p)
