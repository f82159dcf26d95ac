"""One frame in, its codes out: the driver that locates and reads the candidate regions of each
pyramid level (the retry ladder for 1-D regions, the 2-D passes), then scans the whole frame once
with zxing-cpp as it is (any rotation it tries, downscaled, inverted) and confirms those 1-D reads in
place, so that nothing raw zxing-cpp reads is lost:

* on a frame up to :data:`_WHOLE_FRAME_MAX_PX` always (measured ~6-9 ms on 1280x1024, one core:
  a photo, a small camera's frame);
* on a larger one (a 5 MP camera: ~35-40 ms) only when the fast path left something unread: a
  barcode-like region nothing decoded, or a 2-D candidate that did not read. Without zxing-cpp,
  ZBar scans the whole frame at reduced density in its place, as before.

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
from sorter.vision.decode.text import DEFAULT_RULES, ONE_D, Code, ReadRules, validate


_FALLBACK = True  # whole-frame fallback pass (tests/benchmarks may switch it off, on this module)
# in this process: whole-frame fallbacks run, 1-D reads no second attempt confirmed (reported weak or
# dropped), conflicting reads dropped, weak reads reported
STATS = {"fallback": 0, "unconfirmed": 0, "conflicts": 0, "weak": 0}
_WHOLE_FRAME_MAX_PX = 1_400_000  # frames up to ~1280x1024 always get the whole-frame zxing-cpp pass

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
            # zxing-cpp first: it reads QR, Micro QR and Data Matrix with their ECI and encoding modes
            # (ZBar's QR text is its bytes and our guess at their charset)
            if use_zx:
                got = col.add(col.run("2d-zxing", _engines._zxing, crop, two_d_zx, rotate=True, invert=True),
                              None, x0, y0)
            if not got and use_zbar and two_d:
                got = col.add(col.run("qr", _engines._zbar, crop, two_d), None, x0, y0)
            if not got and use_zbar and two_d:
                # ZBar's QR finder is fragile on small rotated modules: retry enlarged
                big = cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
                S = np.array([[0.5, 0.0, x0 - 0.25], [0.0, 0.5, y0 - 0.25]])
                got = col.add(col.run("qr-retry", _engines._zbar, big, two_d), S)
            if not got and use_zx and not _at_border(cand, gray.shape) and min(cand.length, cand.height) >= 24:
                missed.append(_scaled(cand, col.scale))

    return missed, seen_1d, deferred


def decode(gray: np.ndarray, symbologies: Iterable[str] | None = None,
           engines: Iterable[str] | None = None, rules: ReadRules = DEFAULT_RULES) -> list[Code]:
    """All barcodes in a grayscale frame (uint8 HxW), 1-D codes at any rotation.

    ``symbologies``: names from :data:`SYMBOLOGIES` (None = all of them). ``engines``: ("zbar",),
    ("zbar", "zxing") (default when zxing-cpp is installed: zxing retries each candidate region ZBar
    did not read, reads Code 39, UPC-E, Data Matrix and PDF417, and scans the whole frame), or
    ("zxing",). ``rules``: the line's Code 39 / ITF rules. Returns validated, deduplicated
    :class:`Code` s, polygons in frame pixels; a 1-D read only one attempt made has ``weak`` set.
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
    all_1d = tuple(s for s in wanted if s in ONE_D)
    # ZBar's 1-D: not UPC-E (measured as its most common wrong read, see engines), and not Code 39
    # when zxing-cpp runs: ZBar reads only its plain form, so a full-ASCII, Code 32 or PZN symbol
    # came out as another text than zxing-cpp's (two wrong reads on the development set)
    one_d = tuple(s for s in all_1d if s in _engines._ZBAR and not (use_zx and s == "code39"))
    # PDF417 (stacked bars) looks like a 1-D candidate to the locator; Data Matrix like a QR code
    one_d_zx = all_1d + (("pdf417",) if "pdf417" in wanted else ())
    two_d = tuple(s for s in wanted if s == "qrcode")
    two_d_zx = two_d + (("datamatrix",) if "datamatrix" in wanted else ())
    col = _Collector(gray.shape[:2], rules)
    col.both_engines = use_zbar and use_zx and bool(one_d)
    if not use_zbar:
        one_d = ()
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
    # a barcode-like region that nothing decoded (not lying inside a code that did decode)?
    missed = [c for c in missed if not _inside_any(c, col.codes.values())]
    if _FALLBACK and use_zx and (gray.size <= _WHOLE_FRAME_MAX_PX or missed):
        STATS["fallback"] += bool(missed)
        _whole_frame_zxing(gray, col, one_d_zx + two_d_zx, use_zbar)
    elif missed and one_d and _FALLBACK:
        # no zxing-cpp: ZBar on the whole frame, reduced density (bounded, only when needed)
        STATS["fallback"] += 1
        col.scale = fallback_scale  # a photo larger than a camera frame is scanned at a smaller level
        for raw in col.run("frame", _engines._zbar, fallback_img, one_d, x_density=3, y_density=3):
            if _confirm_in_place(fallback_img, raw, col, one_d, use_zbar, use_zx):
                col.add([raw])
            else:
                col.unconfirmed += 1
                col.add_weak(col.code_of(raw))
        col.scale = 1.0
    out = col.results()
    STATS["unconfirmed"] += col.unconfirmed
    STATS["conflicts"] += col.conflicts
    STATS["weak"] += sum(c.weak for c in out)
    return out


def _whole_frame_zxing(gray: np.ndarray, col: _Collector, wanted, use_zbar: bool) -> None:
    """zxing-cpp on the whole frame with its own search (rotations, downscaling, inversion): what it
    reads and the fast path did not is added, 2-D codes as they are (replacing a ZBar reading of the
    same symbol: zxing-cpp has the symbol's ECI and modes, ZBar's binary bytes only a guess), 1-D
    codes once confirmed in place by another decode of their area, else as weak reads."""
    for raw in col.run("frame-zxing", _engines._zxing, gray, wanted, rotate=True, downscale=True, invert=True):
        text = _engines._text_of(raw)
        if text is None or (raw.symbology, text) in col.codes:
            continue
        if raw.symbology not in ONE_D:
            col.replace_overlapping(col.code_of(raw))
            col.add([raw])
        elif _confirm_in_place(gray, raw, col, tuple(s for s in wanted if s in ONE_D), use_zbar, True):
            col.add([raw])
        else:
            col.unconfirmed += 1
            if validate(raw.symbology, text, col.rules):
                col.add_weak(col.code_of(raw))
            elif raw.symbology == "itf" and validate("itf", text):
                col.refused.append(col.code_of(raw))


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
