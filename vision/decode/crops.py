"""Geometry between a frame and what the engines read: a candidate cut out with its bars vertical
(and the affine map back), points and polygons mapped to frame pixels, and where a region lies
(inside a code already read, spanned by one, at the frame's edge, on another pyramid level).

Every attempt of the retry ladder resamples through here, so a polygon is mapped back the same way
whichever attempt read it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import ONE_D, Code


def _deskewed_crop(gray: np.ndarray, cand: _Cand, scale: float = 1.0, pad: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Cut the candidate out rotated so that its bars are vertical (``pad``: margin along the bar
    normal, a fraction of its length). Returns (crop, M) where M maps crop pixel coordinates to frame
    coordinates (2x3)."""
    pad_u = max(40.0, pad * cand.length)
    pad_v = max(10.0, 0.1 * cand.height)
    cw = int(math.ceil((cand.length + 2 * pad_u) * scale))
    ch = int(math.ceil((cand.height + 2 * pad_v) * scale))
    c, s = math.cos(cand.theta), math.sin(cand.theta)
    k = 1.0 / scale
    # frame = centre + (x - cw/2) * k * u + (y - ch/2) * k * v ; u = (c, s), v = (-s, c)
    M = np.array(
        [
            [c * k, -s * k, cand.cx - (cw / 2) * c * k + (ch / 2) * s * k],
            [s * k, c * k, cand.cy - (cw / 2) * s * k - (ch / 2) * c * k],
        ],
        dtype=np.float64,
    )
    flags = (cv2.INTER_CUBIC if scale > 1.0 else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    crop = cv2.warpAffine(gray, M, (cw, ch), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return crop, M


def _mean_run(crop: np.ndarray, cand: _Cand) -> float:
    """Mean bar/space width (px) across the middle of a deskewed 1-D crop (~1.8 modules for Code 128
    and EAN-13): sign changes of the row profile about its local mean, over the candidate's length."""
    h, w = crop.shape
    prof = crop[h // 3 : max(h // 3 + 1, 2 * h // 3)].mean(axis=0, dtype=np.float32)
    d = prof - cv2.blur(prof.reshape(1, -1), (9, 1)).ravel()
    lo = max(0, int((w - cand.length) / 2))
    d = d[lo : max(lo + 2, w - lo)]
    sig = d[np.abs(d) > 1.0]
    changes = int(np.count_nonzero(np.signbit(sig[1:]) != np.signbit(sig[:-1]))) if len(sig) > 1 else 0
    return cand.length / max(1, changes)


def _map_points(points: list[tuple[int, int]], M: np.ndarray | None, dx: int = 0, dy: int = 0) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if M is not None:
        p = p @ M[:, :2].T + M[:, 2]
    else:
        p = p + (dx, dy)
    return p


def _polygon(p: np.ndarray, symbology: str, frame_hw: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    h, w = frame_hw
    if len(p) == 0:
        return ()
    if symbology in ONE_D and len(p) >= 2:
        # ZBar gives scan-line end points; report the oriented box around them
        rect = cv2.minAreaRect(p.astype(np.float32))
        p = cv2.boxPoints(rect)
    else:
        p = cv2.convexHull(p.astype(np.float32)).reshape(-1, 2)
    p = np.rint(p)
    p[:, 0] = np.clip(p[:, 0], 0, w - 1)
    p[:, 1] = np.clip(p[:, 1], 0, h - 1)
    return tuple((int(x), int(y)) for x, y in p)


def _inside_any(cand: _Cand, codes) -> bool:
    for code in codes:
        if len(code.polygon) >= 3:
            poly = np.asarray(code.polygon, np.float32).reshape(-1, 1, 2)
            if cv2.pointPolygonTest(poly, (float(cand.cx), float(cand.cy)), True) > -10:
                return True
    return False


def _spans_codes(codes, cand: _Cand, frac: float = 0.7) -> bool:
    """One of ``codes`` covers ``frac`` of the region's length (else more may be in it)."""
    c, s = math.cos(cand.theta), math.sin(cand.theta)
    for code in codes:
        if len(code.polygon) < 2:
            continue
        p = np.asarray(code.polygon, np.float64)
        u = (p[:, 0] - cand.cx) * c + (p[:, 1] - cand.cy) * s
        if u.max() - u.min() >= frac * cand.length:
            return True
    return False


def _at_border(cand: _Cand, hw: tuple[int, int], margin: int = 4) -> bool:
    x0, y0, x1, y1 = cand.bbox
    return x0 <= margin or y0 <= margin or x1 >= hw[1] - margin or y1 >= hw[0] - margin


def _scaled(cand: _Cand, k: float) -> _Cand:
    """The candidate in the coordinates of a frame ``k`` times larger."""
    if k == 1.0:
        return cand
    x0, y0, x1, y1 = cand.bbox
    return _Cand(cand.kind, cand.cx * k, cand.cy * k, cand.theta, cand.length * k, cand.height * k,
                 (int(x0 * k), int(y0 * k), int(x1 * k), int(y1 * k)))


def _unsharp(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask: thin bars that blur has flattened get their contrast back."""
    return cv2.addWeighted(img, 1.0 + amount, cv2.GaussianBlur(img, (0, 0), sigma), -amount, 0)


def _extent(code: Code) -> float:
    if len(code.polygon) < 2:
        return 0.0
    (_, _), (w, h), _ = cv2.minAreaRect(np.asarray(code.polygon, np.float32))
    return max(w, h)
