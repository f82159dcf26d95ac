"""`sorter calibrate …` / tools/calibrate.py as a technician runs them (subprocesses on the example
config in a temporary folder): the bugs the issue found, the test card, a calibration from an image
of it written atomically with a dated backup, and the commissioning report from an image folder and
from a video file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno

from sorter.vision.commission import card
from sorter.vision.geometry import Calibration

ROOT = Path(__file__).resolve().parents[1]


def sorter(*args, cwd=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "sorter.controller.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def tool(*args, timeout=180):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "calibrate.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def line(config_dir, line_config_file):
    return line_config_file(config_dir)


def _card_image(quad=((300, 60), (1180, 110), (1250, 1150), (250, 1120)), size=(1600, 1200), blur=0.0):
    src = np.float32([[0, 0], [210, 0], [210, 297], [0, 297]])
    mm_to_img = cv2.getPerspectiveTransform(src, np.float32(quad))
    img = cv2.warpPerspective(card.render_card(), mm_to_img @ np.diag([1 / card.PX_PER_MM, 1 / card.PX_PER_MM, 1]),
                              size, flags=cv2.INTER_AREA, borderValue=60)
    return cv2.GaussianBlur(img, (0, 0), blur) if blur else img


# ------------------------------------------------------------------------------ the reported bugs
def test_check_takes_grab_and_image(line, tmp_path):
    r = tool("check", "top", "--config", str(line), "--grab")
    assert "unrecognized arguments" not in r.stderr
    # with a frame of the test card: calibrate, then check the same camera against a new frame
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), _card_image())
    assert sorter("calibrate", "from-card", "top", "--config", str(line), "--image", str(frame)).returncode == 0
    ok = sorter("calibrate", "check", "top", "--config", str(line), "--image", str(frame))
    assert ok.returncode == 0 and "still holds" in ok.stdout, ok.stdout + ok.stderr
    moved = tmp_path / "moved.png"  # the camera pulled back: everything smaller
    cv2.imwrite(str(moved), _card_image(((450, 200), (1080, 235), (1130, 980), (420, 960))))
    bad = sorter("calibrate", "check", "top", "--config", str(line), "--image", str(moved))
    assert bad.returncode == 1 and "does NOT hold" in bad.stdout, bad.stdout + bad.stderr


def test_grab_from_a_simulated_camera_is_one_line_naming_the_cause(line):
    for cmd in (("chessboard", "top", "--grab", "--square-mm", "20"), ("from-card", "top", "--grab"),
                ("check", "top", "--grab")):
        r = sorter("calibrate", *cmd, "--config", str(line))
        assert r.returncode != 0
        assert "Traceback" not in r.stderr, r.stderr
        if cmd[0] != "check":  # check first says there is no calibration yet
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "sim://top" in lines[0] and "--image" in lines[0], r.stderr


def test_default_target_fits_a4_and_a_larger_one_is_refused(tmp_path):
    r = sorter("calibrate", "target", str(tmp_path / "board.png"))
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(tmp_path / "board.png"), cv2.IMREAD_GRAYSCALE)
    mm = sorted(np.array(img.shape) / 300 * 25.4)
    assert mm[0] <= 200 and mm[1] <= 287, mm  # A4 less 5 mm margins, at 100 %
    big = sorter("calibrate", "target", str(tmp_path / "big.png"), "--square-mm", "25")
    assert big.returncode != 0 and "larger than A4" in big.stderr and "--square-mm" in big.stderr
    assert not (tmp_path / "big.png").exists()


def test_readme_documents_image_and_fitting_target():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sect = text[text.index("## Commissioning a camera"):]
    sect = sect[: sect.index("\n## ", 5)]
    assert "--image" in sect and "calibrate card" in sect and "--square-mm 25" not in sect


# ------------------------------------------------------------------------------ the test card
def test_card_command_and_calibration_from_an_image_of_it(line, tmp_path):
    r = sorter("calibrate", "card", "--output", str(tmp_path / "card"))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "card").iterdir()} >= {"test-card.pdf", "test-card.png", "test-card.json"}
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), _card_image())
    dry = sorter("calibrate", "from-card", "top", "--config", str(line), "--image", str(frame), "--dry-run", "--json")
    got = json.loads(dry.stdout)
    assert dry.returncode == 1 and got["missing"] == ["code128_10mil"]  # the 10 mil code: too small here
    assert 0.2 < got["mm_per_px"] < 0.3
    cal_file = line.parent / "var" / "calibration" / "top.json"
    assert not cal_file.exists()  # --dry-run wrote nothing
    out = sorter("calibrate", "from-card", "top", "--config", str(line), "--image", str(frame))
    assert out.returncode == 0, out.stderr
    written = [p for p in line.parent.rglob("top.json") if "calibration" in p.parts]
    assert len(written) == 1, written
    cal = Calibration.load(written[0])
    assert cal.method == "test_card" and "code128_20mil" in cal.meta["card"]["codes_read"]
    again = sorter("calibrate", "from-card", "top", "--config", str(line), "--image", str(frame))
    assert again.returncode == 0 and "previous calibration kept" in again.stdout
    assert len(list(written[0].parent.glob("top.json.*.bak"))) == 1
    assert not list(written[0].parent.glob(".*.tmp"))


# ------------------------------------------------------------------------------ the report
def _frames(folder: Path, n: int = 6) -> list[np.ndarray]:
    """A stopped test parcel under the camera: the card, in focus, then defocused for the last two,
    and a QR code whose text is markup."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        img = _card_image(blur=0.0 if k < n - 2 else 3.0)
        qr = segno.make_qr("<script>alert(1)</script>", error="m")
        m = np.kron(1 - np.asarray(qr.matrix, np.uint8), np.ones((5, 5), np.uint8)) * 255
        img[1000:1000 + m.shape[0], 1300:1300 + m.shape[1]] = m
        cv2.imwrite(str(folder / f"f{k:03d}.png"), img)
        out.append(img)
    return out


def _check_report(out: Path, n: int):
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["frames"] == n
    codes = {c["text"]: c for c in rep["codes"]}
    assert codes["CARD128-20MIL"]["read_share"] >= (n - 2) / n
    assert codes["SORTER TEST CARD QR 40MIL"]["read_share"] >= (n - 2) / n
    assert codes["<script>alert(1)</script>"]["frames_read"] >= n - 2
    assert min(c["read_share"] for c in rep["codes"]) < 1  # the defocused frames lose reads: it shows
    assert 2.0 < codes["SORTER TEST CARD QR 40MIL"]["ppm_median"] < 6.0
    focus = [f["focus"] for f in rep["per_frame"]]
    assert min(focus[:n - 2]) > 2 * max(focus[n - 2:])  # defocused frames rank below
    assert rep["exposure"]["max_exposure_ms"] == pytest.approx(0.33 / 2.0, rel=1e-3)
    assert rep["exposure"]["blur_modules"] == pytest.approx(2.0 * 0.5 / 0.33, rel=1e-3)
    assert any("shorten" in a for a in rep["exposure"]["advice"])
    pngs = sorted(out.glob("frame-*.png"))
    assert len(pngs) == n and cv2.imread(str(pngs[0])).shape[2] == 3
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "frame-0001.png" in html
    return rep


def test_report_from_an_image_folder(line, tmp_path):
    _frames(tmp_path / "frames")
    r = sorter("calibrate", "report", "top", "--config", str(line), "--images", str(tmp_path / "frames"),
               "--output", str(tmp_path / "out"), "--exposure-ms", "0.5")
    assert r.returncode == 0, r.stderr
    rep = _check_report(tmp_path / "out", 6)
    assert rep["field_of_view_mm"] is None  # not calibrated yet


def test_report_from_a_video_file_after_calibrating(line, tmp_path):
    frames = _frames(tmp_path / "frames")
    assert sorter("calibrate", "from-card", "top", "--config", str(line), "--image",
                  str(tmp_path / "frames" / "f000.png")).returncode == 0
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1600, 1200), False)
    assert vw.isOpened()
    for img in frames:
        vw.write(img)
    vw.release()
    r = tool("report", "top", "--config", str(line), "--video", str(video), "--output", str(tmp_path / "out"),
             "--exposure-ms", "0.5")
    assert r.returncode == 0, r.stderr
    rep = _check_report(tmp_path / "out", 6)
    fov = rep["field_of_view_mm"]
    # the frame is 1600 x 1200 px at ~0.25 mm/px on the card's plane
    assert 300 < fov["along_mm"] < 480 and 250 < fov["across_mm"] < 420, fov
    assert rep["calibrated"] and rep["latency_ms"] == 0


# ------------------------------------------------------------------------------ check-config
def test_check_config_validates_every_calibration_file(line, tmp_path):
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), _card_image())
    assert sorter("calibrate", "from-card", "top", "--config", str(line), "--image", str(frame)).returncode == 0
    ok = sorter("check-config", str(line))
    assert ok.returncode == 0 and "top (sim://top, calibrated)" in ok.stdout, ok.stdout + ok.stderr
    cal_file = next(p for p in line.parent.rglob("top.json") if "calibration" in p.parts)
    good = cal_file.read_text(encoding="utf-8")
    data = json.loads(good)
    data["meta"]["latency_ms"] = -5
    data["meta"]["roi"] = {"x": 0, "y": 0, "w": 99999, "h": 10}
    cal_file.write_text(json.dumps(data), encoding="utf-8")
    bad = sorter("check-config", str(line))
    assert bad.returncode == 2
    assert f"cameras.0.calibration: {cal_file}: meta.latency_ms -5" in bad.stderr, bad.stderr
    assert "meta.roi" in bad.stderr
    cal_file.write_text("{not json", encoding="utf-8")
    broken = sorter("check-config", str(line))
    assert broken.returncode == 2 and "cameras.0.calibration" in broken.stderr and "Traceback" not in broken.stderr
