"""The retry ladder: the attempts, in order, that read and confirm one 1-D candidate region, and the
second look that confirms a whole-frame read in place.

Each attempt is another resampling of the region (blurred along the bars, plain, enlarged and
smoothed, 2x to 3x sharpened, local contrast) for one engine, the other engine second so that a
confirmation is independent. They run only until every read seen is confirmed: a clean region
costs two decodes, and only a hard one pays for the rest of the ladder.
"""

from __future__ import annotations

import cv2
import numpy as np

# the engines are called through their module: a test that swaps one (monkeypatch.setattr on
# sorter.vision.decode.engines) swaps it for every attempt
from sorter.vision.decode import engines as _engines
from sorter.vision.decode import confirm as _confirm
from sorter.vision.decode.confirm import _Collector
from sorter.vision.decode.crops import _deskewed_crop, _mean_run, _scaled, _spans_codes, _unsharp
from sorter.vision.decode.engines import _Raw, _text_of
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import ONE_D, gtin13, validate


def _read_1d_region(gray: np.ndarray, cand: _Cand, crop: np.ndarray, M: np.ndarray, col: "_Collector",
                    plan) -> int:
    """Read one 1-D candidate region (``crop``: cut out with its bars vertical, ``M``: crop -> level
    px).  Returns how many codes it gave.

    Every 1-D read must be **confirmed**: decoded with the same text by a second, different attempt
    (the other engine, or another resampling of the region).  At 1.5 px/module a blurred or noisy
    scan line can pass a check digit with the wrong digits (EAN-13 cannot catch two digits of equal
    weight swapped; Code 128's mod-103 check passes about 1 wrong read in 100), and both engines
    were measured doing it; two different decodes agreeing on a wrong text is far rarer.  Two
    confirmed reads of one symbology that disagree about one place are both dropped.  The attempts
    run in order until every read seen is confirmed (and, for thin modules, the region is spanned),
    so a clean region costs two decodes."""
    one_d, one_d_zx, two_d, two_d_zx, use_zbar, use_zx = plan
    thin = cand.length >= 80 and cand.height >= 24 and _mean_run(crop, cand) < 6.0
    big: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    region = col.regions = col.regions + 1

    def crop2x() -> tuple[np.ndarray, np.ndarray]:
        # thin modules (~1.5 px, less when foreshortened): upsampled 2x (cubic); the wider margin
        # takes in the rest of a symbol the locator found only in part (faint, thin bars)
        if "2x" not in big:
            big["2x"] = _deskewed_crop(gray, cand, scale=2.0, pad=0.5)
        return big["2x"]

    def sharp2x() -> tuple[np.ndarray, np.ndarray]:
        c3, m3 = crop2x()
        return _unsharp(c3, 1.0, 2.0), m3

    def sharp(scale: float):
        # unsharp mask of a cubic enlargement: at another scale the pixels of a thin bar fall
        # differently, so a read confirmed here is not the same scan seen twice
        def image() -> tuple[np.ndarray, np.ndarray]:
            c, m = crop2x() if scale == 2.0 else _deskewed_crop(gray, cand, scale=scale, pad=0.5)
            return _unsharp(c, 1.5, 0.75 * scale), m
        return image

    def smooth16() -> tuple[np.ndarray, np.ndarray]:
        c2, m2 = _deskewed_crop(gray, cand, scale=1.6)
        return cv2.GaussianBlur(c2, (0, 0), 1.0), m2

    def bars16() -> tuple[np.ndarray, np.ndarray]:
        c, m = _deskewed_crop(gray, cand, scale=1.6)
        return cv2.blur(c, (1, 11)), m

    def local_contrast(scale: float):
        def image() -> tuple[np.ndarray, np.ndarray]:
            c, m = _deskewed_crop(gray, cand, scale=scale, pad=0.5)
            return cv2.createCLAHE(2.0, (8, 8)).apply(c), m
        return image

    zb = use_zbar and bool(one_d)
    attempts = []  # (name, engine, image thunk); the other engine second, so a confirmation is independent
    if zb:
        # bars are vertical: averaging along them removes noise without softening edges
        attempts.append(("1d", "zbar", lambda: (cv2.blur(crop, (1, 7)), M)))
    if use_zx:
        # (zxing-cpp tries the inverted crop only when the crop itself gave nothing: light-on-dark
        # labels cost nothing extra on ordinary ones)
        attempts.append(("1d-zxing", "zxing", lambda: (crop, M)))
    if zb:
        attempts.append(("1d-plain", "zbar", lambda: (crop, M)))
        if cand.length >= 80:
            attempts.append(("1d-retry", "zbar", smooth16))  # enlarged (thin modules), smoothed
    if thin:
        if zb:
            attempts.append(("1d-2x", "zbar", crop2x))
        if use_zx:
            attempts.append(("1d-2x-zxing", "zxing", sharp2x))  # sharpened (unsharp mask)
    # the rest only confirm: they run while a read of this region waits for its second vote
    attempts.append(None)
    if zb:
        # averaged further along the bars, at 1x and enlarged: noise that made one scan line pass
        # a check digit with wrong digits is averaged differently here
        attempts.append(("1d-blur15", "zbar", lambda: (cv2.blur(crop, (1, 15)), M)))
        attempts.append(("1d-1.6x-bars", "zbar", bars16))
        # light-on-dark bars: ZBar reads dark bars only, so a zxing-cpp read of an inverted code
        # is confirmed on the inverted crop
        attempts.append(("1d-inverted", "zbar", lambda: (255 - cv2.blur(crop, (1, 7)), M)))
    if use_zx:
        # a symbology ZBar does not read here (Code 39 is left to zxing-cpp, which knows its full-
        # ASCII, Code 32 and PZN forms; UPC-E): the second vote is zxing-cpp on another resampling
        attempts.append(("1d-1.6x-bars-zxing", "zxing", bars16))
    if thin:
        if zb:
            attempts.append(("1d-2x-sharp", "zbar", sharp(2.0)))
            attempts.append(("1d-2.5x", "zbar", lambda: _deskewed_crop(gray, cand, scale=2.5, pad=0.5)))
        if use_zx:
            attempts.append(("1d-2.5x-zxing", "zxing", sharp(2.5)))
            attempts.append(("1d-2.5x-zxing-clahe", "zxing", local_contrast(2.5)))  # faint labels
            attempts.append(("1d-3x-zxing", "zxing", sharp(3.0)))

    votes = col.votes  # frame-wide: a second region over the same symbol confirms too
    seen: set[tuple[str, str]] = set()
    confirming = False  # past the finder attempts: only a read waiting for its second vote goes on

    def pending() -> bool:
        return any(not col.confirmed(k) for k in seen)

    for attempt in attempts:
        if attempt is None:
            if not pending():
                break
            confirming = True
            continue
        name, engine, image = attempt
        img, Mx = image()
        raws = col.run(name, _engines._zbar, img, one_d, x_density=0, y_density=2) if engine == "zbar" \
            else col.run(name, _engines._zxing, img, one_d_zx, invert=True)
        for raw in raws:
            text = _text_of(raw)
            if text is None or not validate(raw.symbology, text, col.rules):
                if text and raw.symbology == "itf" and validate("itf", text):
                    # refused by the line's ITF rules only: still evidence that a shorter read of
                    # the same bars is a partial scan
                    col.refused.append(col.code_of(raw, Mx * col.scale if Mx is not None else None, unscaled=True))
                continue
            key = (raw.symbology, text)
            if raw.symbology not in ONE_D:  # PDF417: Reed-Solomon protected, no second read needed
                col.add([raw], Mx)
                continue
            seen.add(key)
            if all(v[2] != (region, name) for v in votes.get(key, [])):
                votes.setdefault(key, []).append((raw, Mx * col.scale if Mx is not None else None, (region, name),
                                                  _scaled(cand, col.scale)))
        if seen and not pending():
            # what the 1x attempts read ends the region, as it always did; only a thin region's
            # 2x reads may leave the rest of it unread
            if not name.startswith("1d-2x") or confirming:
                break
            # a thin region that holds two codes (a foreshortened waybill merged with the EAN-13
            # above or beside it): a read that does not span the region does not end it
            confirmed = [col.code_of(votes[k][0][0], votes[k][0][1], unscaled=True) for k in seen]
            if cand.height <= 0.5 * cand.length and _spans_codes(confirmed, _scaled(cand, col.scale)):
                break
    return sum(col.accept(k) for k in seen)


def _confirm_in_place(img: np.ndarray, raw: _Raw, col: "_Collector", one_d, use_zbar: bool, use_zx: bool) -> bool:
    """A whole-frame read confirmed by a second decode of the area around it (the other engine,
    else ZBar on a 2x enlargement): the same rule as for the candidate regions."""
    text = _text_of(raw)
    if text is None or not validate(raw.symbology, text, col.rules):
        return False
    p = np.asarray(raw.points, np.float64).reshape(-1, 2)
    if len(p) == 0:
        return False
    (x0, y0), (x1, y1) = p.min(axis=0), p.max(axis=0)
    m = 0.3 * max(x1 - x0, y1 - y0) + 30
    h, w = img.shape
    xa, ya, xb, yb = int(max(0, x0 - m)), int(max(0, y0 - m)), int(min(w, x1 + m)), int(min(h, y1 + m))
    area = img[ya:yb, xa:xb]
    tries = []
    zbar_1d = tuple(s for s in one_d if s in _engines._ZBAR and s != "code39")
    # EAN-13/UPC-A under the two-engine rule: the whole-frame read was zxing-cpp's, ZBar must agree
    zbar_only = raw.symbology in ("ean13", "upca") and _confirm.EAN_RULE == "two-engines" and use_zbar
    if use_zx and not zbar_only:
        # the area again, enlarged: another sampling of the same bars, for zxing-cpp (the whole-frame
        # read was zxing-cpp's too, at 1x)
        tries.append(lambda: col.run("frame-confirm-zxing", _engines._zxing,
                                     cv2.resize(area, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC), one_d,
                                     rotate=True, invert=True))
    if use_zbar and raw.symbology in zbar_1d:
        big = cv2.resize(area, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
        tries.append(lambda: col.run("frame-confirm-2x", _engines._zbar, big, zbar_1d))
        tries.append(lambda: col.run("frame-confirm-2x-inverted", _engines._zbar, 255 - big, zbar_1d))
    want = gtin13(raw.symbology, text)
    for attempt in tries:
        # (one EAN/UPC symbol may come out as EAN-13 from one engine and UPC-A from the other)
        if any(gtin13(r.symbology, _text_of(r) or "") == want and (r.symbology == raw.symbology or {
                r.symbology, raw.symbology} <= {"ean13", "upca", "upce"}) for r in attempt()):
            return True
    return False
