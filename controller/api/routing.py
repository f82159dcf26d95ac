"""HTTP endpoints for routing, mounted by controller/api/server.py.

    GET  /api/routes            the route table in force: version, rules, default, intercept, notes
                                (and the version in the timing process); `ok` false with the
                                problems of the file on disk when it was refused
    POST /api/routes/test       (token: it tells a manifest row) route a waybill:
                                {"waybill": ..., "town"|"address"|"sort_code": ...}
    POST /api/manifest          (token) pre-advice: a JSON array / {"rows": [...]}, JSON lines, or CSV
                                text (Content-Type text/csv; UTF-8 or GBK)
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from sorter.controller.api.auth import require_role
from sorter.controller.api.guard import DEFAULT_BODY_LIMITS, TokenGuard

log = logging.getLogger("sorter.api.routing")
MAX_MANIFEST_BYTES = DEFAULT_BODY_LIMITS["/api/manifest"]


_ROW = {"type": "object", "required": ["waybill"], "properties": {
    "waybill": {"type": "string", "maxLength": 64}, "town": {"type": "string"}, "sort_code": {"type": "string"},
    "address": {"type": "string"}, "carrier": {"type": "string"}, "service": {"type": "string"},
    "weight_kg": {"type": "number"}, "intercept": {"type": "boolean"}}}
# The body is read raw (it may be CSV in GBK), so FastAPI cannot derive it: described here for the
# schema (/docs, and the fuzzer that uploads from it).
MANIFEST_BODY = {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [
        {"type": "array", "items": _ROW},
        {"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array", "items": _ROW}}}]}},
    "text/csv": {"schema": {"type": "string"},
                 "example": "运单号,乡镇,快递公司\nSF1423456789012,泽国镇,SF\n"}}}


class RouteTest(BaseModel):
    waybill: str = Field(min_length=1, max_length=64)
    town: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=300)
    sort_code: str | None = Field(default=None, max_length=40)
    carrier: str | None = Field(default=None, max_length=16)
    service: str | None = Field(default=None, max_length=32)
    weight_kg: float | None = Field(default=None, ge=0, le=2000)
    intercept: bool = False


def router(svc) -> APIRouter | None:
    """Endpoints of this area; `svc` is the running sorter.controller.service.service.Service."""
    r = APIRouter(tags=["routing"])
    cfg = svc.cfg
    lock = threading.Lock()
    holder: dict[str, Any] = {}

    def get_router():
        from sorter.controller.routing.router import Router
        with lock:
            rt = holder.get("router")
            if rt is None:
                rt = holder["router"] = Router.from_config(cfg)
            else:
                rt.reload_if_changed()
            return rt

    # mounted on an app without create_app's guard (a test, a tool): a guard of its own
    own_guard = TokenGuard(getattr(svc, "token", None))

    # a route test tells a manifest row (an address): a supervisor's; an import, a technician's
    require_supervisor = require_role("supervisor", fallback=own_guard)
    require_token = require_role("technician", fallback=own_guard)

    def in_force_router():
        """The service's Router (the table in force, and why a file was refused), when there is one;
        else this API's own, which reloads like the service's."""
        rt = getattr(svc, "router", None)
        return rt if rt is not None and hasattr(rt, "state") else get_router()

    def in_force() -> str | None:
        try:
            return (svc.status() or {}).get("line", {}).get("routing_version")
        except Exception:  # noqa: BLE001 - status is best effort here
            return None

    @r.get("/api/lookup", summary="Real-time waybill lookup: configured, counters, circuit state")
    def get_lookup() -> dict:
        lk = getattr(svc, "lookup", None)
        if lk is None:
            return {"enabled": False}
        return {"enabled": True, "url": cfg.routing.lookup.url.split("?")[0], **lk.stats()}

    def no_table() -> str | None:
        """Why the service has no table at all (its files refused at start, none kept), if so: then
        this API must not build one of its own from the same refused files."""
        return getattr(svc, "routing_error", None) if getattr(svc, "router", "absent") is None else None

    @r.get("/api/routes", summary="The route table: version, rules, default and intercept chutes")
    def get_routes() -> dict:
        from sorter.controller.routing.routes import RoutesError
        why = no_table()
        if why:
            return {"ok": False, "problems": [why], "refused": [why], "version_in_force": in_force()}
        try:
            rt = in_force_router()
        except RoutesError as exc:
            return {"ok": False, "problems": exc.problems, "version_in_force": in_force()}
        st = rt.state
        refused = list(rt.refused or ())
        # the table in force, and beside it why the file on disk is not (ok: false until it is)
        return st.table.as_dict() | {"ok": not refused, "refused": refused, "version": st.version,
                                     "version_in_force": in_force(),
                                     "carriers": list(st.carriers.order), "towns": sorted(st.gazetteer.towns),
                                     "warnings": list(st.warnings)}

    @r.post("/api/routes/test", summary="Route one waybill and say why (token: it tells the manifest's advice)",
            dependencies=[Depends(require_supervisor)])
    def test_route(body: RouteTest) -> dict:
        from sorter.controller.routing.carriers import normalise
        from sorter.controller.routing.manifest import ManifestRow, normalise_sort_code
        from sorter.controller.routing.routes import RoutesError
        from sorter.controller.routing.router import NO_ROUTE, RouteDecision
        why = no_table()
        if why:
            raise HTTPException(409, {"problems": [why]})
        try:
            rt = get_router()
        except RoutesError as exc:
            raise HTTPException(409, {"problems": exc.problems}) from None
        st = rt.state
        waybill = normalise(body.waybill)
        carrier = st.carriers.identify(waybill)
        sc = None
        if body.sort_code is not None:
            sc = normalise_sort_code(body.sort_code)
            if sc is None:
                raise HTTPException(422, f"not a sort code: {body.sort_code!r}")
        if body.town or body.address or sc:
            row = ManifestRow(body.town, sc, body.address, body.carrier, body.service, body.weight_kg,
                              int(body.intercept))
        else:
            row = rt.manifest.lookup_row(waybill)
        if row is None:
            d = RouteDecision(NO_ROUTE, None, waybill, carrier, None, f"waybill {waybill} not in manifest", st.version)
        else:
            d = rt.route(st, waybill, carrier, row)
        return d.as_dict()

    @r.post("/api/manifest", summary="Import pre-advice rows (token)", dependencies=[Depends(require_token)],
            openapi_extra={"requestBody": MANIFEST_BODY})
    async def post_manifest(request: Request) -> dict:
        from starlette.concurrency import run_in_threadpool
        limits = getattr(request.app.state, "body_limits", None)
        most = limits.for_path("/api/manifest") if limits is not None else MAX_MANIFEST_BYTES
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > most):
            raise HTTPException(413, f"at most {most >> 20} MB per request")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > most:
                raise HTTPException(413, f"at most {most >> 20} MB per request")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        rep = await run_in_threadpool(_import, cfg, bytes(body), ctype)
        if rep.error:
            raise HTTPException(400, rep.error)
        log.info("manifest: %d rows imported over HTTP, %d bad", rep.imported, rep.bad_count)
        return rep.as_dict()

    return r


def _import(cfg, body: bytes, ctype: str):
    from sorter.controller.api.guard import clip
    from sorter.controller.routing.manifest import ImportReport, Manifest, decode_csv_bytes
    m = Manifest(cfg.routing.manifest)
    try:
        text, enc = decode_csv_bytes(body)
        if ctype in ("text/csv", "application/csv", "text/plain") and not text.lstrip().startswith(("[", "{")):
            rep = m.import_csv_text(text, "upload")
            rep.encoding = enc
            return rep
        stripped = text.strip()
        if stripped.startswith("{") and "\n{" in stripped:   # JSON lines
            rep = ImportReport("upload", encoding=enc)
            items = []
            for n, line in enumerate(stripped.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    items.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    rep.bad(n, f"not JSON: {exc.msg}")
                except RecursionError:
                    rep.bad(n, "JSON nested too deeply")
                except ValueError as exc:
                    rep.bad(n, f"not usable JSON: {clip(str(exc), 120)}")
            m._import_records(items, rep, lambda: 0, 0, None)
            return rep
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            return ImportReport("upload", error=f"line {exc.lineno}: not JSON: {exc.msg} "
                                                "(send JSON, JSON lines, or CSV with Content-Type text/csv)")
        except RecursionError:   # the parser's own depth limit (~1000 levels; a manifest has 2)
            return ImportReport("upload", error="JSON nested too deeply (a manifest is an array of flat objects)")
        except ValueError as exc:   # e.g. an integer past Python's digit limit
            return ImportReport("upload", error=f"not usable JSON: {clip(str(exc), 120)}")
        return m.import_records(data, ImportReport("upload", encoding=enc))
    finally:
        m.close()
