"""HTTP endpoints for cameras (no-read images ...), mounted by controller/webserver.py."""

from __future__ import annotations

from fastapi import APIRouter


def router(svc) -> APIRouter | None:
    """Endpoints of this area; `svc` is the running controller.service.Service (svc.cfg, svc.token,
    svc.alarms, svc.store ...). Control endpoints must check svc.token (Bearer) like controller/api.py."""
    return None
