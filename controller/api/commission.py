"""The technician's camera set-up page and its endpoints (mounted by controller/api/server.py).

    GET  /commission                          the page (static/commission.html + .js, strict CSP)
    GET  /api/commission/cameras              the cameras, and what each accepted of its properties
    GET  /api/commission/{camera}/view        the latest frame's measures: codes (text, outline,
                                              px/module), focus and best so far, histogram,
                                              saturated share, fps, blur at belt speed
    GET  /api/commission/{camera}/view.jpg    the same frame with the codes outlined (JPEG)
    POST /api/commission/{camera}/snapshot    (technician) keep the current frame as a PNG
    POST /api/commission/{camera}/roi         (technician) save a region of interest {x, y, w, h}
                                              into the camera's calibration file
    POST /api/commission/{camera}/properties  (technician) ask the camera for exposure, gain, focus,
                                              width, height; what it accepted shows in /cameras
    POST /api/commission/{camera}/focus/reset (technician) forget the best focus (a new scene)

The frame is the worker's last decoded one, read from its shared-memory ring; the measures are made
here, at most once per new frame and never more than ``MIN_PERIOD_S`` apart per camera (the page is
for commissioning, not for production: decoding here costs the service process CPU).

Who may use the controls is decided in one place, `require_technician`: the technician role (a
logged-in technician, or the API token).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from sorter.controller.api.auth import require_role
from sorter.controller.api.guard import TokenGuard

STATIC = Path(__file__).with_name("static")
CAMERA = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
SHM = re.compile(r"^sorter-\d+-[A-Za-z0-9_-]+-\d+$")
MIN_PERIOD_S = 0.4
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
SETTABLE = ("exposure", "gain", "focus", "width", "height", "auto_exposure", "autofocus")


class Roi(BaseModel):
    x: int = Field(ge=0, le=20_000)
    y: int = Field(ge=0, le=20_000)
    w: int = Field(gt=0, le=20_000)
    h: int = Field(gt=0, le=20_000)


class CameraSettings(BaseModel):
    exposure: float | None = Field(default=None, ge=-20, le=1_000_000)
    gain: float | None = Field(default=None, ge=0, le=10_000)
    focus: float | None = Field(default=None, ge=0, le=10_000)
    width: int | None = Field(default=None, ge=16, le=10_000)
    height: int | None = Field(default=None, ge=16, le=10_000)
    auto_exposure: bool | None = None
    autofocus: bool | None = None
    exposure_ms: float | None = Field(default=None, gt=0, le=1000,
                                      description="the exposure in ms, for the motion blur at belt speed")


class _View:
    """The latest analysed frame of one camera."""

    def __init__(self):
        from sorter.vision.commission.measures import FocusMeter

        self.lock = threading.Lock()
        self.focus = FocusMeter()
        self.t_frame = None
        self.at = 0.0
        self.measures: dict | None = None
        self.jpeg: bytes | None = None
        self.frame = None
        self.frame_times: list[float] = []
        self.exposure_ms: float | None = None


def router(svc) -> APIRouter:
    r = APIRouter(tags=["commissioning"])
    views: dict[str, _View] = {}
    own_guard = TokenGuard(getattr(svc, "token", None))

    # the one gate of the page's controls: a technician (logged in, or by API token)
    require_technician = require_role("technician", fallback=own_guard)

    def camera_cfg(name: str):
        if not CAMERA.match(name):
            raise HTTPException(422, "camera name: 1-32 letters, digits, '_' or '-'")
        for c in svc.cfg.cameras:
            if c.name == name:
                return c
        raise HTTPException(404, f"no camera {name!r}")

    def health(name: str) -> dict:
        for c in (svc.status() or {}).get("cameras", []):
            if c.get("name") == name:
                return c
        return {}

    def analyse(name: str) -> _View:
        cam = camera_cfg(name)
        v = views.setdefault(name, _View())
        with v.lock:
            now = time.monotonic()
            if v.measures is not None and now - v.at < MIN_PERIOD_S:
                return v
            from sorter.vision.ring import read_latest

            shm = str(health(name).get("shm") or "")
            got = read_latest(shm) if SHM.match(shm) else None
            if got is None:
                if v.measures is None:
                    raise HTTPException(404, "no frame yet from this camera")
                return v
            t, img = got
            v.at = now
            if t == v.t_frame and v.measures is not None:
                return v
            import cv2

            from sorter.vision.commission.measures import annotate, exposure_advice, frame_measures
            from sorter.vision.decode import decode

            codes = decode(img, list(cam.symbologies), engines=list(cam.engines))
            m = frame_measures(img, codes, v.focus)
            v.frame_times = [x for x in v.frame_times if x > now - 10] + [now]
            # the module width for the blur: the smallest code in view (ppm x mm/px), else 0.33 mm
            module_mm = 0.33
            mmpx = _mm_per_px(cam)
            if mmpx and m["ppm_min"]:
                module_mm = round(m["ppm_min"] * mmpx, 3)
            blur = exposure_advice(svc.cfg.line.belt_speed_mps, module_mm,
                                   None if v.exposure_ms is None else v.exposure_ms / 1000, m)
            m.update({"camera": name, "t_frame": t, "blur": blur, "mm_per_px": mmpx,
                      "fps": round(float(health(name).get("fps") or 0.0), 2),
                      "properties": health(name).get("properties") or {}})
            big = annotate(img, m, blur)
            if big.shape[1] > 1280:
                s = 1280 / big.shape[1]
                big = cv2.resize(big, (1280, int(big.shape[0] * s)), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 85])
            v.jpeg = buf.tobytes() if ok else None
            v.measures, v.t_frame, v.frame = m, t, img
            return v

    def _mm_per_px(cam) -> float | None:
        if cam.calibration is None:
            return None
        from sorter.vision.geometry import Calibration, CalibrationError
        try:
            return Calibration.load(cam.calibration).meta.get("mm_per_px")
        except CalibrationError:
            return None

    @r.get("/commission", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "commission.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer",
                                     "Cache-Control": "no-cache"})

    @r.get("/api/commission/cameras", summary="Cameras for the set-up page, and what each accepted")
    def cameras() -> list[dict]:
        out = []
        for c in svc.cfg.cameras:
            h = health(c.name)
            out.append({"name": c.name, "source": c.source, "kind": h.get("kind", ""), "state": h.get("state", ""),
                        "fps": h.get("fps"), "properties": h.get("properties") or {},
                        "calibrated": bool(h.get("calibrated")), "latency_ms": h.get("latency_ms")})
        return out

    @r.get("/api/commission/{camera}/view", summary="The latest frame's measures")
    def view(camera: str) -> JSONResponse:
        v = analyse(camera)
        return JSONResponse(v.measures, headers={"Cache-Control": "no-store"})

    @r.get("/api/commission/{camera}/view.jpg", summary="The latest frame, codes outlined (JPEG)")
    def view_jpg(camera: str) -> Response:
        v = analyse(camera)
        if v.jpeg is None:
            raise HTTPException(500, "cannot encode the frame")
        return Response(v.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @r.post("/api/commission/{camera}/snapshot", summary="Keep the current frame (technician)",
            dependencies=[Depends(require_technician)])
    def snapshot(camera: str) -> dict:
        import cv2

        v = analyse(camera)
        from sorter.controller.config.vision import data_dir
        folder = data_dir(svc.cfg) / "commission"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{camera}-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}.png"
        if not cv2.imwrite(str(folder / name), v.frame):
            raise HTTPException(500, f"cannot write {folder / name}")
        return {"ok": True, "file": str(folder / name)}

    @r.post("/api/commission/{camera}/roi", summary="Save the region of interest (technician)",
            dependencies=[Depends(require_technician)])
    def roi(camera: str, body: Roi) -> dict:
        from sorter.vision.geometry import Calibration, CalibrationError
        cam = camera_cfg(camera)
        if cam.calibration is None:
            raise HTTPException(409, f"camera {camera} has no calibration yet: calibrate it first "
                                     "(`sorter calibrate from-card`)")
        try:
            cal = Calibration.load(cam.calibration)
        except CalibrationError as exc:
            raise HTTPException(409, str(exc)) from exc
        fw, fh = cal.frame_size
        if body.x + body.w > fw or body.y + body.h > fh:
            raise HTTPException(422, f"the region must lie inside the {fw}x{fh} frame")
        cal.meta["roi"] = body.model_dump()
        backup = cal.save(cam.calibration)
        return {"ok": True, "roi": cal.meta["roi"], "file": str(cam.calibration), "backup": str(backup or "")}

    @r.post("/api/commission/{camera}/properties", summary="Ask the camera for settings (technician)",
            dependencies=[Depends(require_technician)])
    def properties(camera: str, body: CameraSettings) -> dict:
        camera_cfg(camera)
        asked = {k: v for k, v in body.model_dump().items() if v is not None and k in SETTABLE}
        v = views.setdefault(camera, _View())
        if body.exposure_ms is not None:
            v.exposure_ms = body.exposure_ms
            v.at = 0.0
        if not asked:
            return {"ok": True, "asked": {}, "sent": False}
        from sorter.messages import SetCameraProperties
        q = (getattr(svc, "camera_cmds", None) or {}).get(camera)
        if q is None:
            raise HTTPException(503, f"camera {camera} is not running")
        try:
            q.put_nowait(SetCameraProperties(asked))
        except Exception as exc:  # noqa: BLE001 - a full or closed queue
            raise HTTPException(503, f"camera {camera} did not take the command: {exc}") from exc
        return {"ok": True, "asked": asked, "sent": True,
                "note": "what the camera accepted shows in /api/commission/cameras within a second"}

    @r.post("/api/commission/{camera}/focus/reset", summary="Forget the best focus (technician)",
            dependencies=[Depends(require_technician)])
    def focus_reset(camera: str) -> dict:
        camera_cfg(camera)
        views.setdefault(camera, _View()).focus.reset()
        return {"ok": True}

    return r
