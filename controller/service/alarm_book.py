"""Alarms with a life: each alarm the line raises (the service's and the timing process's) gets a
code and a severity, its first and last time, how often it came back, who acknowledged or shelved
it; its history is kept in the record database, one row from raised to cleared.

An alarm that clears and comes back within REOPEN_S is the same alarm again (count + 1, the
acknowledge undone): a flapping link is one alarm with a count, not a hundred. Shelving hides an
alarm from the active list for a while (a known fault being worked on); it still counts and is
still in the history.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger("sorter.alarms")

REOPEN_S = 60.0
MAX_SHELVE_S = 8 * 3600
CRITICAL = {"estop", "plc_link", "timing_process", "records", "plc_write", "belt_stopped", "routes"}
_CAMERA = re.compile(r"^camera_(?P<camera>.+?)(?:_(?P<kind>drops|health))?$")


def code_of(alarm_id: str) -> tuple[str, dict[str, str]]:
    """The alarm's code and parameters, for the page to say in its language."""
    m = _CAMERA.match(alarm_id)
    if m:
        kind = m.group("kind")
        return ("camera_" + kind if kind else "camera_down"), {"camera": m.group("camera")}
    return alarm_id, {}


def _take_detail(life: "AlarmLife", a: dict) -> None:
    """The detail key and its parameters of the alarm as last raised (the code's own parameters,
    e.g. the camera, stay)."""
    code_params = code_of(life.alarm_id)[1]
    detail = a.get("detail")
    life.detail = str(detail) if detail else None
    extra = a.get("params") if detail and isinstance(a.get("params"), dict) else {}
    life.params = {**{str(k): str(v) for k, v in extra.items()}, **code_params}


def severity_of(code: str) -> str:
    return "critical" if code in CRITICAL else "warning"


@dataclass
class AlarmLife:
    alarm_id: str
    code: str
    params: dict[str, str]
    severity: str
    text: str
    first_wall: float
    last_wall: float
    count: int = 1
    cleared_wall: float | None = None
    acked_by: str | None = None
    acked_wall: float | None = None
    shelved_by: str | None = None
    shelved_until: float | None = None
    detail: str | None = None    # the text's key and parameters (in params), for the page's language
    row_id: int | None = field(default=None, repr=False)
    dirty: bool = field(default=True, repr=False)

    def view(self, now: float) -> dict[str, Any]:
        d = asdict(self)
        d.pop("row_id"), d.pop("dirty")
        d["id"] = self.alarm_id
        d["since_wall"] = self.first_wall          # the page's and API's name before alarms had a life
        d["shelved"] = self.shelved_until is not None and now < self.shelved_until
        return d


class AlarmBook:
    """Fed the active alarms (id, text) every supervisor turn; `save(row_id, dict) -> row_id`
    persists a changed alarm (the record store's save_alarm), None keeps them in memory only."""

    def __init__(self, save: Callable[[int | None, dict], int] | None = None, wall: Callable[[], float] = time.time):
        self.save = save
        self.wall = wall
        self.lives: dict[str, AlarmLife] = {}
        self.new_count = 0   # alarms raised so far (the page sounds when it grows)
        self._lock = threading.RLock()   # the supervisor updates, the API acknowledges

    def update(self, active: list[dict]) -> None:
        with self._lock:
            self._update(active)

    def _update(self, active: list[dict]) -> None:
        now = self.wall()
        seen = set()
        for a in active:
            aid, text = str(a.get("id", "")), str(a.get("text", ""))
            seen.add(aid)
            life = self.lives.get(aid)
            if life is None:
                code, params = code_of(aid)
                life = self.lives[aid] = AlarmLife(aid, code, params, severity_of(code), text,
                                                   float(a.get("since_wall") or now), now)
                self.new_count += 1
            elif life.cleared_wall is not None:          # back within REOPEN_S: the same alarm again
                life.cleared_wall, life.count, life.last_wall, life.text = None, life.count + 1, now, text
                life.acked_by = life.acked_wall = None
                life.dirty = True
                self.new_count += 1
            elif life.text != text:
                life.text, life.last_wall, life.count, life.dirty = text, now, life.count + 1, True
            _take_detail(life, a)
        for aid, life in list(self.lives.items()):
            if aid in seen:
                continue
            if life.cleared_wall is None:
                life.cleared_wall, life.dirty = now, True
            elif now - life.cleared_wall > REOPEN_S:
                self._persist(life)
                del self.lives[aid]
        for life in self.lives.values():
            self._persist(life)

    def _persist(self, life: AlarmLife) -> None:
        if not life.dirty or self.save is None:
            return
        # the detail key and its parameters too: the history is said in the page's language as well
        row = {k: v for k, v in asdict(life).items() if k not in ("row_id", "dirty")}
        try:
            life.row_id = self.save(life.row_id, row)
            life.dirty = False
        except Exception as exc:  # noqa: BLE001 - the records alarm says why the database fails
            log.warning("alarm history not saved (kept, retried): %s", exc)

    def ack(self, alarm_id: str, by: str) -> bool:
        with self._lock:
            return self._ack(alarm_id, by)

    def _ack(self, alarm_id: str, by: str) -> bool:
        life = self.lives.get(alarm_id)
        if life is None or life.cleared_wall is not None:
            return False
        life.acked_by, life.acked_wall, life.dirty = by, self.wall(), True
        self._persist(life)
        return True

    def shelve(self, alarm_id: str, by: str, seconds: float) -> bool:
        with self._lock:
            return self._shelve(alarm_id, by, seconds)

    def _shelve(self, alarm_id: str, by: str, seconds: float) -> bool:
        life = self.lives.get(alarm_id)
        if life is None or life.cleared_wall is not None:
            return False
        life.shelved_by, life.dirty = by, True
        life.shelved_until = self.wall() + max(0.0, min(float(seconds), MAX_SHELVE_S))
        self._persist(life)
        return True

    def active(self) -> list[dict[str, Any]]:
        now = self.wall()
        with self._lock:
            lives = [life for life in self.lives.values() if life.cleared_wall is None]
            rank = {"critical": 0, "warning": 1}
            return [life.view(now) for life in sorted(lives, key=lambda x: (rank.get(x.severity, 2), x.first_wall))]
