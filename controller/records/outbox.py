"""The upload outbox: the events each carrier's or the platform's webhook is owed, kept in the
records database until the receiver has taken them.

Filling: the parcels table is read after a cursor ('outbox' in `cursors`, set to the newest
parcel when uploads are first switched on: no old parcel is uploaded); each new parcel gives
one row per target and event (`arrival` 到件 for a parcel with a waybill, `sort` 分拣 with its
outcome and chute), and the rows and the moved cursor commit in one transaction, so a crash
neither loses an event nor makes one twice. Each event has an idempotency key
(`<line_id>:<run_id>:<parcel_id>:<event>`), the same on every try, which the receiver uses to drop
a re-delivery (a crash after the receiver took a batch and before it was marked sent).

States: `pending` -> `sent`, or `dead` after `max_tries` failed tries (re-sent from the page:
back to `pending` with its tries cleared).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from typing import Any, Iterable

from sorter.controller.records.schema import FIELD_NAMES, connect

CURSOR = "outbox"
_SELECT = f"SELECT id, {', '.join(FIELD_NAMES)} FROM parcels WHERE id > ? ORDER BY id LIMIT ?"
_SORT_KEYS = ("waybill", "carrier", "destination", "sort_code", "chute", "actual_chute", "outcome", "reason",
              "routing_version")


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return _dt.datetime.fromtimestamp(wall, _dt.timezone.utc).astimezone().isoformat(timespec="milliseconds")


def event_key(line_id: str, run_id: str, parcel_id: int, event: str) -> str:
    return f"{line_id}:{run_id}:{parcel_id}:{event}"


def events_of(line_id: str, rec: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """(event, key, body) for one parcel record: an arrival scan and a sort result when it has a
    waybill (a parcel without one means nothing to a carrier)."""
    if not rec.get("waybill"):
        return []
    base = {"line_id": line_id, "run_id": rec["run_id"], "parcel_id": rec["parcel_id"],
            "waybill": rec["waybill"], "carrier": rec.get("carrier")}
    out = []
    key = event_key(line_id, rec["run_id"], rec["parcel_id"], "arrival")
    wall = rec.get("induct_wall") or rec.get("ended_wall")
    out.append(("arrival", key, {"key": key, "event": "arrival", **base, "wall": wall, "time": _iso(wall)}))
    key = event_key(line_id, rec["run_id"], rec["parcel_id"], "sort")
    wall = rec.get("ended_wall")
    out.append(("sort", key, {"key": key, "event": "sort", **base, **{k: rec.get(k) for k in _SORT_KEYS},
                              "wall": wall, "time": _iso(wall)}))
    return out


class Outbox:
    """The outbox rows of one records database. Thread-safe (one connection, one lock); the
    filler and every target's sender share it."""

    def __init__(self, path: str | os.PathLike[str], line_id: str, targets: Iterable[Any]):
        self.line_id = line_id
        # target name -> (events, carriers) it takes
        self.targets = {t.name: (frozenset(t.events), frozenset(t.carriers)) for t in targets}
        self._conn = connect(path)
        self._lock = threading.Lock()
        # uploads switched on for a line with months of records: its carriers get the parcels from
        # now on, not an avalanche of old arrival scans
        self._conn.execute("INSERT OR IGNORE INTO cursors (name, last_id) "
                           "SELECT ?, COALESCE(max(id), 0) FROM parcels", (CURSOR,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------------- filling
    def fill(self, limit: int = 500, now: float | None = None) -> int:
        """Make the events of the parcels recorded since the last fill. Returns the parcels read."""
        now = time.time() if now is None else now
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT last_id FROM cursors WHERE name = ?", (CURSOR,)).fetchone()
                cursor = row[0] if row else 0
                rows = c.execute(_SELECT, (cursor, limit)).fetchall()
                for r in rows:
                    rec = dict(zip(FIELD_NAMES, r[1:]))
                    for event, key, body in events_of(self.line_id, rec):
                        for name, (events, carriers) in self.targets.items():
                            if event in events and (not carriers or (rec.get("carrier") or "") in carriers):
                                c.execute("INSERT OR IGNORE INTO outbox (target, key, event, body, created_wall) "
                                          "VALUES (?, ?, ?, ?, ?)",
                                          (name, key, event, json.dumps(body, ensure_ascii=False), now))
                if rows:
                    c.execute("INSERT INTO cursors (name, last_id) VALUES (?, ?) "
                              "ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id", (CURSOR, rows[-1][0]))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return len(rows)

    # ---------------------------------------------------------------- sending
    def due(self, target: str, limit: int) -> list[tuple[int, str, str]]:
        """The oldest pending events of a target: (id, key, body JSON)."""
        with self._lock:
            return self._conn.execute("SELECT id, key, body FROM outbox WHERE target = ? AND state = 'pending' "
                                      "ORDER BY id LIMIT ?", (target, limit)).fetchall()

    def mark_sent(self, ids: list[int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._conn.executemany("UPDATE outbox SET state = 'sent', sent_wall = ?, tries = tries + 1, "
                                   "last_try_wall = ?, last_error = NULL WHERE id = ?", [(now, now, i) for i in ids])

    def mark_failed(self, ids: list[int], error: str, max_tries: int, now: float | None = None) -> int:
        """One more failed try for each; those that reach max_tries go dead. Returns how many did."""
        now = time.time() if now is None else now
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("UPDATE outbox SET tries = tries + 1, last_try_wall = ?, last_error = ?, "
                              "state = CASE WHEN tries + 1 >= ? THEN 'dead' ELSE state END WHERE id = ?",
                              [(now, error[:500], max_tries, i) for i in ids])
                marks = ",".join("?" * len(ids))
                dead = c.execute(f"SELECT COUNT(*) FROM outbox WHERE state = 'dead' AND id IN ({marks})",
                                 ids).fetchone()[0]
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return dead

    def resend(self, target: str | None = None) -> int:
        """Dead-lettered events back to pending, tries cleared. Returns how many."""
        with self._lock:
            sql = "UPDATE outbox SET state = 'pending', tries = 0 WHERE state = 'dead'"
            cur = self._conn.execute(sql + (" AND target = ?" if target else ""), (target,) if target else ())
            return cur.rowcount

    # ---------------------------------------------------------------- status
    def counts(self) -> dict[str, dict[str, Any]]:
        """Per target: pending, sent, dead and the last error of a pending or dead event."""
        out = {name: {"pending": 0, "sent": 0, "dead": 0, "last_error": None} for name in self.targets}
        with self._lock:
            for target, state, n in self._conn.execute(
                    "SELECT target, state, COUNT(*) FROM outbox GROUP BY target, state"):
                if target in out:
                    out[target][state] = n
            for target, err in self._conn.execute(
                    "SELECT target, last_error FROM outbox WHERE id IN (SELECT max(id) FROM outbox "
                    "WHERE state != 'sent' AND last_error IS NOT NULL GROUP BY target)"):
                if target in out:
                    out[target]["last_error"] = err
            row = self._conn.execute("SELECT last_id FROM cursors WHERE name = ?", (CURSOR,)).fetchone()
            cursor = row[0] if row else 0
            unfilled = self._conn.execute("SELECT COUNT(*) FROM parcels WHERE id > ?", (cursor,)).fetchone()[0]
        for v in out.values():
            v["unfilled_parcels"] = unfilled
        return out
