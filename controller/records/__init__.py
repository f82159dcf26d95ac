"""Durable parcel records: one row per parcel in an embedded SQLite database.

Centres bill carriers per parcel, so a lost record is lost money. The rules here:

* WAL journal with ``synchronous=FULL``: every commit fsyncs the WAL before it returns, so a
  committed record survives ``kill -9`` *and* a power cut. (``NORMAL`` in WAL mode survives a
  process crash but may lose the last commits on power loss — not good enough for billing.)
  The writer batches (see :class:`RecordWriter`), so the fsync cost is paid per batch, not per
  parcel.
* The writer is a thread that owns its own connection; callers only ``submit()`` into an
  unbounded queue, which never blocks. The writer must live outside the timing process
  (see DESIGN.md: a thread doing SQLite work there wrecks the fire timing).
* A malformed record is logged and stored anyway, with what was wrong appended to ``reason``;
  a record that cannot even be keyed goes to the ``bad_records`` table. The writer never dies of
  bad input; if the database itself fails (disk full, locked), it retries and, if it still
  cannot write when closed, dumps the unsaved records to ``<db>.unsaved.jsonl``.
* One row per (run_id, parcel_id): writing the same parcel again replaces the row, so a retry
  can never bill a parcel twice.

The package: ``schema`` (outcomes, columns, DDL, opening and migrating a file), ``rows`` (record
<-> row, repaired), ``export`` (the daily CSV), ``writer`` (:class:`RecordWriter`, the thread) and
``store`` (:class:`RecordStore`, the queries). The first two are the base the others build on;
``store`` also re-exports the rest under the import path the records had before the split.
"""

from __future__ import annotations

from sorter.controller.records.schema import OUTCOMES, SCHEMA_VERSION, SchemaError
from sorter.controller.records.store import RecordStore
from sorter.controller.records.writer import RecordWriter

__all__ = ["OUTCOMES", "SCHEMA_VERSION", "RecordStore", "RecordWriter", "SchemaError"]
