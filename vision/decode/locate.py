"""Where the codes may be: candidate regions of a frame, from its gradient structure tensor.

About 4 ms on a camera frame, so that the engines (~160 ms on a whole one) see only the regions that
look like bars (coherent gradients: a 1-D code, with its bar direction) or like a 2-D code (strong,
incoherent, square-ish). The threshold follows the local contrast, so faint labels are found too,
and a frame with no strong gradient anywhere (an empty belt) stops right after the energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


_SCALE = 0.5  # gradients on a half-size copy ...
_POOL = 2  # ... pooled 2x2 again for the region analysis (quarter size)
_WIN = 7  # tensor window, quarter-size pixels (28 full-res px)
_ENERGY_MIN = 1.0e6  # windowed |grad|^2 (Scharr, half-size): symbols ~3-5e6, label/box edges <~6e5
# Contrast-normalised threshold: energy scales with (ink-paper contrast)^2, so a low-contrast label
# (~50 grey levels) has ~1/16 of the energy of a normal one.  The threshold is therefore
# min(_ENERGY_MIN, _ENERGY_PER_RANGE2 * range^2) with ``range`` the local max-min intensity over the
# tensor window: wherever full-contrast ink is in the window the threshold stays _ENERGY_MIN (normal
# labels locate exactly as before), while on a low-contrast label it drops with the contrast.  A single
# step edge has energy/range^2 ~15-20, the bars of a symbol ~60-120.  The floors keep sensor noise
# on an empty belt (range of a few grey levels) out, so empty frames cost nothing extra.
_ENERGY_PER_RANGE2 = 40.0
_ENERGY_FLOOR = 5.0e4
_COH_1D = 0.6
_COH_2D = 0.45
_MERGE_GAP = 12.0  # full-res px between the ends of two pieces of one symbol (a quiet zone is wider)


@dataclass
class _Cand:
    kind: str  # "1d" or "2d"
    cx: float  # centre, full-res pixels
    cy: float
    theta: float  # gradient direction (radians): across the bars
    length: float  # extent along theta (full-res px)
    height: float  # extent across theta (full-res px)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 full-res


def _locate(gray: np.ndarray) -> list[_Cand]:
    small = cv2.resize(gray, None, fx=_SCALE, fy=_SCALE, interpolation=cv2.INTER_AREA)
    # Scharr straight from uint8 into float32, products with cv2 (no numpy temporaries): ~30 % less
    # time on a 5 MP frame than the float copy + numpy products
    gx = cv2.Scharr(small, cv2.CV_32F, 1, 0)
    gy = cv2.Scharr(small, cv2.CV_32F, 0, 1)
    qsize = (small.shape[1] // _POOL, small.shape[0] // _POOL)

    def pooled(a, b):
        return cv2.boxFilter(cv2.resize(cv2.multiply(a, b), qsize, interpolation=cv2.INTER_AREA), -1, (_WIN, _WIN))

    jxx, jyy = pooled(gx, gx), pooled(gy, gy)
    energy = jxx + jyy
    if float(energy.max()) <= min(_ENERGY_FLOOR, _ENERGY_MIN):
        return []  # nothing anywhere is strong enough (an empty belt): skip the rest
    jxy = pooled(gx, gy)
    diff = jxx - jyy
    aniso = cv2.sqrt(diff * diff + 4 * jxy * jxy)
    strong = energy > _ENERGY_MIN
    if _ENERGY_PER_RANGE2 * 255.0 * 255.0 > _ENERGY_FLOOR and float(energy.max()) > _ENERGY_FLOOR:
        # contrast-normalised: local intensity range over the tensor window (quarter size)
        q = cv2.resize(small, qsize, interpolation=cv2.INTER_AREA)
        kw = cv2.getStructuringElement(cv2.MORPH_RECT, (_WIN, _WIN))
        rng = cv2.subtract(cv2.dilate(q, kw), cv2.erode(q, kw)).astype(np.float32)
        thr = np.clip(_ENERGY_PER_RANGE2 * rng * rng, _ENERGY_FLOOR, _ENERGY_MIN)
        strong = energy > thr
    cands: list[_Cand] = []
    inv = 1.0 / (_SCALE / _POOL)  # quarter-size px -> full-res px
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    # 1-D: strong and coherent
    m1 = (strong & (aniso > _COH_1D * energy)).astype(np.uint8)
    m1 = cv2.morphologyEx(m1, cv2.MORPH_OPEN, k3)
    m1 = cv2.morphologyEx(m1, cv2.MORPH_CLOSE, k3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m1, connectivity=8) if cv2.countNonZero(m1) else (0, None, None, None)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 25 or max(w, h) < 8:
            continue
        sub = labels[y : y + h, x : x + w] == i
        sxx = float(jxx[y : y + h, x : x + w][sub].sum())
        syy = float(jyy[y : y + h, x : x + w][sub].sum())
        sxy = float(jxy[y : y + h, x : x + w][sub].sum())
        theta = 0.5 * math.atan2(2 * sxy, sxx - syy)  # gradient direction = across the bars
        ys, xs = np.nonzero(sub)
        xs = xs + (x + 0.5)
        ys = ys + (y + 0.5)
        c, s = math.cos(theta), math.sin(theta)
        pu = xs * c + ys * s
        pv = -xs * s + ys * c
        u0, u1, v0, v1 = pu.min(), pu.max(), pv.min(), pv.max()
        if (v1 - v0) < 3:  # a thin edge, not a symbol
            continue
        uc, vc = (u0 + u1) / 2, (v0 + v1) / 2
        cx, cy = uc * c - vc * s, uc * s + vc * c
        cands.append(
            _Cand("1d", cx * inv, cy * inv, theta, (u1 - u0 + 1) * inv, (v1 - v0 + 1) * inv,
                  (int(x * inv), int(y * inv), int((x + w) * inv), int((y + h) * inv)))
        )

    # 2-D: strong, incoherent, away from the 1-D regions (bar ends), a filled square-ish blob
    near_1d = cv2.dilate(m1, k3, iterations=2)
    m2 = (strong & (aniso < _COH_2D * energy) & (near_1d == 0)).astype(np.uint8)
    m2 = cv2.morphologyEx(m2, cv2.MORPH_CLOSE, k3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m2, connectivity=8) if cv2.countNonZero(m2) else (0, None, None, None)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 60 or min(w, h) < 8:
            continue
        (_, _), (rw, rh), _ = cv2.minAreaRect(np.column_stack(np.nonzero(labels[y : y + h, x : x + w] == i)).astype(np.float32))
        if rw < 7 or rh < 7 or max(rw, rh) > 1.8 * min(rw, rh) or area < 0.5 * rw * rh:
            continue
        cands.append(
            _Cand("2d", (x + w / 2) * inv, (y + h / 2) * inv, 0.0, w * inv, h * inv,
                  (int(x * inv), int(y * inv), int((x + w) * inv), int((y + h) * inv)))
        )
    return _merge_split(cands)


def _merge_split(cands: list[_Cand]) -> list[_Cand]:
    """Join 1-D regions that are pieces of one symbol: under perspective the bars of one code are
    not parallel (their direction drifts along the code) and a wide space or a faint stretch can
    cut the coherent mask in two.  Pieces whose directions agree within ~12 degrees, that lie on
    one line and whose ends are closer than a quiet zone are read as one region."""
    pieces = [c for c in cands if c.kind == "1d"]
    if len(pieces) < 2:
        return cands
    ones = list(pieces)
    merged = True
    while merged:
        merged = False
        for i in range(len(ones)):
            for j in range(i + 1, len(ones)):
                a, b = ones[i], ones[j]
                d = (b.theta - a.theta + math.pi / 2) % math.pi - math.pi / 2
                if abs(d) > math.radians(12):
                    continue
                wa, wb = a.length * a.height, b.length * b.height
                th = a.theta + d * wb / (wa + wb)
                c, s = math.cos(th), math.sin(th)
                du = (b.cx - a.cx) * c + (b.cy - a.cy) * s
                dv = -(b.cx - a.cx) * s + (b.cy - a.cy) * c
                gap = abs(du) - (a.length + b.length) / 2
                if gap > _MERGE_GAP or abs(dv) > 0.5 * max(a.height, b.height):
                    continue
                ends_u = [-a.length / 2, a.length / 2, du - b.length / 2, du + b.length / 2]
                ends_v = [-a.height / 2, a.height / 2, dv - b.height / 2, dv + b.height / 2]
                u0, u1, v0, v1 = min(ends_u), max(ends_u), min(ends_v), max(ends_v)
                uc, vc = (u0 + u1) / 2, (v0 + v1) / 2
                cx, cy = a.cx + uc * c - vc * s, a.cy + uc * s + vc * c
                box = (min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1]),
                       max(a.bbox[2], b.bbox[2]), max(a.bbox[3], b.bbox[3]))
                ones[i] = _Cand("1d", cx, cy, th, u1 - u0, v1 - v0, box)
                del ones[j]
                merged = True
                break
            if merged:
                break
    # the joined regions first; the pieces stay (a join can also spoil a region that read alone),
    # and are skipped when a code already decoded covers them
    joined = [c for c in ones if not any(c is p for p in pieces)]
    return joined + cands
