"""The technician's camera set-up page (/commission, controller/api/commission.py) over real HTTP
(the service's own ApiServer), on a frame in a real shared-memory frame ring as a camera worker
leaves it, and in headless Chromium (a screenshot kept in the test's tmp dir).

The service object is a stand-in with the parts the API reads of the service (config, status,
record store, token, the cameras' command queues): no camera process can run a real camera here."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import time

import cv2
import httpx
import numpy as np
import pytest
import segno

from sorter.controller.records.store import RecordStore
from sorter.vision.commission import card
from sorter.vision.ring import FrameRing

TOKEN = "tech-token-1"
EVIL = '<img src=x onerror=alert(1)>'
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and os.path.exists(p)), None)


def _frame() -> np.ndarray:
    quad = [[300, 60], [1180, 110], [1250, 1150], [250, 1120]]
    src = np.float32([[0, 0], [210, 0], [210, 297], [0, 297]])
    m = cv2.getPerspectiveTransform(src, np.float32(quad)) @ np.diag([1 / card.PX_PER_MM, 1 / card.PX_PER_MM, 1])
    img = cv2.warpPerspective(card.render_card(), m, (1600, 1200), flags=cv2.INTER_AREA, borderValue=60)
    qr = np.kron(1 - np.asarray(segno.make_qr(EVIL, error="m").matrix, np.uint8), np.ones((5, 5), np.uint8)) * 255
    img[1000:1000 + qr.shape[0], 1300:1300 + qr.shape[1]] = qr
    return img


class ServiceParts:
    """What the API uses of the service."""

    def __init__(self, cfg, store, ring_name):
        self.cfg, self.store, self.token = cfg, store, TOKEN
        self.camera_cmds = {"top": queue.Queue(maxsize=4)}
        self.ring_name = ring_name

    def status(self) -> dict:
        return {"line": {"name": "test", "state": "running"}, "cameras": [
            {"name": "top", "alive": True, "fps": 11.8, "shm": self.ring_name, "kind": "usb", "state": "up",
             "calibrated": False, "properties": {"exposure": {"asked": 50, "set": True, "got": 48.0, "accepted": False},
                                                 "gain": {"asked": 4, "set": True, "got": 4.0, "accepted": True}}}]}

    # the Control protocol create_app is handed
    def set_chute_enabled(self, chute_id, enabled): return True
    def pause(self): pass
    def resume(self): pass
    def reload_routes(self, force=False): return True, "ok"


@pytest.fixture
def served(example_config, tmp_path):
    from sorter.controller.api.server import ApiServer

    cfg = example_config()
    img = _frame()
    ring = FrameRing(f"sorter-{os.getpid()}-top-9", img.size, 4)
    out = ring.alloc(*img.shape)
    out[...] = img
    ring.commit(time.monotonic())
    slot, _, _ = ring.take(1.0)
    ring.release(slot)  # decoded: now the ring's "latest" frame, as a worker leaves it
    store = RecordStore(tmp_path / "records.db")
    svc = ServiceParts(cfg, store, ring.name)
    api = ApiServer(svc, "127.0.0.1", 0)
    api.start()
    try:
        yield svc, f"http://127.0.0.1:{api.port}"
    finally:
        api.stop()
        store.close()
        ring.close()


def test_view_measures_the_latest_frame(served):
    svc, url = served
    m = httpx.get(url + "/api/commission/top/view", timeout=60).json()
    codes = {c["text"]: c for c in m["codes"]}
    assert {"CARD128-20MIL", "SORTER TEST CARD QR 40MIL", "SORTER-CARD-DM-40MIL", EVIL} <= set(codes)
    assert 3.5 < codes["SORTER TEST CARD QR 40MIL"]["ppm"] < 5.0
    assert m["focus"] > 0 and m["focus_best"] >= m["focus"] and m["fps"] == 11.8
    assert len(m["histogram"]) == 32 and 0 <= m["saturated_share"] < 1
    assert m["blur"]["max_exposure_ms"] > 0 and m["blur"]["blur_modules"] is None  # no exposure given yet
    jpg = httpx.get(url + "/api/commission/top/view.jpg", timeout=60)
    assert jpg.headers["content-type"] == "image/jpeg"
    annotated = cv2.imdecode(np.frombuffer(jpg.content, np.uint8), cv2.IMREAD_COLOR)
    assert annotated.shape[2] == 3 and (annotated[..., 1].astype(int) - annotated[..., 0]).max() > 100  # green outlines
    assert httpx.get(url + "/api/commission/nosuch/view").status_code == 404
    page = httpx.get(url + "/commission")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and 'src="/static/commission.js"' in page.text


def test_controls_need_the_technician(served, tmp_path):
    svc, url = served
    for path, body in (("snapshot", {}), ("properties", {"exposure": 20}), ("focus/reset", {}),
                       ("roi", {"x": 0, "y": 0, "w": 10, "h": 10})):
        assert httpx.post(f"{url}/api/commission/top/{path}", json=body).status_code == 401
        assert httpx.post(f"{url}/api/commission/top/{path}", json=body,
                          headers={"Authorization": "Bearer wrong"}).status_code in (401, 429)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    time.sleep(1.1)  # the wrong guesses' block (guard.TokenGuard) is over
    r = httpx.post(url + "/api/commission/top/properties", json={"exposure": 20, "gain": 2, "exposure_ms": 0.5},
                   headers=auth)
    assert r.status_code == 200, r.text
    cmd = svc.camera_cmds["top"].get_nowait()
    assert type(cmd).__name__ == "SetCameraProperties" and cmd.properties == {"exposure": 20.0, "gain": 2.0}
    m = httpx.get(url + "/api/commission/top/view", timeout=60).json()
    assert m["blur"]["exposure_ms"] == 0.5 and m["blur"]["blur_modules"] is not None
    bad = httpx.post(url + "/api/commission/top/properties", json={"gain": -1}, headers=auth)
    assert bad.status_code == 422 and "gain" in bad.text
    snap = httpx.post(url + "/api/commission/top/snapshot", headers=auth, timeout=60).json()
    assert cv2.imread(snap["file"], cv2.IMREAD_GRAYSCALE).shape == (1200, 1600)
    roi = httpx.post(url + "/api/commission/top/roi", json={"x": 0, "y": 0, "w": 10, "h": 10}, headers=auth)
    assert roi.status_code == 409 and "calibrate" in roi.json()["detail"]  # no calibration to keep it in yet


def test_a_camera_worker_applies_properties_and_reports_what_it_accepted(tmp_path):
    """SetCameraProperties reaching a real worker with a real OpenCV source (a video file: a file
    takes no exposure, and says so)."""
    from sorter.controller.config.vision import CameraConfig
    from sorter.messages import SetCameraProperties
    from sorter.vision.sources import open_source
    from sorter.vision.worker import CameraWorker

    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240), False)
    for _ in range(3):
        vw.write(np.zeros((240, 320), np.uint8))
    vw.release()
    out = queue.Queue()
    w = CameraWorker("top", str(video), ["code128"], out,
                     config=CameraConfig(name="top", source=str(video), position_mm=1200))
    w.src = open_source(str(video), {})
    w.src.open()
    try:
        w.on_command(SetCameraProperties({"exposure": 30.0}))
    finally:
        w.src.close()
    got = w.accepted["exposure"]
    assert got["asked"] == 30.0 and got["accepted"] is False
    health = out.get_nowait()
    assert health.health["properties"]["exposure"] == got
    w.src = None
    w.on_command(SetCameraProperties({"gain": 1.0}))
    assert w.accepted["gain"]["accepted"] is False and "no settings" in w.accepted["gain"]["why"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_page_shows_the_overlays_in_headless_chromium(served, tmp_path):
    _, url = served
    httpx.get(url + "/api/commission/top/view", timeout=60)  # analysed once: the page's first look is quick
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=6000", "--window-size=1400,1000"]
    dom = subprocess.run(base + ["--dump-dom", url + "/commission"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "SORTER TEST CARD QR 40MIL" in dom and "CARD128-20MIL" in dom
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "<img src=x" not in dom  # text, never markup
    assert 'id="focus">—<' not in dom and "ms" in dom  # the measures came in
    assert "exposure" in dom and ">48" in dom  # what the camera accepted, per property
    shot = tmp_path / "commission.png"
    subprocess.run(base + [f"--screenshot={shot}", url + "/commission"], capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1000, 1400)
    # the camera image is drawn (not an empty box): the left part of the page varies
    assert img[100:700, 50:800].std() > 20
