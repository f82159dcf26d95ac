"""The no-read review, keying a waybill by hand, and the manual-sort station.

    GET  /api/review                 no_read / multi_read parcels nobody has keyed, with their frames
    POST /api/parcels/{run}/{id}/key (supervisor) {"waybill": ...}: the record is completed with the
                                     keyed waybill, where it routes (destination, chute, rule), who
                                     and when; the outcome stays the original one
    POST /api/station/scan           (supervisor) {"waybill": ...[, "run_id", "parcel_id"]}: the
                                     worker at the reject chute scans a parcel: its chute, and its
                                     record (the newest with that waybill, or the one named) keyed

A keyed waybill is routed by the table in force, exactly as if a camera had read it
(Service.route_waybill); text that is no waybill of a known carrier is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from sorter.controller.api.audit import audit_record
from sorter.controller.api.auth import Principal, require_supervisor

MAX_WAYBILL = 64


class Keyed(BaseModel):
    waybill: str = Field(min_length=1, max_length=MAX_WAYBILL)


class Scanned(BaseModel):
    waybill: str = Field(min_length=1, max_length=MAX_WAYBILL)
    run_id: str | None = Field(default=None, max_length=64)
    parcel_id: int | None = Field(default=None, ge=0, lt=2**63)


def frames_by_parcel(control: Any, limit: int = 2000) -> dict[tuple[str, str], list[dict]]:
    """The kept no-read images (NoReadKeeper's files), by (run_id, parcel_id)."""
    cfg = getattr(control, "cfg", None)
    if cfg is None:
        return {}
    from sorter.controller.api.vision import _dirs, list_noreads
    out: dict[tuple[str, str], list[dict]] = {}
    for n in list_noreads(_dirs(control), limit):
        out.setdefault((n["run_id"], n["parcel_id"]), []).append({"url": n["url"], "camera": n["camera"],
                                                                   "file": n["file"]})
    return out


def chute_names(control: Any) -> dict[str, str]:
    cfg = getattr(control, "cfg", None)
    return {c.id: c.name for c in cfg.line.chutes} if cfg is not None else {}


def router(store: Any, control: Any) -> APIRouter:
    r = APIRouter(tags=["keying"])

    def route(waybill: str) -> dict:
        if control is None or not hasattr(control, "route_waybill"):
            raise HTTPException(501, "this line's control cannot route a keyed waybill")
        d = control.route_waybill(waybill.strip())
        if d.get("outcome") == "no_read":
            raise HTTPException(422, f"not a waybill of any known carrier: {waybill.strip()[:MAX_WAYBILL]!r}")
        return d

    def keyed_values(d: dict, who: Principal, via: str) -> dict:
        return {"waybill": d.get("waybill"), "carrier": d.get("carrier"), "destination": d.get("destination"),
                "chute": d.get("chute"), "rule": d.get("rule"), "reason": d.get("reason"), "by": who.name,
                "via": via}

    def db(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"record database unavailable: {exc}") from exc

    @r.get("/api/review", summary="No-read and multi-read parcels to key by hand, with their frames")
    def review(limit: int = Query(20, ge=1, le=200)) -> list[dict]:
        rows = db(store.needs_keying, limit)
        frames = frames_by_parcel(control)
        for rec in rows:
            rec["frames"] = frames.get((str(rec["run_id"]), str(rec["parcel_id"])), [])
        return rows

    @r.post("/api/parcels/{run_id}/{parcel_id}/key", summary="Key a parcel's waybill by hand (supervisor)")
    def key(run_id: str, parcel_id: int, body: Keyed, request: Request,
            who: Principal = Depends(require_supervisor)) -> dict:
        target = f"{run_id}/{parcel_id} {body.waybill.strip()[:MAX_WAYBILL]}"
        if db(store.parcel, run_id, parcel_id) is None:
            audit_record(store, request, who, "key", target, "refused", "no such record")
            raise HTTPException(404, f"no record of parcel {run_id}/{parcel_id} (yet)")
        try:
            d = route(body.waybill)
        except HTTPException as exc:
            audit_record(store, request, who, "key", target, "refused", str(exc.detail))
            raise
        db(store.key_parcel, run_id, parcel_id, **keyed_values(d, who, "review"))
        audit_record(store, request, who, "key", target, "ok", f"-> {d.get('chute') or d.get('outcome')}")
        return {"ok": True, "decision": d, "record": db(store.parcel, run_id, parcel_id)}

    @r.post("/api/station/scan", summary="Manual-sort station: a scanned waybill's chute, its record keyed "
                                         "(supervisor)")
    def station(body: Scanned, request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        target = body.waybill.strip()[:MAX_WAYBILL]
        try:
            d = route(body.waybill)
        except HTTPException as exc:
            audit_record(store, request, who, "station_scan", target, "refused", str(exc.detail))
            raise
        rec = None
        if body.run_id is not None and body.parcel_id is not None:
            rec = db(store.parcel, body.run_id, body.parcel_id)
            if rec is None:
                raise HTTPException(404, f"no record of parcel {body.run_id}/{body.parcel_id}")
        else:
            found = db(store.search, waybill=d.get("waybill") or body.waybill.strip(), limit=1)
            rec = found[0] if found else None
        if rec is not None:
            db(store.key_parcel, rec["run_id"], rec["parcel_id"], **keyed_values(d, who, "station"))
            rec = db(store.parcel, rec["run_id"], rec["parcel_id"])
        audit_record(store, request, who, "station_scan", target, "ok",
                     f"-> {d.get('chute') or d.get('outcome')}" +
                     (f", record {rec['run_id']}/{rec['parcel_id']}" if rec else ", no record of it on this line"))
        chute = d.get("chute")
        return {"ok": True, "decision": d, "chute": chute, "chute_name": chute_names(control).get(chute or ""),
                "record": rec}

    return r
