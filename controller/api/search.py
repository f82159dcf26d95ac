"""Search and the parcel's story.

    GET /api/search                   by waybill (read or keyed), time range, carrier, town, chute,
                                      outcome, keyed or not; newest first
    GET /api/parcels/{run_id}/{id}    one parcel's story: every read, the route decision (rule,
                                      routing version, why), the chute chosen and reached, fire
                                      timing, confirm, keying, outcome, the audit lines about it, and
                                      what the records do not hold
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from sorter.controller.records.schema import OUTCOMES

# what a record may not keep, said on the story rather than left for the reader to wonder: records
# written before schema 7 have no read positions, fire or confirm times
NOT_RECORDED = (
    "read_position",      # where on the parcel (and when) each read was made
    "fire_time",          # when the diverter fired (only its error against the plan, fire_error_ms)
    "confirm_time",       # when the chute's photo-eye saw the parcel (only the outcome)
)


def _not_recorded(rec: dict) -> list[str]:
    missing = []
    reads = rec.get("reads") or []
    if reads and not any(isinstance(r, dict) and "at_mm" in r for r in reads):
        missing.append("read_position")
    if rec.get("fire_error_ms") is not None and rec.get("fired_wall") is None:
        missing.append("fire_time")
    if rec.get("actual_chute") and rec.get("outcome") == "sorted" and rec.get("confirmed_wall") is None:
        missing.append("confirm_time")
    return missing


def _finite(name: str, v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise HTTPException(422, f"{name} must be a finite number (epoch seconds)")
    return v


def story(rec: dict, audit: list[dict], frames: list[dict], chute_names: dict[str, str]) -> dict:
    outcome = rec.get("outcome")
    chute, actual = rec.get("chute"), rec.get("actual_chute")
    if outcome == "sorted":
        confirm = "confirmed"
    elif outcome in ("lost", "unconfirmed"):
        confirm = outcome
    else:
        confirm = None
    keyed = None
    if rec.get("keyed_wall") is not None:
        keyed = {k[len("keyed_"):]: rec.get(k) for k in rec if k.startswith("keyed_")}
        keyed["chute_name"] = chute_names.get(keyed.get("chute") or "")
    induct, decided, ended = rec.get("induct_wall"), rec.get("decided_wall"), rec.get("ended_wall")
    return {
        "record": rec,
        "reads": rec.get("reads") or [],
        "decision": {"waybill": rec.get("waybill"), "carrier": rec.get("carrier"),
                     "destination": rec.get("destination"), "sort_code": rec.get("sort_code"),
                     "rule": rec.get("rule"), "routing_version": rec.get("routing_version"),
                     "reason": rec.get("reason"), "decision_ms": rec.get("decision_ms"),
                     "decided_after_induct_s": (decided - induct) if decided is not None and induct is not None
                     else None},
        "chute": {"chosen": chute, "chosen_name": chute_names.get(chute or ""), "reached": actual,
                  "reached_name": chute_names.get(actual or "")},
        "fire": {"error_ms": rec.get("fire_error_ms"), "wall": rec.get("fired_wall")},
        "confirm": confirm,
        "outcome": outcome,
        "times": {"induct_wall": induct, "decided_wall": decided, "fired_wall": rec.get("fired_wall"),
                  "confirmed_wall": rec.get("confirmed_wall"), "ended_wall": ended,
                  "written_wall": rec.get("written_wall")},
        "keyed": keyed,
        "frames": frames,
        "audit": audit,
        "not_recorded": _not_recorded(rec),
    }


def router(store: Any, control: Any) -> APIRouter:
    from sorter.controller.api.keying import chute_names, frames_by_parcel
    r = APIRouter(tags=["search"])

    def db(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"record database unavailable: {exc}") from exc

    @r.get("/api/search", summary="Find parcels: waybill, time range, carrier, town, chute, outcome")
    def search(waybill: str | None = Query(None, max_length=128),
               since_wall: float | None = Query(None, ge=0, description="epoch seconds, from"),
               until_wall: float | None = Query(None, ge=0, description="epoch seconds, before"),
               carrier: str | None = Query(None, max_length=32),
               town: str | None = Query(None, max_length=64),
               chute: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,16}$"),
               outcome: str | None = Query(None, max_length=32),
               keyed: bool | None = Query(None, description="true: only keyed by hand; false: only not keyed"),
               limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
        if outcome and outcome not in OUTCOMES:
            raise HTTPException(422, f"unknown outcome {outcome!r}; expected one of: {', '.join(OUTCOMES)}")
        crit = {"waybill": (waybill or "").strip() or None, "since_wall": _finite("since_wall", since_wall),
                "until_wall": _finite("until_wall", until_wall), "carrier": carrier or None,
                "town": town or None, "chute": chute or None, "outcome": outcome or None, "keyed": keyed,
                "limit": limit}
        return db(store.search, **crit)

    @r.get("/api/parcels/{run_id}/{parcel_id}", summary="One parcel's story")
    def parcel_story(run_id: str, parcel_id: int) -> dict:
        if len(run_id) > 64:
            raise HTTPException(422, "run_id: at most 64 characters")
        rec = db(store.parcel, run_id, parcel_id)
        if rec is None:
            raise HTTPException(404, f"no record of parcel {run_id}/{parcel_id}")
        ref = f"{run_id}/{parcel_id}"
        audit = [a for a in db(store.recent_audit, 1000, None, None)
                 if isinstance(a.get("target"), str) and a["target"].startswith(ref + " ")]
        frames = frames_by_parcel(control).get((run_id, str(parcel_id)), [])
        return story(rec, audit, frames, chute_names(control))

    return r
