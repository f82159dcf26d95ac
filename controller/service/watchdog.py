"""What the service tells systemd: READY=1 once the line's I/O is up and every camera is open,
STATUS= with the line's state, and WATCHDOG=1 only while the timing loop makes progress.

The watchdog is fed from the timing process's own status messages (it sends one every 0.25 s from
its loop, and one per reconnect attempt while the I/O is away), counted by the service as they
arrive: a timing loop that hangs stops them, the pings stop, and systemd kills and restarts the
whole service. A living service with a dead loop is exactly what it must not mistake for healthy,
so nothing else (the API, the supervisor) feeds it.

`Pulse` decides (a plain class with a clock); `SystemdFeeder` is the thread that asks the service
and sends what `Pulse` says.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sorter.controller.service.notify import Notifier, one_line, watchdog_interval_s

log = logging.getLogger("sorter.service")
READY_POLLS = 50      # the timing loop has polled the inputs this often: its view of them is settled
START_GRACE_S = 30    # during start-up, each sign of progress gives systemd this much more time
MIN_PING_S = 1.0      # at most one WATCHDOG=1 a second (systemd asks for one per half timeout)


class Pulse:
    """The notifications due now, from the timing loop's progress counter, whether the line is
    ready and the status text. Each is sent once per change; WATCHDOG=1 only after new progress."""

    def __init__(self, watchdog_s: float | None, clock: Callable[[], float] = time.monotonic,
                 min_ping_s: float = MIN_PING_S, progress0: object = 0):
        self.watchdog_s, self.clock = watchdog_s, clock
        self.min_ping_s = min(min_ping_s, watchdog_s / 4) if watchdog_s else min_ping_s
        self.ready_sent = False
        self._progress = progress0  # the counter before the loop has said anything
        self._fresh = False           # progress seen since the last ping
        self._last_ping = float("-inf")
        self._status: str | None = None

    def step(self, progress: object, ready: bool, status: str) -> list[str]:
        now, out = self.clock(), []
        if progress != self._progress:
            self._progress, self._fresh = progress, True
        if ready and not self.ready_sent:
            self.ready_sent = True
            out.append("READY=1")
        if status != self._status:
            self._status = status
            out.append(f"STATUS={status}")
        if self._fresh and now - self._last_ping >= self.min_ping_s:
            if not self.ready_sent:
                out.append(f"EXTEND_TIMEOUT_USEC={int(START_GRACE_S * 1e6)}")
            if self.watchdog_s:  # (before READY too: a start-over after a repaired config is already active)
                out.append("WATCHDOG=1")
            elif self.ready_sent:
                return out
            self._fresh, self._last_ping = False, now
        return out


def line_ready(svc) -> bool:
    """The I/O link is up, the loop has polled it for a while, and every camera is open — as the
    status page shows it (the supervisor's snapshot), so that READY and the page agree."""
    line = (svc.status() or {}).get("line") or {}
    cameras = (svc.status() or {}).get("cameras") or []
    return bool((line.get("plc") or {}).get("connected")) and (line.get("counters") or {}).get("polls", 0) > READY_POLLS \
        and all(c.get("alive") for c in cameras)


def status_text(svc) -> str:
    """One line for `systemctl status`: the line state, why, and what it has done."""
    snap = svc.status() or {}
    line = snap.get("line") or {}
    ts_line = svc.timing_status.get("line") or {}
    state = ts_line.get("state") or line.get("state") or "booting"
    reason = ts_line.get("reason") or line.get("state_reason") or ""
    parts = [f"{state}: {reason}" if reason and state != "running" else state]
    if ts_line.get("test_mode"):
        parts.append(f"TEST MODE {ts_line['test_mode']}")
    counts = snap.get("counts") or {}
    if counts.get("total"):
        parts.append(f"{counts['total']} parcels, {(counts.get('outcomes') or {}).get('sorted', 0)} sorted")
    down = [h.name for h in svc.cameras.values() if not h.up]
    if down:
        parts.append("cameras down: " + ", ".join(down))
    alarms = snap.get("alarms") or []
    if alarms:
        parts.append(f"{len(alarms)} alarm{'s' if len(alarms) > 1 else ''}")
    return " · ".join(parts)


class SystemdFeeder:
    """The thread that keeps systemd told (nothing when not started by systemd)."""

    def __init__(self, svc, notifier: Notifier | None = None, period_s: float = 0.25):
        self.svc, self.period_s = svc, period_s
        self.notifier = notifier or Notifier()
        self.pulse = Pulse(watchdog_interval_s())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        wd = self.pulse.watchdog_s
        if wd:
            plc = self.svc.cfg.plc
            slowest = plc.reconnect_max_s + plc.timeout_s  # the loop's longest quiet spell: reconnect back-off
            if slowest >= wd / 2:
                log.warning("WatchdogSec=%.0f s is short for plc.reconnect_max_s=%.1f s: while the I/O is "
                            "away systemd may restart the service; raise WatchdogSec= or lower reconnect_max_s",
                            wd, plc.reconnect_max_s)
        self._thread = threading.Thread(target=self._run, name="systemd-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            svc = self.svc
            try:
                ready, text = line_ready(svc), status_text(svc)
            except Exception:  # noqa: BLE001 - a snapshot of an odd shape must not stop the pings
                log.exception("systemd status: cannot read the line's state")
                ready, text = self.pulse.ready_sent, "status unknown (see the log)"
            msgs = self.pulse.step(getattr(svc, "timing_status_seq", 0), ready, text)
            if "READY=1" in msgs:
                log.info("ready: the line's I/O is up and every camera is open")
            self.notifier.send(*[m if not m.startswith("STATUS=") else "STATUS=" + one_line(m[7:]) for m in msgs])

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(2)
        self.notifier.stopping("stopping: parcels on the belt are tracked to their chutes, then every "
                               "output goes off")

