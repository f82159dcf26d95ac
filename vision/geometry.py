"""Label geometry: a camera's calibration, pixel -> belt millimetres.

A calibration is a homography ``H`` from frame pixels to a plane in millimetres (the printed
target's plane, lying on the belt), the unit vector ``along`` in that plane pointing downstream, and
the plane point of the view's centre. A read's ``offset_mm`` is the distance along the belt from
the camera's centre line (where ``cameras[].position_mm`` is) to the read, positive downstream.

Two ways to get one (``tools/calibrate.py``):

* **target**: a printed chessboard of known square size laid flat on the belt, photographed by the
  camera; ``cv2.findChessboardCorners`` + ``cv2.findHomography`` (perspective handled);
* **two points**: two pixels whose belt positions are known (e.g. two marks a tape measure apart,
  along the belt): scale and direction, for a camera looking straight down.

The file (JSON, machine-owned) is written atomically (temp file, fsync, rename) and the previous
one is kept as a dated backup.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


class CalibrationError(Exception):
    pass


@dataclass
class Calibration:
    H: np.ndarray  # 3x3, pixel (x, y, 1) -> plane mm (homogeneous)
    along: tuple[float, float]  # unit vector in the plane, downstream
    centre: tuple[float, float]  # plane mm of the view's centre (the camera's centre line)
    frame_size: tuple[int, int]  # width, height the calibration was made for
    method: str = "target"
    camera: str = ""
    created: str = ""
    residual_mm: float | None = None
    meta: dict = field(default_factory=dict)

    # -------------------------------------------------------------------------------- mapping
    def to_plane(self, pts) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(p, self.H).reshape(-1, 2)

    def offset_mm(self, polygon, frame_hw: tuple[int, int] | None = None) -> float | None:
        """Belt offset (mm, + downstream) of a code's centre from the camera's centre line."""
        if polygon is None or len(polygon) == 0:
            return None
        p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        c = p.mean(axis=0)
        if frame_hw is not None:
            h, w = frame_hw
            fw, fh = self.frame_size
            if (w, h) != (fw, fh) and fw and fh:  # same camera at another resolution: same view, scaled
                c = c * (fw / w, fh / h)
        q = self.to_plane(c)[0]
        return float((q[0] - self.centre[0]) * self.along[0] + (q[1] - self.centre[1]) * self.along[1])

    # -------------------------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {"version": 1, "camera": self.camera, "method": self.method, "created": self.created,
                "frame_size": list(self.frame_size), "H": [[float(v) for v in row] for row in self.H],
                "along": list(self.along), "centre": list(self.centre), "residual_mm": self.residual_mm,
                "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        try:
            H = np.asarray(d["H"], dtype=np.float64)
            along = tuple(float(v) for v in d["along"])
            centre = tuple(float(v) for v in d["centre"])
            size = tuple(int(v) for v in d["frame_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"not a calibration: {exc}") from exc
        if H.shape != (3, 3) or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
            raise CalibrationError("H must be an invertible 3x3 matrix")
        n = math.hypot(*along)
        if len(along) != 2 or not 0.99 < n < 1.01:
            raise CalibrationError("along must be a unit vector")
        return cls(H, along, centre, size, d.get("method", ""), d.get("camera", ""), d.get("created", ""),
                   d.get("residual_mm"), d.get("meta") or {})

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"{path}: {exc}") from exc
        try:
            return cls.from_json(d)
        except CalibrationError as exc:
            raise CalibrationError(f"{path}: {exc}") from exc

    def save(self, path: str | Path) -> Path | None:
        """Write atomically; the previous file (if any) is kept as PATH.YYYYmmdd-HHMMSS.bak.
        Returns the backup's path."""
        return atomic_write_json(Path(path), self.to_json())


def atomic_write_json(path: Path, data: dict) -> Path | None:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_write_text(path: Path, text: str) -> Path | None:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, rename); the previous file is
    kept as PATH.YYYYmmdd-HHMMSS.bak. Returns the backup's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        k = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{k}.bak")
            k += 1
        shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return backup


def _finish(H: np.ndarray, frame_size: tuple[int, int], downstream: str | tuple[float, float], **kw) -> Calibration:
    w, h = frame_size
    d_img = DIRECTIONS[downstream] if isinstance(downstream, str) else downstream
    ctr = np.array([[w / 2.0, h / 2.0]])
    step = ctr + np.array([d_img]) * (0.05 * max(w, h))
    pc = cv2.perspectiveTransform(ctr.reshape(-1, 1, 2), H).reshape(2)
    ps = cv2.perspectiveTransform(step.reshape(-1, 1, 2), H).reshape(2)
    v = ps - pc
    n = float(np.hypot(*v))
    if n < 1e-9:
        raise CalibrationError("degenerate calibration (no scale along the belt)")
    return Calibration(H, (float(v[0] / n), float(v[1] / n)), (float(pc[0]), float(pc[1])), (int(w), int(h)),
                       created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **kw)


def chessboard_corners(gray: np.ndarray, inner: tuple[int, int]) -> np.ndarray | None:
    """The chessboard's inner corners to sub-pixel (OpenCV's order), or None when it is not found."""
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, tuple(inner), flags)
    if not found:
        try:  # the sector-based detector finds boards the classic one misses (blur, perspective)
            found, corners = cv2.findChessboardCornersSB(gray, tuple(inner))
        except cv2.error:
            found = False
    if not found:
        return None
    return cv2.cornerSubPix(gray, corners.astype(np.float32), (5, 5), (-1, -1),
                            (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01))


def from_chessboard(gray: np.ndarray, inner: tuple[int, int], square_mm: float,
                    downstream: str | tuple[float, float] = "right", camera: str = "") -> Calibration:
    """Calibrate from a frame showing a chessboard of ``inner`` = (columns, rows) inner corners and
    ``square_mm`` squares lying flat on the belt. ``downstream``: the image direction the belt moves
    (right, left, down, up)."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    cols, rows = inner
    corners = chessboard_corners(gray, inner)
    if corners is None:
        raise CalibrationError(f"no {cols}x{rows} chessboard (inner corners) found in the image")
    obj = np.array([[c * square_mm, r * square_mm] for r in range(rows) for c in range(cols)], np.float64)
    img = corners.reshape(-1, 2).astype(np.float64)
    H, _ = cv2.findHomography(img, obj, 0)
    if H is None:
        raise CalibrationError("could not fit a homography to the chessboard corners")
    res = cv2.perspectiveTransform(img.reshape(-1, 1, 2), H).reshape(-1, 2) - obj
    resid = float(np.sqrt((res ** 2).sum(1)).mean())
    h, w = gray.shape[:2]
    return _finish(H, (w, h), downstream, method="target", camera=camera, residual_mm=round(resid, 3),
                   meta={"inner": [cols, rows], "square_mm": square_mm,
                         "mm_per_px": round(square_mm * (cols - 1) / float(np.hypot(*(img[cols - 1] - img[0]))), 4)})


def from_two_points(p1: tuple[float, float], mm1: float, p2: tuple[float, float], mm2: float,
                    frame_size: tuple[int, int], camera: str = "") -> Calibration:
    """Calibrate a camera looking straight down from two pixels at known belt positions (mm, larger
    = further downstream). The belt direction is the direction from the smaller to the larger mm."""
    a, b = np.asarray(p1, float), np.asarray(p2, float)
    dpx = float(np.hypot(*(b - a)))
    dmm = abs(mm2 - mm1)
    if dpx < 5 or dmm <= 0:
        raise CalibrationError("the two points must be distinct, at least 5 px apart, at different belt positions")
    s = dmm / dpx
    u = (b - a) / dpx if mm2 > mm1 else (a - b) / dpx
    H = np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]], dtype=np.float64)
    return _finish(H, frame_size, (float(u[0]), float(u[1])), method="two_points", camera=camera,
                   meta={"points": [list(p1), mm1, list(p2), mm2], "mm_per_px": round(s, 4)})


def chessboard_image(inner: tuple[int, int], square_px: int, margin_px: int | None = None) -> np.ndarray:
    """A printable chessboard with ``inner`` inner corners (cols, rows)."""
    cols, rows = inner
    m = square_px if margin_px is None else margin_px
    img = np.full(((rows + 1) * square_px + 2 * m, (cols + 1) * square_px + 2 * m), 255, np.uint8)
    for r in range(rows + 1):
        for c in range(cols + 1):
            if (r + c) % 2 == 0:
                y, x = m + r * square_px, m + c * square_px
                img[y : y + square_px, x : x + square_px] = 0
    return img
