"""Calibration (pixel -> belt mm): chessboard target under perspective, two points, atomic files
with backups, the `sorter calibrate` / `sorter camera test` commands, and the camera API."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from sorter.vision.geometry import (Calibration, CalibrationError, chessboard_image, from_chessboard, from_two_points)

ROOT = Path(__file__).resolve().parent.parent
SQUARE_MM = 20.0
SQUARE_PX = 40  # in the target image: 0.5 mm per target pixel


def target_in_frame(tilt: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """A 9x6 chessboard seen in perspective in a 1024x768 frame. Returns (frame, W) with W mapping
    target-image pixels to frame pixels."""
    board = chessboard_image((9, 6), SQUARE_PX)
    h, w = board.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[260, 200], [260 + w * 1.1, 200 + w * tilt], [240 + w * 1.12, 230 + h * 1.05 + w * tilt],
                      [250, 210 + h * 0.98]])
    W = cv2.getPerspectiveTransform(src, dst)
    frame = np.full((768, 1024), 40, np.uint8)
    cv2.warpPerspective(board, W, (1024, 768), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
    frame = cv2.GaussianBlur(frame, (0, 0), 0.7)
    return frame, W


def board_mm(W: np.ndarray, frame_pts) -> np.ndarray:
    p = cv2.perspectiveTransform(np.float64(frame_pts).reshape(-1, 1, 2), np.linalg.inv(W)).reshape(-1, 2)
    return (p - SQUARE_PX) * (SQUARE_MM / SQUARE_PX)  # the first inner corner is one square in


def test_chessboard_calibration_measures_belt_distances_under_perspective():
    frame, W = target_in_frame()
    cal = from_chessboard(frame, (9, 6), SQUARE_MM, "right", camera="top")
    assert cal.residual_mm < 0.3
    pts = [(300, 260), (640, 300), (520, 420), (700, 380)]
    got = cal.to_plane(pts)
    truth = board_mm(W, pts)
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            assert np.linalg.norm(got[i] - got[j]) == pytest.approx(np.linalg.norm(truth[i] - truth[j]), abs=0.6)
    # offset along the belt: zero at the view's centre, + to the right (downstream), in mm
    assert cal.offset_mm([(512, 384)]) == pytest.approx(0, abs=1e-6)
    a, b = cal.offset_mm([(400, 300)]), cal.offset_mm([(600, 300)])
    assert b > a
    t = board_mm(W, [(400, 300), (600, 300)])
    along = np.array(cal.along)
    assert b - a == pytest.approx(float((t[1] - t[0]) @ along), abs=0.6)
    # the same camera delivering half-size frames: same belt positions
    assert cal.offset_mm([(300, 150)], frame_hw=(384, 512)) == pytest.approx(cal.offset_mm([(600, 300)]), abs=1e-6)


def test_no_target_is_a_clear_error():
    with pytest.raises(CalibrationError, match="chessboard"):
        from_chessboard(np.full((480, 640), 128, np.uint8), (9, 6), 20)


def test_two_points_and_direction():
    cal = from_two_points((100, 400), 1000.0, (900, 400), 600.0, (1024, 768))  # belt moves left
    assert cal.offset_mm([(512, 400)]) == pytest.approx(0, abs=1e-6)
    assert cal.offset_mm([(112, 400)]) == pytest.approx(200.0)  # 400 px left = 200 mm downstream
    with pytest.raises(CalibrationError):
        from_two_points((1, 1), 0, (2, 1), 10, (1024, 768))


def test_atomic_save_keeps_a_dated_backup(tmp_path):
    p = tmp_path / "calibration" / "top.json"
    c1 = from_two_points((0, 0), 0, (100, 0), 50, (1024, 768), camera="top")
    assert c1.save(p) is None
    c2 = from_two_points((0, 0), 0, (100, 0), 80, (1024, 768), camera="top")
    backup = c2.save(p)
    assert backup.exists() and backup.name.startswith("top.json.") and backup.suffix == ".bak"
    assert Calibration.load(backup).meta["mm_per_px"] == 0.5
    assert Calibration.load(p).meta["mm_per_px"] == 0.8
    assert not list(p.parent.glob(".*.tmp"))
    p.write_text('{"H": [[1, 0], [0, 1]]}')
    with pytest.raises(CalibrationError, match="top.json"):
        Calibration.load(p)


@pytest.fixture
def line_config(tmp_path) -> Path:
    shutil.copy(ROOT / "config/wenling-routes.yaml", tmp_path)
    text = (ROOT / "config/wenling-line1.yaml").read_text(encoding="utf-8")
    (tmp_path / "frames").mkdir()
    text = text.replace("{name: top, source: sim://top, position_mm: 1100}",
                        "{name: top, source: frames, position_mm: 1100}")
    cfg = tmp_path / "line.yaml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_sorter_calibrate_and_camera_test(line_config, tmp_path, capsys):
    from sorter.controller.cli.main import main

    frame, W = target_in_frame()
    cv2.imwrite(str(tmp_path / "target.png"), frame)
    assert main(["calibrate", "chessboard", "top", "--config", str(line_config), "--image",
                 str(tmp_path / "target.png"), "--square-mm", str(SQUARE_MM)]) == 0
    out = tmp_path / "var" / "calibration" / "top.json"  # the data folder: var/ beside the config
    assert json.loads(out.read_text())["method"] == "target"
    assert "written to" in capsys.readouterr().out
    # a second calibration keeps the first as a backup
    assert main(["calibrate", "points", "top", "--config", str(line_config), "--point", "100,384=0",
                 "--point", "900,384=400", "--frame-size", "1024x768"]) == 0
    assert len(list(out.parent.glob("top.json.*.bak"))) == 1
    # the config now picks the calibration up; `camera test` reads a frame from the folder source
    from sorter.vision.labels import LabelSpec, render_frame, render_label
    rng = np.random.default_rng(3)
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), render_frame(render_label(LabelSpec("SF1234567890123"), rng), rng))
    capsys.readouterr()
    assert main(["camera", "test", "top", "--config", str(line_config), "--frames", "1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["calibrated"] and rep["kind"] == "folder" and rep["frames"] == 1
    (r,) = [r for r in rep["reads"] if r["symbology"] == "code128"]
    cx = np.mean([p[0] for p in r["polygon"]])
    assert r["text"] == "SF1234567890123" and r["offset_mm"] == pytest.approx((cx - 512) * 0.5, abs=1)


def test_camera_api_noreads_and_last_frame(tmp_path):
    import os

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sorter.controller.api.vision import router
    from sorter.controller.config.vision import CameraConfig
    from sorter.vision.ring import FrameRing

    d = tmp_path / "noreads"
    d.mkdir()
    img = np.full((100, 120), 200, np.uint8)
    (d / "run1_7_top_0.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    ring = FrameRing(f"sorter-{os.getpid()}-top-9", 120 * 100, 4)
    slot_img = ring.alloc(100, 120)
    slot_img[...] = 77
    ring.commit(1.0)
    ring.release(ring.take(0.1)[0])
    svc = types.SimpleNamespace(
        cfg=types.SimpleNamespace(records=types.SimpleNamespace(database=tmp_path / "records.db"),
                                  cameras=[CameraConfig(name="top", source="sim://top", position_mm=1000)]),
        status=lambda: {"cameras": [{"name": "top", "shm": ring.name}]})
    app = FastAPI()
    app.include_router(router(svc))
    try:
        with TestClient(app) as c:
            lst = c.get("/api/noreads").json()
            assert [(x["file"], x["parcel_id"], x["camera"]) for x in lst] == [("run1_7_top_0.jpg", "7", "top")]
            r = c.get("/api/noreads/run1_7_top_0.jpg")
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            assert c.get("/api/noreads/..%2Frecords.db").status_code in (400, 404)
            assert c.get("/api/noreads/nope.jpg").status_code == 404
            r = c.get("/api/cameras/top/last.jpg")
            assert r.status_code == 200
            got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)
            assert got.shape == (100, 120) and abs(int(got.mean()) - 77) <= 2
            assert c.get("/api/cameras/side/last.jpg").status_code == 404
            # a frame in which the worker read a code: its note rides with it, and the code is outlined
            slot_img = ring.alloc(100, 120)
            slot_img[...] = 77
            ring.commit(2.0)
            note = json.dumps([["code128", "SF1423456789012", [[20, 30], [90, 30], [90, 60], [20, 60]]]]).encode()
            ring.release(ring.take(0.1)[0], note=note)
            got = cv2.imdecode(np.frombuffer(c.get("/api/cameras/top/last.jpg").content, np.uint8), cv2.IMREAD_COLOR)
            b, g, r_ = (got[..., k].astype(int) for k in range(3))
            green = g - np.maximum(b, r_) > 60
            edge = [(y, x) for x in range(25, 86, 5) for y in (30, 60)] + [(y, x) for y in range(35, 56, 5) for x in (20, 90)]
            assert sum(bool(green[y - 1:y + 2, x - 1:x + 2].any()) for y, x in edge) >= 0.9 * len(edge)
            assert not green[38:53, 28:82].any()   # inside the code: the frame as it was
            # the next frame read nothing: no stale outline from the one before
            ring.alloc(100, 120)[...] = 77
            ring.commit(3.0)
            ring.release(ring.take(0.1)[0])
            got = cv2.imdecode(np.frombuffer(c.get("/api/cameras/top/last.jpg").content, np.uint8), cv2.IMREAD_COLOR)
            assert not ((got[..., 1].astype(int) - got[..., 0]) > 60).any()
    finally:
        ring.close()
