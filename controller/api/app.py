"""HTTP API and status page.

``create_app`` is handed its collaborators: a ``status()`` callable that returns the cached
status snapshot (it must never block), the :class:`RecordStore` for parcel queries, and an
optional :class:`Control` for the supervisor's actions. Reading is open on the LAN; control
needs ``Authorization: Bearer <token>`` and is refused outright when no token is configured.
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sorter.controller.api.guard import BodyLimits, install as install_guard, token_guard
from sorter.controller.records.store import OUTCOMES, RecordStore
from sorter.controller.timing.line_state import STATES

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
CHUTE_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
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


class _StatusCollector:
    """Prometheus metrics read from the status snapshot at scrape time."""

    def __init__(self, status: Callable[[], dict]):
        self._status = status

    def collect(self) -> Iterator[Any]:
        st = self._status() or {}
        line = st.get("line") or {}
        counts = (st.get("counts") or {}).get("outcomes") or {}
        c = CounterMetricFamily("parcels", "Parcels finished this run, by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            c.add_metric([outcome], float(counts.get(outcome, 0) or 0))
        yield c

        for name, doc in (("fire_error_ms", "Diverter fire timing error (ms)"),
                          ("decision_ms", "Decision time per parcel (ms)")):
            pct = st.get(name) or {}
            g = GaugeMetricFamily(name, doc + ", quantiles over the last 10000 parcels", labels=["quantile"])
            for key, q in (("p50", "0.5"), ("p99", "0.99"), ("p999", "0.999"), ("max", "1")):
                v = _num(pct.get(key))
                if v is not None:
                    g.add_metric([q], v)
            yield g
            g = GaugeMetricFamily(name + "_samples", doc + ", number of samples behind the quantiles")
            g.add_metric([], float(pct.get("n") or 0))
            yield g

        for name, doc, value in (
            ("throughput_pph", "Parcels per hour over the last 5 minutes", st.get("throughput_pph")),
            ("read_rate", "Share of parcels with a waybill read", st.get("read_rate")),
            ("belt_speed_mps", "Measured belt speed (m/s)", line.get("belt_speed_mps")),
            ("uptime_seconds", "Controller uptime", line.get("uptime_s")),
        ):
            v = _num(value)
            if v is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], v)
                yield g

        plc = line.get("plc") or {}
        g = GaugeMetricFamily("plc_connected", "1 when the PLC / remote I/O link is up", labels=["url"])
        g.add_metric([str(plc.get("url", ""))], 1.0 if plc.get("connected") else 0.0)
        yield g
        c = CounterMetricFamily("plc_errors", "PLC communication errors", labels=["url"])
        c.add_metric([str(plc.get("url", ""))], float(plc.get("errors") or 0))
        yield c

        g = GaugeMetricFamily("line_state", "1 for the line's current state", labels=["state"])
        state = line.get("state")
        for s in LINE_STATES:
            g.add_metric([s], 1.0 if s == state else 0.0)
        yield g
        g = GaugeMetricFamily("line_test_mode", "1 while a commissioning test mode drives the diverters")
        g.add_metric([], 1.0 if line.get("test_mode") else 0.0)
        yield g
        g = GaugeMetricFamily("line_induct_enabled", "1 while the line lets parcels in")
        g.add_metric([], 1.0 if line.get("induct_enable") else 0.0)
        yield g
        records = st.get("records") or {}
        for key, doc in (("in_flight", "Parcels on the belt whose records are still open (journal)"),
                         ("id_collisions", "Parcel ids seen twice (kept in bad_records)"),
                         ("faulted_previous_run", "Parcels on the belt when the last run ended, recorded as fault"),
                         ("faulted_timing_restart", "Parcels in flight when the timing process died, recorded "
                                                    "as fault")):
            g = GaugeMetricFamily("records_" + key, doc)
            g.add_metric([], float(records.get(key) or 0))
            yield g

        g = GaugeMetricFamily("alarms_active", "Active alarms")
        g.add_metric([], float(len(st.get("alarms") or [])))
        yield g

        chutes = st.get("chutes") or []
        gc = GaugeMetricFamily("chute_parcels", "Parcels sent to the chute this run", labels=["chute"])
        gf = GaugeMetricFamily("chute_full", "1 when the chute reports full", labels=["chute"])
        ge = GaugeMetricFamily("chute_enabled", "1 when the chute is enabled", labels=["chute"])
        for ch in chutes:
            cid = str(ch.get("id", ""))
            gc.add_metric([cid], float(ch.get("count") or 0))
            gf.add_metric([cid], 1.0 if ch.get("full") else 0.0)
            ge.add_metric([cid], 1.0 if ch.get("enabled", True) else 0.0)
        yield gc
        yield gf
        yield ge

        cams = st.get("cameras") or []
        ga = GaugeMetricFamily("camera_alive", "1 when the camera worker delivers frames", labels=["camera"])
        gfps = GaugeMetricFamily("camera_fps", "Camera frames per second", labels=["camera"])
        cfr = CounterMetricFamily("camera_frames", "Frames decoded", labels=["camera"])
        cdr = CounterMetricFamily("camera_dropped", "Frames dropped", labels=["camera"])
        crd = CounterMetricFamily("camera_reads", "Barcodes read", labels=["camera"])
        for cam in cams:
            name = str(cam.get("name", ""))
            ga.add_metric([name], 1.0 if cam.get("alive") else 0.0)
            for fam, key in ((gfps, "fps"), (cfr, "frames"), (cdr, "dropped"), (crd, "reads")):
                v = _num(cam.get(key))
                if v is not None:
                    fam.add_metric([name], v)
        yield ga
        yield gfps
        yield cfr
        yield cdr
        yield crd


def create_app(
    status: Callable[[], dict],
    store: RecordStore,
    control: Control | None = None,
    token: str | None = None,
    routers: Sequence[APIRouter] = (),
    body_limits: BodyLimits | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Sorting line controller",
        description="Status, parcel records and supervisor control of one sorting line.",
        version="1",
    )
    token = token or None  # an empty string is no token
    # body limits, the JSON check, short 4xx answers and the token's guess limit (controller/api/guard.py)
    install_guard(app, token, body_limits)

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
    registry.register(_StatusCollector(snapshot))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        path = request.url.path
        if path == "/" or path.startswith("/static/"):
            response.headers["Content-Security-Policy"] = PAGE_CSP
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-cache"
        if path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ reading (open)
    @app.get("/api/status", summary="The line's status snapshot")
    def get_status() -> JSONResponse:
        return JSONResponse(_json_safe(snapshot()))

    @app.get("/api/chutes", summary="Chutes: name, count, full, enabled")
    def get_chutes() -> JSONResponse:
        return JSONResponse(_json_safe(snapshot().get("chutes") or []))

    @app.get("/api/stats", summary="Counts, throughput, read rate and timing percentiles")
    def get_stats() -> JSONResponse:
        st = snapshot()
        keys = ("counts", "throughput_pph", "read_rate", "fire_error_ms", "decision_ms")
        return JSONResponse(_json_safe({k: st.get(k) for k in keys}))

    @app.get("/api/parcels", summary="Parcel records from the database, newest first")
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

    # ------------------------------------------------------------------ control (token)
    def require_token(request: Request) -> Control:
        token_guard(request).require(request)   # the same answers and guess limit on every endpoint
        if control is None:
            raise HTTPException(503, "no line control attached")
        return control

    def audit(request: Request, what: str) -> None:
        log.info("control: %s (from %s)", what, request.client.host if request.client else "?")

    def run(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("control %s failed", what)
            raise HTTPException(500, f"{what} failed: {exc}") from exc

    def set_chute(chute_id: str, enabled: bool, request: Request, ctl: Control) -> dict:
        if not CHUTE_ID.match(chute_id):
            raise HTTPException(422, "chute id must be 1-16 letters, digits, '_' or '-'")
        audit(request, f"chute {chute_id} {'enable' if enabled else 'disable'}")
        if not run("chute change", lambda: ctl.set_chute_enabled(chute_id, enabled)):
            raise HTTPException(404, f"no chute {chute_id!r}")
        return {"ok": True, "chute": chute_id, "enabled": enabled}

    @app.post("/api/chutes/{chute_id}/enable", summary="Enable a chute (token)")
    def enable_chute(chute_id: str, request: Request, ctl: Control = Depends(require_token)) -> dict:
        return set_chute(chute_id, True, request, ctl)

    @app.post("/api/chutes/{chute_id}/disable", summary="Disable a chute (token)")
    def disable_chute(chute_id: str, request: Request, ctl: Control = Depends(require_token)) -> dict:
        return set_chute(chute_id, False, request, ctl)

    @app.post("/api/pause", summary="Pause the line (token)")
    def pause(request: Request, ctl: Control = Depends(require_token)) -> dict:
        audit(request, "pause")
        run("pause", ctl.pause)
        return {"ok": True}

    @app.post("/api/resume", summary="Resume the line (token)")
    def resume(request: Request, ctl: Control = Depends(require_token)) -> dict:
        audit(request, "resume")
        run("resume", ctl.resume)
        return {"ok": True}

    @app.post("/api/line/reset", summary="Reset the line after an emergency stop (token)")
    def reset_line(request: Request, ctl: Control = Depends(require_token)) -> JSONResponse:
        audit(request, "reset after emergency stop")
        if not hasattr(ctl, "reset"):
            raise HTTPException(501, "this line's control has no reset")
        ok, message = run("reset", lambda: ctl.reset(request.client.host if request.client else ""))
        return JSONResponse({"ok": bool(ok), "message": str(message)}, status_code=200 if ok else 409)

    @app.post("/api/routes/reload", summary="Reload the routing table (token)")
    def reload_routes(request: Request, ctl: Control = Depends(require_token),
                      force: bool = Query(False, description="install a valid table even if it has no rules, no "
                                                             "default, or far fewer rules than the one in force")
                      ) -> JSONResponse:
        audit(request, "routes reload" + (" (forced)" if force else ""))
        if force and "force" not in inspect.signature(ctl.reload_routes).parameters:
            raise HTTPException(501, "this line's control cannot force a routes reload")
        result = run("routes reload", (lambda: ctl.reload_routes(force=True)) if force else ctl.reload_routes)
        try:
            ok, message = result
        except (TypeError, ValueError):
            raise HTTPException(500, f"routes reload returned {result!r:.80}, not (ok, message)") from None
        return JSONResponse({"ok": bool(ok), "message": str(message)}, status_code=200 if ok else 422)

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    # each area (routing, cameras, I/O) adds its own endpoints
    for r in routers:
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
