"""HTTP endpoints for cameras, mounted by controller/api/server.py (all read-only):

- ``GET /api/noreads?limit=N``: the kept no-read images, newest first (file, run_id, parcel_id,
  camera, bytes, time);
- ``GET /api/noreads/{file}``: one of them (JPEG);
- ``GET /api/cameras/{name}/last.jpg?width=W``: the camera's last decoded frame, read from the
  worker's shared-memory ring (no copy through the service), with the codes the worker read in it
  outlined (the worker's note beside the frame in the ring).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, Response

from sorter.controller.config.vision import noread_dir

_FILE = re.compile(r"^[A-Za-z0-9_-]{1,200}\.jpg$")


def _dirs(svc) -> list[Path]:
    dirs = [noread_dir(svc.cfg)] + [noread_dir(svc.cfg, c) for c in svc.cfg.cameras]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def list_noreads(dirs: list[Path], limit: int = 200) -> list[dict]:
    files = []
    for d in dirs:
        if not d.is_dir():
            continue
        for p in d.glob("*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
    out = []
    for mtime, size, p in sorted(files, key=lambda x: -x[0])[:limit]:
        parts = p.stem.split("_")
        run_id, parcel_id = (parts[0], parts[1]) if len(parts) >= 4 else ("", "")
        camera = "_".join(parts[2:-1]) if len(parts) >= 4 else ""
        out.append({"file": p.name, "run_id": run_id, "parcel_id": parcel_id, "camera": camera, "bytes": size,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mtime)), "url": f"/api/noreads/{p.name}"})
    return out


def router(svc) -> APIRouter | None:
    r = APIRouter(tags=["cameras"])

    @r.get("/api/noreads", summary="No-read images kept for keying in by hand, newest first")
    def noreads(limit: int = Query(200, ge=1, le=5000)) -> list[dict]:
        return list_noreads(_dirs(svc), limit)

    @r.get("/api/noreads/{file}", summary="One no-read image (JPEG)", response_class=FileResponse)
    def noread_file(file: str):
        if not _FILE.match(file):
            raise HTTPException(400, "bad file name")
        for d in _dirs(svc):
            p = (d / file).resolve()
            if p.parent == d and p.is_file():
                return FileResponse(p, media_type="image/jpeg")
        raise HTTPException(404, "no such image")

    @r.get("/api/cameras/{name}/last.jpg", summary="The camera's last decoded frame, the codes read in it outlined (JPEG)")
    def last_jpg(name: str, width: int = Query(1024, ge=64, le=10000)):
        import cv2

        from sorter.vision.outline import outline
        from sorter.vision.ring import read_latest_noted

        cams = {c.get("name"): c for c in svc.status().get("cameras", [])}
        if name not in cams:
            raise HTTPException(404, "no such camera")
        shm = cams[name].get("shm") or ""
        got = read_latest_noted(shm) if re.match(r"^sorter-\d+-[A-Za-z0-9_-]+-\d+$", shm) else None
        if got is None:
            raise HTTPException(404, "no frame yet")
        _, img, note = got
        codes = _codes(note)
        if codes:
            img = outline(img, codes)
        if img.shape[1] > width:
            img = cv2.resize(img, (width, max(1, int(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise HTTPException(500, "cannot encode the frame")
        return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return r


def _codes(note: bytes | None) -> list:
    """The worker's note of a frame: [[symbology, text, polygon], ...]; anything else reads as none
    (the note is another process's bytes)."""
    if not note:
        return []
    try:
        got = json.loads(note)
        return [(str(s), str(t), [(int(x), int(y)) for x, y in poly]) for s, t, poly in got]
    except (ValueError, TypeError):
        return []
