"""The line's state, decided in one place: what the line may do now, and why.

    booting ──I/O up──▶ ready ──belt runs──▶ running ⇄ paused (supervisor)
       any ──I/O lost, no routing table──▶ faulted ──cause gone──▶ ready / running
       any ──e-stop input opens──▶ estop (latched) ──input closed + reset──▶ ready / running
       any ──SIGTERM──▶ stopping (parcels in flight finish, then everything off)

Only ``running`` raises induct enable: a paused, stopped, faulted or e-stopped line takes no
parcels in, whatever else is going on. The e-stop is latched because the input closing again is
not a person saying the line is safe: someone must press reset (page, API or a reset input) after
the input has cleared. A test mode is not a state of its own but is shown with every state, so
that a wall screen never shows a plain green RUNNING while diverters fire on a test pattern.

Plain logic with a wall clock handed in (for the "since" of the page); the timing loop feeds it
the inputs and asks it what to write.
"""

from __future__ import annotations

import time
from collections import deque

STATES = ("booting", "ready", "running", "paused", "faulted", "estop", "stopping")
TOWER = {"booting": "red", "ready": "amber", "running": "green", "paused": "amber", "faulted": "red",
         "estop": "red", "stopping": "amber"}


class LineState:
    def __init__(self, *, estop_mapped: bool, run_mapped: bool, test_mode: str = "off", wall=time.time):
        self.wall = wall
        self.estop_mapped, self.run_mapped = estop_mapped, run_mapped
        self.test_mode = None if test_mode == "off" else test_mode
        self.link_up = False
        self.ever_linked = False
        self.link_reason = "connecting to the line's I/O"
        self.config_fault: str | None = None
        self.estop_input_ok: bool | None = None
        self.estop_latched = False
        self.belt_running: bool | None = None
        self.paused = False
        self.stopping = False
        self.state, self.reason = "booting", self.link_reason
        self.since_wall = wall()
        self.history: deque[dict] = deque(maxlen=50)
        self.estops = 0
        self._update()

    # ------------------------------------------------------------------ what happens to the line
    def link(self, up: bool, reason: str = "") -> None:
        self.link_up = up
        if up:
            self.ever_linked = True
        else:
            self.link_reason = reason or "the line's I/O is lost"
        self._update()

    def set_config_fault(self, reason: str | None) -> None:
        self.config_fault = reason
        self._update()

    def estop_input(self, ok: bool) -> bool:
        """The e-stop input's value (True = circuit closed, healthy). True when it just opened."""
        opened = not ok and self.estop_input_ok is not False
        self.estop_input_ok = ok
        if opened:
            self.estop_latched = True
            self.estops += 1
        self._update()
        return opened

    def belt_input(self, running: bool) -> None:
        self.belt_running = running
        self._update()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._update()

    def stop(self) -> None:
        self.stopping = True
        self._update()

    def reset(self) -> tuple[bool, str]:
        """A person says the line is safe again. Refused while the e-stop input is still open."""
        if not self.estop_latched:
            return True, "nothing to reset"
        if self.estop_mapped and self.estop_input_ok is not True:
            return False, "the emergency stop is still pressed (its input is open): release it first"
        self.estop_latched = False
        self._update()
        return True, "emergency stop reset"

    # ------------------------------------------------------------------ what the line may do
    @property
    def induct_enable(self) -> bool:
        return self.state == "running"

    def tower(self, alarms_active: bool) -> str:
        colour = TOWER[self.state]
        return "amber" if colour == "green" and (alarms_active or self.test_mode) else colour

    def snapshot(self) -> dict:
        return {"state": self.state, "reason": self.reason, "since_wall": self.since_wall,
                "test_mode": self.test_mode, "estop_latched": self.estop_latched,
                "estop_input_ok": self.estop_input_ok, "induct_enable": self.induct_enable,
                "estops": self.estops, "history": list(self.history)}

    # ------------------------------------------------------------------ the one rule
    def _decide(self) -> tuple[str, str]:
        if self.stopping:
            return "stopping", "the controller is stopping: parcels in flight finish, no new ones"
        if self.estop_latched:
            if self.estop_input_ok:
                return "estop", "emergency stop released: press reset to restart the line"
            return "estop", "emergency stop pressed"
        if not self.link_up:
            return ("faulted" if self.ever_linked else "booting"), self.link_reason
        if self.config_fault:
            return "faulted", self.config_fault
        if self.run_mapped and self.belt_running is False:
            return "ready", "the belt is stopped"
        if self.paused:
            return "paused", "paused by a supervisor: parcels in flight finish, no new ones"
        return "running", "sorting"

    def _update(self) -> None:
        state, reason = self._decide()
        if (state, reason) != (self.state, self.reason):
            if state != self.state:
                self.since_wall = self.wall()
            self.state, self.reason = state, reason
            self.history.append({"wall": self.wall(), "state": state, "reason": reason})
