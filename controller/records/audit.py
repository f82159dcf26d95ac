"""The audit of control actions and the alarm history, in the record database (schema version 5; the alarms' detail keys since 8).

Both are written by the service process's API and supervisor threads through the RecordStore's
connection: a few rows a minute, each its own small transaction (fsynced like the records: an audit
line a power cut could lose would not be much of an audit).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

MAX_FIELD = 500   # characters of a target or detail kept


def _cut(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s[:MAX_FIELD].encode("utf-8", "backslashreplace").decode("utf-8")


def add_audit(conn: sqlite3.Connection, lock: threading.Lock, user: str, role: str, action: str,
              target: str | None, result: str, detail: str | None = None, client: str | None = None,
              wall: float | None = None) -> int:
    with lock:
        cur = conn.execute(
            "INSERT INTO audit (wall, user, role, action, target, result, detail, client) VALUES (?,?,?,?,?,?,?,?)",
            (time.time() if wall is None else wall, _cut(user) or "?", _cut(role) or "?", _cut(action) or "?",
             _cut(target), _cut(result) or "?", _cut(detail), _cut(client)))
        return int(cur.lastrowid)


def recent_audit(conn: sqlite3.Connection, lock: threading.Lock, limit: int = 20,
                 user: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
    where, args = [], []  # type: list[str], list[Any]
    if user:
        where.append("user = ?")
        args.append(user)
    if action:
        where.append("action = ?")
        args.append(action)
    sql = "SELECT id, wall, user, role, action, target, result, detail, client FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(max(1, min(int(limit), 1000)))
    with lock:
        cur = conn.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


# ---------------------------------------------------------------------------------- alarm history
ALARM_COLS = ("alarm_id", "code", "severity", "text", "first_wall", "last_wall", "count", "cleared_wall",
              "acked_by", "acked_wall", "shelved_by", "shelved_until", "detail", "params")
_TEXT_COLS = ("alarm_id", "code", "severity", "text", "acked_by", "shelved_by", "detail")


def _params_text(params: Any) -> str | None:
    """The parameters as a JSON object of strings, each cut; None when there are none."""
    if not isinstance(params, dict) or not params:
        return None
    return json.dumps({str(k)[:100]: _cut(v) for k, v in params.items()}, ensure_ascii=False)


def _params_of(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def save_alarm(conn: sqlite3.Connection, lock: threading.Lock, row_id: int | None, a: dict[str, Any]) -> int:
    """Insert (row_id None) or update one alarm's history row; returns its id."""
    vals = [_cut(a.get(c)) if c in _TEXT_COLS else _params_text(a.get(c)) if c == "params" else a.get(c)
            for c in ALARM_COLS]
    with lock:
        if row_id is None:
            cur = conn.execute(f"INSERT INTO alarm_history ({', '.join(ALARM_COLS)}) "
                               f"VALUES ({', '.join('?' for _ in ALARM_COLS)})", vals)
            return int(cur.lastrowid)
        conn.execute(f"UPDATE alarm_history SET {', '.join(c + ' = ?' for c in ALARM_COLS)} WHERE id = ?",
                     vals + [row_id])
        return row_id


def alarm_history(conn: sqlite3.Connection, lock: threading.Lock, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first; `params` as a dict ({} for a row kept before version 8, `detail` None: its
    English text is all there is)."""
    with lock:
        cur = conn.execute(f"SELECT id, {', '.join(ALARM_COLS)} FROM alarm_history ORDER BY id DESC LIMIT ?",
                           (max(1, min(int(limit), 1000)),))
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, row)) for row in cur.fetchall()]
    for r in rows:
        r["params"] = _params_of(r["params"])
    return rows
