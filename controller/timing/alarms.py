"""Alarms: conditions a supervisor must see, raised and cleared by state change (never repeated).

Each carries its English text (the log, the API, an older page) and, where it has one, a `detail`
key with its parameters: the page says the detail in its own language from those (i18n.js,
`alarmtext.<detail>`), so a Chinese page does not show an English sentence."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("sorter.alarms")


class Alarms:
    def __init__(self, wall=time.time):
        self.wall = wall
        self.active: dict[str, dict] = {}
        self.version = 0

    def raise_(self, alarm_id: str, text: str, detail: str | None = None, **params: object) -> None:
        cur = self.active.get(alarm_id)
        if cur is not None and cur["text"] == text:
            return
        if cur is None:
            log.warning("ALARM %s: %s", alarm_id, text)
        a = {"id": alarm_id, "text": text, "since_wall": cur["since_wall"] if cur else self.wall()}
        if detail:
            # strings only: they cross the pipe to the service and go into the page's templates
            a["detail"], a["params"] = detail, {k: str(v) for k, v in params.items()}
        self.active[alarm_id] = a
        self.version += 1

    def clear(self, alarm_id: str) -> None:
        if self.active.pop(alarm_id, None) is not None:
            log.info("cleared %s", alarm_id)
            self.version += 1

    def list(self) -> list[dict]:
        return sorted(self.active.values(), key=lambda a: a["since_wall"])
