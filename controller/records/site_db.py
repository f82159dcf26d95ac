"""The site's central PostgreSQL database: the same parcels table as the local SQLite file
(`schema.FIELDS`, the same way of migrating: columns a newer version added are added to an older
database, a newer database is refused), plus the two columns a site needs: which line a record came
from (`line_id`) and its id in that line's local file (`local_id`).

The site database holds only the parcels table, so its version is the record schema version that
last changed that table (`SITE_VERSION`), not the program's: the lines of a centre are upgraded one
at a time, and a program whose new version changed only the line's own file (its alarm history, its
marks) must not lock the lines not yet upgraded out of the site database.
The keyed_* columns are there too (same table), but a keying done on the page after a record was
forwarded stays in the line's file: the forwarder sends each record once, as it was written.

Several lines share one database and may start at the same moment: the migration holds a
transaction-scoped advisory lock, so exactly one of them creates or alters the table.
"""

from __future__ import annotations

from typing import Any

from sorter.controller.records.schema import _ADDED, FIELD_NAMES, FIELDS, KEYED_FIELDS, SCHEMA_VERSION, SchemaError

# the record schema versions that changed the parcels table: 1 made it, _ADDED says what came after
SITE_VERSION = max(v for v in (1, *_ADDED) if v <= SCHEMA_VERSION)

_LOCK_KEY = 0x736F7274  # "sort": the advisory lock of the schema migration

_PG_TYPES = {"TEXT": "TEXT", "INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION"}


def pg_type(sqlite_type: str) -> str:
    """SQLite column type ('REAL NOT NULL') -> PostgreSQL ('DOUBLE PRECISION NOT NULL')."""
    base, _, rest = sqlite_type.partition(" ")
    return (_PG_TYPES[base] + (" " + rest if rest else "")).strip()


_COLUMNS = ("line_id", "local_id", *FIELD_NAMES, "written_wall")
INSERT = (f"INSERT INTO parcels ({', '.join(_COLUMNS)}) VALUES ({', '.join('%s' for _ in _COLUMNS)}) "
          "ON CONFLICT (run_id, parcel_id) DO NOTHING")

_DDL = (
    "CREATE TABLE IF NOT EXISTS sorter_schema (version INTEGER NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS parcels (
        id BIGSERIAL PRIMARY KEY,
        line_id TEXT NOT NULL,
        local_id BIGINT NOT NULL,
        {", ".join(f"{n} {pg_type(t)}" for n, t in FIELDS + KEYED_FIELDS)},
        written_wall DOUBLE PRECISION NOT NULL,
        received_wall DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
        UNIQUE (run_id, parcel_id))""",
    "CREATE INDEX IF NOT EXISTS parcels_ended ON parcels (ended_wall)",
    "CREATE INDEX IF NOT EXISTS parcels_waybill ON parcels (waybill)",
    "CREATE INDEX IF NOT EXISTS parcels_outcome_ended ON parcels (outcome, ended_wall)",
    "CREATE INDEX IF NOT EXISTS parcels_carrier_ended ON parcels (carrier, ended_wall)",
    "CREATE INDEX IF NOT EXISTS parcels_line_ended ON parcels (line_id, ended_wall)",
)


def ensure_schema(conn: Any) -> int:
    """Create or migrate the site database's tables (psycopg connection, committed here). Returns the
    version it found (0: a new database). Raises SchemaError for a database of a newer schema."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        exists = conn.execute("SELECT to_regclass('sorter_schema') IS NOT NULL").fetchone()[0]
        found = 0
        if exists:
            row = conn.execute("SELECT max(version) FROM sorter_schema").fetchone()
            found = row[0] or 0
        if found > SCHEMA_VERSION:
            raise SchemaError(f"site database: its parcels table is of record schema version {found}, newer "
                              f"than this program's ({SCHEMA_VERSION}); upgrade the program on every line first")
        if found >= SITE_VERSION:
            if found > SITE_VERSION:  # written by a program that stored its own version: no table differs
                conn.execute("UPDATE sorter_schema SET version = %s", (SITE_VERSION,))
            return found
        if found >= 1:  # an older database: add the newer columns, keep every record
            have = {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'parcels' "
                "AND table_schema = current_schema()")}
            for v in range(found + 1, SCHEMA_VERSION + 1):
                for name, typ in _ADDED.get(v, ()):
                    if name not in have:
                        conn.execute(f"ALTER TABLE parcels ADD COLUMN {name} {pg_type(typ)}")
        for stmt in _DDL:
            conn.execute(stmt)
        conn.execute("DELETE FROM sorter_schema")
        conn.execute("INSERT INTO sorter_schema (version) VALUES (%s)", (SITE_VERSION,))
    return found


def redact(url: str) -> str:
    """The URL as the page may show it: any password in it replaced."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{host}"
