"""One frame in, its codes out: the driver that locates and reads the candidate regions of each
pyramid level (the retry ladder for 1-D regions, the 2-D passes), then, only when a barcode-like
region stayed unread, scans the whole frame once and confirms those reads in place.

Also :func:`decode_file` (an image file, timed), :func:`warm_up` (every engine loaded before the
first parcel) and :data:`STATS` (this process's fallbacks and dropped reads, for the worker's
counters).
"""

from __future__ import annotations

import time
from typing import Iterable

import cv2
import numpy as np

# the engines and the locator are called through their modules: a test that swaps one
# (monkeypatch.setattr on sorter.vision.decode.engines or .locate) swaps it here too
from sorter.vision.decode import engines as _engines
from sorter.vision.decode import locate as _locator
from sorter.vision.decode.attempts import _confirm_in_place, _read_1d_region
from sorter.vision.decode.confirm import _Collector
from sorter.vision.decode.crops import _at_border, _deskewed_crop, _inside_any, _mean_run, _scaled
from sorter.vision.decode.engines import _normalise_engines, _normalise_symbologies
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import ONE_D, Code


_FALLBACK = True  # whole-frame fallback pass (tests/benchmarks may switch it off, on this module)
# in this process: whole-frame fallbacks run, 1-D reads dropped unconfirmed, conflicting reads dropped
STATS = {"fallback": 0, "unconfirmed": 0, "conflicts": 0}

_PYRAMID_LEVELS = 2  # coarser levels tried for wide bars: 1/2 and 1/4 size
_PYRAMID_MIN_SIDE = 256  # ... while the level's shorter side is at least this
_WIDE_RUN = 12.0  # mean bar/space px above which a region is left to the coarser pyramid level
_FALLBACK_MAX_PX = 6_000_000  # whole-frame fallback scan: at most a 5 MP camera frame's pixels


def _decode_level(gray: np.ndarray, col: "_Collector", plan, coarser: bool) -> tuple[list[_Cand], bool, bool]:
    """Locate and read the candidate regions of one pyramid level (``col.scale``: level px -> frame
    px; ``coarser``: a smaller level can still follow).  Returns the barcode-like regions nothing
    read (in frame px), whether any 1-D region was found at all, and whether regions of wide bars
    were left for the coarser level."""
    one_d, one_d_zx, two_d, two_d_zx, use_zbar, use_zx = plan
    deferred = False
    cands = col.run("locate", _locator._locate, gray) if (one_d_zx or two_d_zx) else []
    missed: list[_Cand] = []
    seen_1d = False
    col.regions_seen += len(cands)
    for cand in cands:
        if cand.kind == "1d" and one_d_zx:
            seen_1d = True
            if col.codes and _inside_any(_scaled(cand, col.scale), col.codes.values()):
                continue
            crop, M = _deskewed_crop(gray, cand)
            if coarser and cand.length >= 4 * _WIDE_RUN and _mean_run(crop, cand) > _WIDE_RUN:
                deferred = True  # bars this wide read on the next, smaller level, at a quarter of the cost
                continue
            got = _read_1d_region(gray, cand, crop, M, col, plan)
            if not got and cand.length >= 80 and cand.height >= 24 and not _at_border(cand, gray.shape):
                # (a symbol cut by the frame's edge cannot decode: a free-running camera sees one in
                # most frames, and the whole-frame fallback would only spend time on it)
                missed.append(_scaled(cand, col.scale))
        elif cand.kind == "2d" and two_d_zx:
            x0, y0, x1, y1 = cand.bbox
            mx, my = int(0.3 * (x1 - x0)) + 12, int(0.3 * (y1 - y0)) + 12
            x0, y0 = max(0, x0 - mx), max(0, y0 - my)
            x1, y1 = min(gray.shape[1], x1 + mx), min(gray.shape[0], y1 + my)
            crop = gray[y0:y1, x0:x1]
            got = 0
            if use_zbar and two_d:
                got = col.add(col.run("qr", _engines._zbar, crop, two_d), None, x0, y0)
            if not got and use_zx:
                got = col.add(col.run("2d-zxing", _engines._zxing, crop, two_d_zx, rotate=True), None, x0, y0)
            if not got and use_zbar and two_d:
                # ZBar's QR finder is fragile on small rotated modules: retry enlarged
                big = cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
                S = np.array([[0.5, 0.0, x0 - 0.25], [0.0, 0.5, y0 - 0.25]])
                col.add(col.run("qr-retry", _engines._zbar, big, two_d), S)

    return missed, seen_1d, deferred


def decode(gray: np.ndarray, symbologies: Iterable[str] | None = None,
           engines: Iterable[str] | None = None) -> list[Code]:
    """All barcodes in a grayscale frame (uint8 HxW), 1-D codes at any rotation.

    ``symbologies``: names from :data:`SYMBOLOGIES` (None = code128, code39, itf, ean13, upca,
    qrcode). ``engines``: ("zbar",), ("zbar", "zxing") (default when zxing-cpp is installed: zxing
    retries each candidate region ZBar did not read, and reads Data Matrix and PDF417), or
    ("zxing",). Returns validated, deduplicated :class:`Code` s, polygons in frame pixels.
    """
    gray = np.asarray(gray)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"decode() needs a 2-D grayscale image, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    gray = np.ascontiguousarray(gray)
    wanted = _normalise_symbologies(symbologies)
    eng = _normalise_engines(engines)
    use_zbar, use_zx = "zbar" in eng, "zxing" in eng
    one_d = tuple(s for s in wanted if s in ONE_D)
    # PDF417 (stacked bars) looks like a 1-D candidate to the locator; Data Matrix like a QR code
    one_d_zx = one_d + (("pdf417",) if "pdf417" in wanted else ())
    two_d = tuple(s for s in wanted if s == "qrcode")
    two_d_zx = two_d + (("datamatrix",) if "datamatrix" in wanted else ())
    col = _Collector(gray.shape[:2])
    col.both_engines = use_zbar and use_zx and bool(one_d)
    plan = (one_d, one_d_zx, two_d, two_d_zx, use_zbar, use_zx)
    level, img = 0, gray

    def coarser(im: np.ndarray) -> bool:
        return level < _PYRAMID_LEVELS and min(im.shape) >= 2 * _PYRAMID_MIN_SIDE

    missed, seen_1d, deferred = _decode_level(img, col, plan, coarser(img))
    fallback_img, fallback_scale = gray, 1.0
    # Pyramid: bars many pixels wide (a close-up photo, a large label; ~6 px/module and up) are
    # not one coherent region at this scale, and each costs ZBar a pass; at half size they are
    # ordinary.  Only a frame with such regions (or with regions of which none read) pays for the
    # coarser level, at a quarter of the cost of this one.
    def worth_a_coarser_level() -> bool:
        if deferred:
            return True
        if seen_1d and not any(c.symbology in ONE_D for c in col.codes.values()):
            return True
        # regions but nothing read at all: a QR code of modules many pixels wide is no square blob
        # at full size either
        return not col.codes and col.regions_seen > 0

    while worth_a_coarser_level() and coarser(img):
        level += 1
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        col.scale = float(2 ** level)
        if fallback_img.size > _FALLBACK_MAX_PX:
            fallback_img, fallback_scale = img, col.scale
        more, seen, deferred = _decode_level(img, col, plan, coarser(img))
        missed = [c for c in missed if not _inside_any(c, col.codes.values())] + more
        seen_1d = seen_1d or seen
    col.scale = 1.0

    col.finish()
    STATS["unconfirmed"] += col.unconfirmed
    STATS["conflicts"] += col.conflicts
    # a barcode-like region that nothing decoded (not lying inside a code that did decode)?
    missed = [c for c in missed if not _inside_any(c, col.codes.values())]
    if missed and one_d and _FALLBACK:
        # fallback: whole frame, reduced density (bounded, only when needed)
        STATS["fallback"] += 1
        col.scale = fallback_scale  # a photo larger than a camera frame is scanned at a smaller level
        if use_zbar:
            raws = col.run("frame", _engines._zbar, fallback_img, one_d, x_density=3, y_density=3)
        else:
            raws = col.run("frame-zxing", _engines._zxing, fallback_img, one_d)
        for raw in raws:
            if _confirm_in_place(fallback_img, raw, col, one_d, use_zbar, use_zx):
                col.add([raw])
            else:
                col.unconfirmed += 1
        col.scale = 1.0
    return list(col.codes.values())


def decode_file(path, symbologies: Iterable[str] | None = None) -> tuple[list[Code], float]:
    """Decode an image file (loaded as grayscale). Returns (codes, decode milliseconds).
    Raises ValueError naming the file if it is missing or not a readable image."""
    p = str(path)
    gray = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        import os

        reason = "no such file" if not os.path.exists(p) else "not a readable image"
        raise ValueError(f"cannot read image {p!r}: {reason}")
    t0 = time.perf_counter()
    codes = decode(gray, symbologies)
    return codes, (time.perf_counter() - t0) * 1000.0


def warm_up(symbologies=None, engines=None) -> None:
    """Decode a rendered label once so that every engine's library and caches are loaded."""
    from sorter.vision.labels import LabelSpec, render_frame, render_label
    rng = np.random.default_rng(0)
    frame = render_frame(render_label(LabelSpec("SF1234567890123", qr_text="SF1234567890123", ean13="690123456789"),
                                      rng), rng, rotation_deg=30)
    try:
        decode(frame, symbologies, engines=engines) if engines else decode(frame, symbologies)
    except Exception:  # noqa: BLE001 - warming up must never stop a camera
        pass
