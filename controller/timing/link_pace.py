"""Whether the link to the line answers fast enough for a switch-on to land when it is meant to.

Over Modbus TCP the controller times a write by its round trip: the device acted somewhere between
sending and the answer, and the loop takes the middle. Once a round trip is longer than twice
`plc.max_late_ms`, that middle can be off by more than `max_late_ms`: a switch-on sent then may land
late, and its switch-off — which waits behind it on the one connection — later still, with the
next parcel already at the diverter. So while the link is slow no diverter is switched on (its
parcels go to reject, `too_late`), and a switch-on that was answered that late is switched off at
once. The link counts as fast again after a few round trips within the limit in a row.

What cannot be helped from the PC: a diverter already on, or a write already on its way, when the
link turns slow is switched off only when the slow link delivers the switch-off; when the link is
lost outright, only when the device's own watchdog drops its outputs (the heartbeat stopped). Both
are counted (`held_on_spells`, `held_on_losses`). A PLC that times its own diverter pulses
(`plc.mode: plc_tracking`) does not have this window.

RTU and relay boards are timed from the bytes on the wire, not from the answer, so a late answer
does not say the write acted late: their writes are judged only by the too_late rule.
"""

from __future__ import annotations

RECOVER_AFTER = 3  # round trips within the limit in a row before switch-ons are allowed again


class LinkPace:
    def __init__(self, max_late_s: float, timed_by_answer: bool):
        self.limit_s: float | None = 2 * max_late_s if timed_by_answer else None
        self.slow = False
        self.slow_since: float | None = None
        self.fast_run = 0
        self.last_s = 0.0
        self.worst_s = 0.0           # the slowest round trip of the current slow spell
        self.slow_spells = 0
        self.refused_switch_ons = 0  # switch-ons not sent because the link was slow
        self.late_switch_ons = 0     # switch-ons sent, then answered later than the limit
        self.held_on_spells = 0      # slow spells that began with a diverter on (its switch-off delayed)
        self.held_on_losses = 0      # links lost with an output perhaps on: the device's watchdog drops it

    def note(self, round_trip_s: float, now: float) -> bool:
        """One request's round trip. Returns True when this one made the link slow."""
        self.last_s = round_trip_s
        if self.limit_s is None:
            return False
        if round_trip_s > self.limit_s:
            self.fast_run = 0
            self.worst_s = max(self.worst_s, round_trip_s) if self.slow else round_trip_s
            if not self.slow:
                self.slow, self.slow_since = True, now
                self.slow_spells += 1
                return True
            return False
        self.fast_run += 1
        if self.slow and self.fast_run >= RECOVER_AFTER:
            self.slow, self.slow_since = False, None
        return False

    def too_slow(self, round_trip_s: float) -> bool:
        return self.limit_s is not None and round_trip_s > self.limit_s

    def snapshot(self) -> dict:
        return {"slow": self.slow, "limit_ms": None if self.limit_s is None else round(self.limit_s * 1000, 1),
                "last_ms": round(self.last_s * 1000, 2), "worst_ms": round(self.worst_s * 1000, 1),
                "slow_spells": self.slow_spells, "refused_switch_ons": self.refused_switch_ons,
                "late_switch_ons": self.late_switch_ons, "held_on_spells": self.held_on_spells,
                "held_on_losses": self.held_on_losses}
