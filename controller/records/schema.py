"""The record database's shape: the outcomes, the columns, the DDL, and opening a file with the
durability settings (an older file migrated in place, a newer one refused).

``synchronous=FULL`` in WAL mode: every commit fsyncs the WAL before it returns, so a committed
record survives ``kill -9`` *and* a power cut (``NORMAL`` may lose the last commits on power loss,
not good enough for billing). A file of a newer schema is refused rather than written by a program
that does not know its columns.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


OUTCOMES = (
    "sorted",
    "no_read",
    "multi_read",
    "no_route",
    "chute_unavailable",
    "too_late",
    "gap_too_small",
    "lost",
    "unconfirmed",
    "fault",
)

SCHEMA_VERSION = 8  # 3: the parcel journal; 4: the upload outbox and the forwarders' cursors;
#                    5: keying by hand (keyed_* columns), the audit of control actions, the alarm history;
#                    6: the line's marks for its next start (line_marks); 7: when the diverter fired
#                    and the confirm eye saw the parcel (fired_wall, confirmed_wall); 8: an alarm's
#                    detail key and parameters in its history (the page says it in its language)
# a parcel keyed by hand on the page or at the manual-sort station: what was keyed, where it routes,
# who and when. Not record fields (the timing process never writes them); the outcome stays the
# original one, so the line's read rate is not flattered by the keying
KEYED_FIELDS: tuple[tuple[str, str], ...] = (
    ("keyed_waybill", "TEXT"),
    ("keyed_carrier", "TEXT"),
    ("keyed_destination", "TEXT"),
    ("keyed_chute", "TEXT"),
    ("keyed_rule", "TEXT"),
    ("keyed_reason", "TEXT"),
    ("keyed_by", "TEXT"),
    ("keyed_wall", "REAL"),
    ("keyed_via", "TEXT"),   # review (the page's no-read review) or station (the manual-sort station)
)
KEYED_NAMES = tuple(name for name, _ in KEYED_FIELDS)
# columns added after version 1 (added to an older file on open)
_ADDED = {2: (("rule", "TEXT"), ("sort_code", "TEXT")), 5: KEYED_FIELDS,
          7: (("fired_wall", "REAL"), ("confirmed_wall", "REAL"))}

# columns added to alarm_history after version 5, which created it
_ALARM_ADDED = {8: (("detail", "TEXT"), ("params", "TEXT"))}

# record key -> SQL column type; the order is the CSV export order too
FIELDS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT NOT NULL"),
    ("parcel_id", "INTEGER NOT NULL"),
    ("induct_wall", "REAL"),
    ("decided_wall", "REAL"),
    ("ended_wall", "REAL NOT NULL"),
    ("length_mm", "REAL"),
    ("reads", "TEXT NOT NULL"),  # JSON list of {"camera","symbology","text"[,"at_mm","t_s","weak"]}
    ("waybill", "TEXT"),
    ("carrier", "TEXT"),
    ("destination", "TEXT"),
    ("chute", "TEXT"),
    ("actual_chute", "TEXT"),
    ("outcome", "TEXT NOT NULL"),
    ("reason", "TEXT NOT NULL"),
    ("routing_version", "TEXT"),
    ("fire_error_ms", "REAL"),
    ("decision_ms", "REAL"),
    ("rule", "TEXT"),       # the routing rule that chose the chute
    ("sort_code", "TEXT"),  # 三段码, when the parcel was routed by one
    # on the induct's clock (induct_wall + the belt clock's time since): the switch-on's write as
    # the device took it, and the confirm photo-eye's edge
    ("fired_wall", "REAL"),
    ("confirmed_wall", "REAL"),
)
FIELD_NAMES = tuple(name for name, _ in FIELDS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS parcels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{n} {t}" for n, t in FIELDS + KEYED_FIELDS)},
    written_wall REAL NOT NULL,
    UNIQUE (run_id, parcel_id)
);
CREATE INDEX IF NOT EXISTS parcels_ended ON parcels (ended_wall);
CREATE INDEX IF NOT EXISTS parcels_waybill ON parcels (waybill);
CREATE INDEX IF NOT EXISTS parcels_outcome_ended ON parcels (outcome, ended_wall);
CREATE INDEX IF NOT EXISTS parcels_carrier_ended ON parcels (carrier, ended_wall);
CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL,
    parcel_id INTEGER NOT NULL,
    induct_wall REAL,
    opened_wall REAL NOT NULL,
    PRIMARY KEY (run_id, parcel_id)
) WITHOUT ROWID;
-- marks the line leaves for its next start. 'latch_seq': the encoder latch's head-edge counter up to
-- which every parcel has a journal row or a record, kept in the same transactions (controller/timing/
-- latch.py), deleted on a clean stop, so a start that finds it follows a crash
CREATE TABLE IF NOT EXISTS line_marks (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bad_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    written_wall REAL NOT NULL,
    error TEXT NOT NULL,
    raw TEXT NOT NULL
);
-- events for the carriers' and the platform's webhooks (records/outbox.py): one row per target and
-- parcel event, filled from parcels in the same transaction that moves the 'outbox' cursor
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_wall REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    tries INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_try_wall REAL,
    sent_wall REAL,
    UNIQUE (target, key)
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (target, state, id);
-- how far a forwarder (site database, outbox filler) has read the parcels table, by parcels.id
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
) WITHOUT ROWID;
-- every control action from the page or the API (records/audit.py): who, what, on what, the result
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    wall REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL,
    detail TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS audit_wall ON audit (wall);
-- one row per alarm from raised to cleared (records/audit.py), kept after it clears
CREATE TABLE IF NOT EXISTS alarm_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id TEXT NOT NULL,
    code TEXT NOT NULL,
    severity TEXT NOT NULL,
    text TEXT NOT NULL,
    first_wall REAL NOT NULL,
    last_wall REAL NOT NULL,
    count INTEGER NOT NULL,
    cleared_wall REAL,
    acked_by TEXT,
    acked_wall REAL,
    shelved_by TEXT,
    shelved_until REAL,
    detail TEXT,   -- the text's key (i18n.js alarmtext.*), NULL: only the English text
    params TEXT    -- JSON object: the key's parameters and the code's (the camera)
);
CREATE INDEX IF NOT EXISTS alarm_history_first ON alarm_history (first_wall);
CREATE INDEX IF NOT EXISTS parcels_keyed_waybill ON parcels (keyed_waybill);
"""


class SchemaError(RuntimeError):
    pass


def connect(path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open (and create if needed) the record database with the durability settings."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), timeout=timeout_s, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaError(
            f"{p}: record schema version {version} is newer than this program's ({SCHEMA_VERSION}); "
            "upgrade the program or use another database file"
        )
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        if version >= 1:  # an older file: add the newer columns, keep every record
            have = {row[1] for row in conn.execute("PRAGMA table_info(parcels)")}
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for name, typ in _ADDED.get(v, ()):
                    if name not in have:  # a migration cut short before its version was set: go on
                        conn.execute(f"ALTER TABLE parcels ADD COLUMN {name} {typ}")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        # after the DDL: a file older than version 5 has just had alarm_history created whole
        have = {row[1] for row in conn.execute("PRAGMA table_info(alarm_history)")}
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for name, typ in _ALARM_ADDED.get(v, ()):
                if name not in have:
                    conn.execute(f"ALTER TABLE alarm_history ADD COLUMN {name} {typ}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    return conn
