"""HTTP API and status page.

``create_app`` is handed its collaborators: a ``status()`` callable that returns the cached
status snapshot (it must never block), the :class:`RecordStore` for parcel queries, and an
optional :class:`Control` for the supervisor's actions. Reading is open on the LAN unless
`auth.read` is `login`; each control endpoint needs its role (viewer < supervisor < technician),
from a login's session cookie or a bearer token (controller/api/auth.py), is refused outright when
neither users nor a token are configured, and is audited (controller/api/audit.py).
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from sorter.controller.api.audit import audit_record, router as audit_router
from sorter.controller.api.auth import (Auth, Principal, auth_router, may_read, require_supervisor,
                                        require_technician, sessions_file_of)
from sorter.controller.api.guard import BodyLimits, install as install_guard
from sorter.controller.api.keying import router as keying_router
from sorter.controller.api import docs as api_docs, events as api_events, export as api_export, totals as api_totals
from sorter.controller.api.metrics import StatusCollector
from sorter.controller.api.page_gate import PageGate
from sorter.controller.api.status_fast import StatusFastPath
from sorter.controller.api.models import Chute, ParcelRecord, Stats, Status
from sorter.controller.service.alarm_book import code_of
from sorter.controller.service.status_cache import PulledStatus
from sorter.controller.api.search import router as search_router
from sorter.controller.config.auth import AuthConfig
from sorter.controller.records.store import OUTCOMES, RecordStore
from sorter.controller.timing.line_state import STATES

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CHUTE_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
ALARM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
# the pages (each its own script under /static), and what may be fetched before a login when
# reading needs one (auth.read: login)
PAGES = {"/": "index.html", "/login": "login.html", "/station": "station.html", "/parcel": "parcel.html"}
BEFORE_LOGIN = frozenset({"/login", "/api/login", "/api/me", "/static/login.js", "/static/i18n.js",
                          "/static/style.css", "/favicon.ico"})
LINE_STATES = STATES  # the line state machine's (timing/line_state.py)
MAX_PARCELS = 1000

# The page builds its DOM with textContent; the CSP makes sure no injected markup could run.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


@runtime_checkable
class Control(Protocol):
    """What the API may ask of the running line."""

    def set_chute_enabled(self, chute_id: str, enabled: bool) -> bool:
        """False when there is no such chute."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def reload_routes(self, force: bool = False) -> tuple[bool, str]:
        """(ok, message); on failure the message names the file and line, the old table stays.
        force: install a valid table that would otherwise be refused as unsafe (no rules, no
        default, a big fall in rules); a control without the parameter cannot be forced."""
        ...


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) with None; walks dicts and lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# the Prometheus collector is controller/api/metrics.py


def _site_metrics(st: dict) -> Iterator[Any]:
    """The backlogs of a site's parts (site database, MQTT, uploads), when configured."""
    db, mqtt, up = st.get("site_db"), st.get("mqtt"), st.get("uploads")
    if db:
        g = GaugeMetricFamily("sorter_site_db_backlog", "Records in the local file not yet in the site database")
        g.add_metric([], float(db.get("backlog") or 0))
        yield g
        g = GaugeMetricFamily("sorter_site_db_connected", "1 while the site database answers")
        g.add_metric([], 1.0 if db.get("connected") else 0.0)
        yield g
    if mqtt:
        g = GaugeMetricFamily("sorter_mqtt_queued", "MQTT messages not yet acknowledged by the broker")
        g.add_metric([], float(mqtt.get("queued") or 0))
        yield g
        g = GaugeMetricFamily("sorter_mqtt_connected", "1 while the MQTT broker is connected")
        g.add_metric([], 1.0 if mqtt.get("connected") else 0.0)
        yield g
    if up:
        gp = GaugeMetricFamily("sorter_uploads_pending", "Upload events not yet delivered", labels=["target"])
        gd = GaugeMetricFamily("sorter_uploads_failed", "Upload events dead-lettered", labels=["target"])
        for t in up.get("targets") or []:
            gp.add_metric([str(t.get("name", ""))], float(t.get("pending") or 0))
            gd.add_metric([str(t.get("name", ""))], float(t.get("failed") or 0))
        yield gp
        yield gd


def create_app(
    status: Callable[[], dict],
    store: RecordStore,
    control: Control | None = None,
    token: str | None = None,
    routers: Sequence[APIRouter] = (),
    body_limits: BodyLimits | None = None,
    auth: AuthConfig | Auth | None = None,
    published: Any = None,
    stats: Any = None,
) -> FastAPI:
    """`published`: the service's StatusCache (the snapshot's JSON made once per change; without
    one, `status()` is serialised when it returns a new dict). `stats`: the stats config (shifts)."""
    app = FastAPI(
        title="Sorting line controller",
        description="Status, parcel records and supervisor control of one sorting line.",
        version="1",
        docs_url=None, redoc_url=None,  # /docs is served offline by api/docs.py
    )
    source = published if published is not None else PulledStatus(status)
    token = token or None  # an empty string is no token
    if auth is None:   # the running line's control is the service: its config has the users
        auth = getattr(getattr(control, "cfg", None), "auth", None)
    app.state.store = store
    app.state.auth = auth if isinstance(auth, Auth) else Auth(auth if isinstance(auth, AuthConfig) else None,
                                                              sessions_file=sessions_file_of(control, store))
    # body limits, the JSON check, short 4xx answers and the token's guess limit (controller/api/guard.py)
    install_guard(app, token, body_limits, lookup=app.state.auth.lookup_token, users_exist=app.state.auth.has_users)

    def snapshot() -> dict:
        try:
            st = status()
        except Exception as exc:  # noqa: BLE001
            log.exception("status() failed")
            raise HTTPException(503, f"status unavailable: {exc}") from exc
        if not isinstance(st, dict):
            raise HTTPException(503, "status unavailable")
        return st

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(snapshot, extra=[_site_metrics]))

    # the status snapshot's bytes without FastAPI's routing (api/status_fast.py), inside the gate
    app.add_middleware(StatusFastPath, source=source)
    # the read gate and the headers (controller/api/page_gate.py)
    app.add_middleware(PageGate, pages=frozenset(PAGES), before_login=BEFORE_LOGIN, csp=PAGE_CSP, may_read=may_read)

    # ------------------------------------------------------------------ reading (open)
    @app.get("/api/status", summary="The line's status snapshot", response_model=Status)
    async def get_status(request: Request) -> Response:
        # on the event loop, no thread hop: the bytes were made when the snapshot was published
        try:
            pub = source.latest()
        except Exception as exc:  # noqa: BLE001
            log.exception("status() failed")
            raise HTTPException(503, f"status unavailable: {exc}") from exc
        if pub is None:
            raise HTTPException(503, "status unavailable: the service has not published a snapshot yet")
        if request.headers.get("if-none-match") == pub.etag:
            return Response(status_code=304, headers={"ETag": pub.etag})
        return Response(pub.body, media_type="application/json", headers={"ETag": pub.etag})

    @app.get("/api/chutes", summary="Chutes: name, count, full, enabled", response_model=list[Chute])
    def get_chutes() -> JSONResponse:
        return JSONResponse(_json_safe(snapshot().get("chutes") or []))

    @app.get("/api/stats", summary="Counts, throughput, read rate and timing percentiles", response_model=Stats)
    def get_stats() -> JSONResponse:
        st = snapshot()
        keys = ("counts", "throughput_pph", "read_rate", "fire_error_ms", "decision_ms")
        return JSONResponse(_json_safe({k: st.get(k) for k in keys}))

    @app.get("/api/parcels", summary="Parcel records from the database, newest first",
             response_model=list[ParcelRecord])
    def get_parcels(
        limit: int = Query(50, ge=1, le=MAX_PARCELS, description=f"1..{MAX_PARCELS}"),
        outcome: str | None = Query(None, max_length=32, description="one of: " + ", ".join(OUTCOMES)),
        waybill: str | None = Query(None, min_length=1, max_length=128),
        since_wall: float | None = Query(None, ge=0, description="epoch seconds"),
    ) -> JSONResponse:
        if outcome is not None and outcome not in OUTCOMES:
            raise HTTPException(422, f"unknown outcome {outcome!r}; expected one of: {', '.join(OUTCOMES)}")
        if since_wall is not None and not math.isfinite(since_wall):
            raise HTTPException(422, "since_wall must be a finite number")
        try:
            rows = store.recent(limit=limit, outcome=outcome, since_wall=since_wall, waybill=waybill)
        except Exception as exc:  # noqa: BLE001
            log.exception("parcel query failed")
            raise HTTPException(503, f"record database unavailable: {exc}") from exc
        return JSONResponse(_json_safe(rows))

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ control (roles)
    # every control endpoint takes its role (controller/api/auth.py) and is audited (api/audit.py)
    def line_control() -> Control:
        if control is None:
            raise HTTPException(503, "no line control attached")
        return control

    def run(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("control %s failed", what)
            raise HTTPException(500, f"{what} failed: {exc}") from exc

    def act(request: Request, who: Principal, action: str, target: str | None, fn: Callable[[], Any],
            ok: Callable[[Any], bool] = lambda r: True, message: Callable[[Any], str] = lambda r: "") -> Any:
        """Run a control action and audit it, whatever its result."""
        try:
            result = run(action, fn)
        except HTTPException as exc:
            audit_action(request, who, action, target, "failed", str(exc.detail))
            raise
        audit_action(request, who, action, target, "ok" if ok(result) else "refused", message(result))
        return result

    def set_chute(chute_id: str, enabled: bool, request: Request, who: Principal) -> dict:
        if not CHUTE_ID.match(chute_id):
            raise HTTPException(422, "chute id must be 1-16 letters, digits, '_' or '-'")
        ctl = line_control()
        if not act(request, who, "chute_enable" if enabled else "chute_disable", chute_id,
                   lambda: ctl.set_chute_enabled(chute_id, enabled), ok=bool,
                   message=lambda r: "" if r else "no such chute"):
            raise HTTPException(404, f"no chute {chute_id!r}")
        return {"ok": True, "chute": chute_id, "enabled": enabled}

    @app.post("/api/chutes/{chute_id}/enable", summary="Enable a chute (supervisor)")
    def enable_chute(chute_id: str, request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        return set_chute(chute_id, True, request, who)

    @app.post("/api/chutes/{chute_id}/disable", summary="Disable a chute (supervisor)")
    def disable_chute(chute_id: str, request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        return set_chute(chute_id, False, request, who)

    @app.post("/api/chutes/{chute_id}/emptied", summary="Say a chute was emptied: its count since starts at 0 "
                                                          "(supervisor)")
    def chute_emptied(chute_id: str, request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        if not CHUTE_ID.match(chute_id):
            raise HTTPException(422, "chute id must be 1-16 letters, digits, '_' or '-'")
        ctl = needs(line_control(), "mark_chute_emptied")
        if not act(request, who, "chute_emptied", chute_id, lambda: ctl.mark_chute_emptied(chute_id, who.name),
                   ok=bool, message=lambda r: "" if r else "no such chute"):
            raise HTTPException(404, f"no chute {chute_id!r}")
        return {"ok": True, "chute": chute_id}

    @app.post("/api/pause", summary="Pause induction (supervisor)")
    def pause(request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        ctl = line_control()
        act(request, who, "pause", None, ctl.pause)
        return {"ok": True}

    @app.post("/api/resume", summary="Resume induction (supervisor)")
    def resume(request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        ctl = line_control()
        act(request, who, "resume", None, ctl.resume)
        return {"ok": True}

    @app.post("/api/line/reset", summary="Reset the line after an emergency stop (supervisor)")
    def reset_line(request: Request, who: Principal = Depends(require_supervisor)) -> JSONResponse:
        ctl = needs(line_control(), "reset")
        ok, message = act(request, who, "estop_reset", None, lambda: ctl.reset(who.name),
                          ok=lambda r: bool(r[0]), message=lambda r: str(r[1]))
        return JSONResponse({"ok": bool(ok), "message": str(message)}, status_code=200 if ok else 409)

    @app.post("/api/routes/reload", summary="Reload the routing table (technician)")
    def reload_routes(request: Request, who: Principal = Depends(require_technician),
                      force: bool = Query(False, description="install a valid table even if it has no rules, no "
                                                             "default, or far fewer rules than the one in force")
                      ) -> JSONResponse:
        ctl = line_control()
        if force and "force" not in inspect.signature(ctl.reload_routes).parameters:
            raise HTTPException(501, "this line's control cannot force a routes reload")
        fn = (lambda: ctl.reload_routes(force=True)) if force else ctl.reload_routes

        def checked() -> tuple[bool, str]:
            result = fn()
            try:
                ok, message = result
            except (TypeError, ValueError):
                raise HTTPException(500, f"routes reload returned {result!r:.80}, not (ok, message)") from None
            return bool(ok), str(message)

        ok, message = act(request, who, "routes_reload_forced" if force else "routes_reload", None, checked,
                          ok=lambda r: r[0], message=lambda r: r[1])
        return JSONResponse({"ok": ok, "message": message}, status_code=200 if ok else 422)

    @app.post("/api/alarms/{alarm_id}/ack", summary="Acknowledge an alarm; silences the buzzer (supervisor)")
    def ack_alarm(alarm_id: str, request: Request, who: Principal = Depends(require_supervisor)) -> dict:
        check_alarm_id(alarm_id)
        ctl = needs(line_control(), "ack_alarm")
        if not act(request, who, "alarm_ack", alarm_id, lambda: ctl.ack_alarm(alarm_id, who.name), ok=bool,
                   message=lambda r: "" if r else "no such active alarm"):
            raise HTTPException(404, f"no active alarm {alarm_id!r}")
        return {"ok": True, "alarm": alarm_id}

    @app.post("/api/alarms/{alarm_id}/shelve", summary="Shelve an alarm for a while (supervisor)")
    def shelve_alarm(alarm_id: str, request: Request, who: Principal = Depends(require_supervisor),
                     minutes: float = Query(60, gt=0, le=480, description="how long, minutes (at most 8 h)")) -> dict:
        check_alarm_id(alarm_id)
        ctl = needs(line_control(), "shelve_alarm")
        if not act(request, who, "alarm_shelve", f"{alarm_id} {minutes:g} min",
                   lambda: ctl.shelve_alarm(alarm_id, who.name, minutes * 60), ok=bool,
                   message=lambda r: "" if r else "no such active alarm"):
            raise HTTPException(404, f"no active alarm {alarm_id!r}")
        return {"ok": True, "alarm": alarm_id, "minutes": minutes}

    @app.post("/api/line/test-mode", summary="Switch a commissioning test mode (technician)")
    def set_test_mode(request: Request, who: Principal = Depends(require_technician),
                      mode: str = Query(..., pattern=r"^(off|round_robin|fixed)$"),
                      chute: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,16}$")) -> JSONResponse:
        ctl = needs(line_control(), "set_test_mode")
        ok, message = act(request, who, "test_mode", mode + (f":{chute}" if chute else ""),
                          lambda: ctl.set_test_mode(mode, chute, who.name), ok=lambda r: bool(r[0]),
                          message=lambda r: str(r[1]))
        return JSONResponse({"ok": bool(ok), "message": str(message)}, status_code=200 if ok else 409)

    @app.post("/api/uploads/resend", summary="Re-send the dead-lettered uploads of one target, or all (supervisor)")
    def resend_uploads(request: Request, who: Principal = Depends(require_supervisor),
                       target: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,32}$",
                                                  description="upload target name (none: every target)")) -> dict:
        ctl = needs(line_control(), "resend_uploads")
        n = act(request, who, "uploads_resend", target, lambda: ctl.resend_uploads(target),
                ok=lambda r: r is not None, message=lambda r: "" if r is not None else "no such upload target")
        if n is None:
            raise HTTPException(404, f"no upload target {target!r}" if target else "no uploads configured")
        return {"ok": True, "target": target, "resent": n}

    @app.get("/api/alarms/history", summary="Alarms from raised to cleared, newest first",
             description="Each row as an active alarm is: `code` and `params` for the title, `detail` (the "
                         "key of its words, with `params`) for the page's language, `text` in English. A row "
                         "kept before the detail was stored has `detail` null: its text is all there is.")
    def get_alarm_history(limit: int = Query(50, ge=1, le=1000)) -> JSONResponse:
        try:
            rows = store.alarm_history(limit)
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(503, f"record database unavailable: {exc}") from exc
        for r in rows:  # an older row has no params: the code's own (the camera) are in its id
            r["params"] = {**code_of(str(r.get("alarm_id") or ""))[1], **(r.get("params") or {})}
        return JSONResponse(_json_safe(rows))

    def audit_action(request: Request, who: Principal, action: str, target: str | None, result: str,
                     detail: str = "") -> None:
        audit_record(store, request, who, action, target, result, detail)

    # logins, the audit, the no-read review and keying, search and the parcel's story
    for r in (auth_router(), audit_router(store), keying_router(store, control),
              search_router(store, control)):
        app.include_router(r)
    # live updates, totals and series, exports, the offline /docs
    if stats is None:
        stats = getattr(getattr(control, "cfg", None), "stats", None)
    for r in (api_events.router(source), api_totals.router(store, stats), api_export.router(store),
              api_docs.router(app)):
        app.include_router(r)

    # ------------------------------------------------------------------ the pages
    def page(name: str) -> Callable[[], FileResponse]:
        def serve_page() -> FileResponse:
            return FileResponse(STATIC / name, media_type="text/html; charset=utf-8")
        return serve_page

    for path, name in PAGES.items():
        app.add_api_route(path, page(name), methods=["GET"], include_in_schema=False)

    # each area (routing, cameras, I/O) adds its own endpoints
    for r in routers:
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def needs(ctl: Any, method: str) -> Any:
    if not hasattr(ctl, method):
        raise HTTPException(501, f"this line's control cannot {method.replace('_', ' ')}")
    return ctl


def check_alarm_id(alarm_id: str) -> None:
    if not ALARM_ID.match(alarm_id):
        raise HTTPException(422, "alarm id must be 1-80 letters, digits, '_', '.' or '-'")
