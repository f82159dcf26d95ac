"""HTTP endpoints for the line's I/O, mounted by controller/api/server.py.

GET /api/io            the live I/O as the timing process last reported it (4 times a second):
                       connection, mode, every input's value, outputs on, safe-state reason,
                       heartbeat, tower, and the fire timing error histogram.
GET /api/io/timing     the fire timing error histogram alone (bucket edges in ms and counts).
"""

from __future__ import annotations

from fastapi import APIRouter


def router(svc) -> APIRouter | None:
    r = APIRouter(tags=["io"])

    def _ts() -> dict:
        return getattr(svc, "timing_status", None) or {}

    @r.get("/api/io")
    def io_state() -> dict:
        ts = _ts()
        io = dict(ts.get("io", {}))
        return {"plc": ts.get("plc", {"connected": False}), "outputs_on": ts.get("outputs_on", []),
                "alarms": [a for a in ts.get("alarms", [])], **io}

    @r.get("/api/io/timing")
    def io_timing() -> dict:
        return _ts().get("io", {}).get("fire_hist", {"edges_ms": [], "counts": [], "n": 0})

    return r
