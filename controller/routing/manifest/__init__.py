"""The pre-advice manifest: waybill -> destination, in SQLite (never in Python memory).

Carriers (or the co-delivery platform) send millions of rows a day: for each waybill a town, or a
sort code (三段码, e.g. ``571-W30 02``), or a full address, and optionally the carrier, a service
class, the weight and an intercept flag (拦截件: the carrier has asked the centre to stop it).

The manifest lives in a SQLite file in WAL mode: one process writes (the importer, the API, or
the simulator) while the controller reads the same file; a reader sees every committed batch
without reopening. A lookup is one prepared point query on the primary key (a few microseconds).
A re-import of a waybill replaces its row: the newest advice counts.

The package: ``rows`` (the columns, formats and validation of one advice record), ``importer``
(the CSV/JSON import pipeline and its report), ``store`` (the SQLite :class:`Manifest`: schema,
lookups, upserts, the real-time lookup's notes). Each imports only those before it.
"""

from __future__ import annotations

from sorter.controller.routing.manifest.importer import ImportReport, decode_csv_bytes, detect_encoding
from sorter.controller.routing.manifest.rows import (CARRIER_RE, COLUMNS, FALSE_WORDS, HEADERS, MAX_ADDRESS,
                                                     MAX_SERVICE, MAX_TOWN, MAX_WEIGHT_KG, SORT_CODE_RE, TOWN_HEADERS,
                                                     TRUE_WORDS, WAYBILL_HEADERS, WAYBILL_LINES_RE, WAYBILL_RE,
                                                     ManifestRow, _header_map, normalise_sort_code, normalise_waybill,
                                                     parse_sort_code, validate_row)
from sorter.controller.routing.manifest.store import LOOKUP_SCHEMA, SCHEMA, SCHEMA_VERSION, Manifest
