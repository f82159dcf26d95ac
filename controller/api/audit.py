"""The audit of control actions: every action from the page or the API (who, role, what, on what,
when, the result) goes to the record database's audit table and the log; GET /api/audit reads it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

log = logging.getLogger("sorter.audit")


def audit_record(store: Any, request: Request, who: Any, action: str, target: str | None, result: str,
                 detail: str = "") -> None:
    """Log and store one audit line. A database that cannot be written loses no line: the log has
    it whole, at error level."""
    client = request.client.host if request.client else "?"
    line = (f"{who.name} ({who.role}, {who.via}) {action}" + (f" {target}" if target else "") +
            f": {result}" + (f" ({detail})" if detail else "") + f" from {client}")
    try:
        if store is None:
            raise RuntimeError("no record database")
        store.add_audit(who.name, who.role, action, target, result, detail or None, client)
    except Exception as exc:  # noqa: BLE001
        log.error("audit (not stored: %s): %s", exc, line)
        return
    log.info("audit: %s", line)


def router(store: Any) -> APIRouter:
    r = APIRouter(tags=["audit"])

    @r.get("/api/audit", summary="Control actions, newest first (who, role, action, target, time, result)")
    def get_audit(request: Request, limit: int = Query(20, ge=1, le=1000),
                  user: str | None = Query(None, max_length=64),
                  action: str | None = Query(None, max_length=40)) -> list[dict]:
        try:
            return store.recent_audit(limit, user, action)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"record database unavailable: {exc}") from exc

    return r
