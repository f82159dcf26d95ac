"""Barcode decoding of a grayscale camera frame.

ZBar (through pyzbar) is the decoding engine.  Raw ZBar only reads 1-D codes that lie near horizontal
or vertical, and on this class of machine a full 1024x768 frame costs it ~160 ms with all
symbologies on (~60 ms for the 1-D ones at half scan density).  So the frame is not handed to ZBar
whole; instead:

1. **Locate** (~4 ms): on a half-size copy, the gradient structure tensor (Scharr products,
   box-filtered) gives per pixel the gradient energy and its *coherence*.  Bars of a 1-D code are
   high-energy and highly coherent (one gradient direction), 2-D codes and text are high-energy
   and incoherent.  Thresholded, closed and split into connected components, these are the
   candidate regions; each 1-D candidate also gets its bar direction from the summed tensor.  The
   energy threshold follows the local contrast (local max-min over the tensor window), so faint
   labels (ink and paper ~50 grey levels apart) are found too; a frame with no strong gradient
   anywhere (an empty belt) stops right after the energy (~6 ms on 5 MP).
2. **1-D pass**: each 1-D candidate is cut out of the full-resolution frame *rotated so its bars are
   vertical* (one ``cv2.warpAffine`` of the crop only) and scanned by ZBar along rows only.  Any
   rotation 0-360 degrees is read.  Polygons are mapped back through the crop's affine transform.
3. **2-D pass**: each square-ish incoherent candidate is cut out (axis-aligned, with margin) and
   scanned for QR codes (ZBar reads QR at any rotation by itself).
4. **Fallback**: if a candidate region that looked like a 1-D code did not decode, the crop is
   retried unfiltered, then enlarged and smoothed, then (thin modules, ~1.5 px) cut again 2x
   upsampled with a wider margin and sharpened, for ZBar and zxing-cpp; if a barcode-like region
   still did not decode,
   the whole frame is scanned once by ZBar at reduced scan
   density (bounded cost; it runs only on frames where something was missed).

Every ZBar call is guarded: an exception from one pass (pyzbar raises ``ValueError`` on some QR
codes) loses only that pass.  Results are validated (EAN-13/UPC-A check digits, ITF length) and
deduplicated by ``(symbology, text)``.

QR text: QR byte segments carry no reliable charset.  ZBar is put into binary mode for QR codes (raw
bytes out); the bytes are decoded as strict UTF-8, else the most plausible of GB18030 / Shift-JIS
(ZBar's Kanji mode output) / Latin-1.  If ZBar cannot do binary mode, its own (possibly wrongly
guessed) conversion is repaired by re-encoding with the charset it guessed (Big5, Shift-JIS, Latin-1)
and decoding again (:func:`recover_qr_text`).

Second engine: zxing-cpp (when installed and enabled) retries each candidate crop that ZBar did not
read, and reads Data Matrix (2-D candidates) and PDF417 (stacked-bar candidates), which the ZBar
build on these machines does not read at all.
"""

from __future__ import annotations

import math
import time
from ctypes import c_void_p, cast, string_at
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

try:  # pragma: no cover - import guard
    from pyzbar import pyzbar as _pz
    from pyzbar.wrapper import ZBarConfig, ZBarSymbol
except Exception as exc:  # pragma: no cover
    raise ImportError(f"pyzbar with the system ZBar library (libzbar0) is required: {exc}") from exc

__all__ = [
    "Code",
    "ONE_D",
    "SYMBOLOGIES",
    "decode",
    "decode_file",
    "ean13_valid",
    "qr_bytes_to_text",
    "recover_qr_text",
    "upca_valid",
    "validate",
]


@dataclass(frozen=True)
class Code:
    symbology: str
    text: str
    polygon: tuple[tuple[int, int], ...]


# our names -> ZBar symbols
_ZBAR = {
    "code128": ZBarSymbol.CODE128,
    "code39": ZBarSymbol.CODE39,
    "itf": ZBarSymbol.I25,
    "ean13": ZBarSymbol.EAN13,
    "upca": ZBarSymbol.UPCA,
    "qrcode": ZBarSymbol.QRCODE,
}
_FROM_ZBAR = {
    "CODE128": "code128",
    "CODE39": "code39",
    "I25": "itf",
    "EAN13": "ean13",
    "UPCA": "upca",
    "QRCODE": "qrcode",
    "PDF417": "pdf417",
}
_ZXING_ONLY = ("datamatrix", "pdf417")
SYMBOLOGIES = ("code128", "code39", "itf", "ean13", "upca", "qrcode", "datamatrix", "pdf417")
ONE_D = frozenset({"code128", "code39", "itf", "ean13", "upca"})
DEFAULT_SYMBOLOGIES = tuple(_ZBAR)  # None = everything ZBar reads here

_CFG_BINARY = 4  # ZBAR_CFG_BINARY (zbar >= 0.23): QR data returned as raw bytes


# ---------------------------------------------------------------------------------------------
# validation


def _gs1_check_ok(digits: str) -> bool:
    if not digits.isdigit() or len(digits) < 2:
        return False
    body, check = digits[:-1], int(digits[-1])
    s = 0
    for i, d in enumerate(reversed(body)):
        s += int(d) * (3 if i % 2 == 0 else 1)
    return (10 - s % 10) % 10 == check


def ean13_valid(text: str) -> bool:
    """13 digits with a correct GS1 check digit."""
    return len(text) == 13 and _gs1_check_ok(text)


def upca_valid(text: str) -> bool:
    """12 digits with a correct GS1 check digit."""
    return len(text) == 12 and _gs1_check_ok(text)


def validate(symbology: str, text: str) -> bool:
    """Reject partial or impossible reads."""
    if not text:
        return False
    if symbology == "ean13":
        return ean13_valid(text)
    if symbology == "upca":
        return upca_valid(text)
    if symbology == "itf":
        return text.isdigit() and len(text) >= 6 and len(text) % 2 == 0
    if symbology in ONE_D:
        return text.isprintable()
    return True


# ---------------------------------------------------------------------------------------------
# QR text charset


def _plausible(text: str) -> float:
    """Fraction of characters that look like real label text (ASCII, common hanzi, CJK punctuation,
    Latin letters); mojibake scores low (kana, halfwidth katakana, rare hanzi, symbols, controls)."""
    if not text:
        return 0.0
    good = 0.0
    for ch in text:
        o = ord(ch)
        if 0x20 <= o < 0x7F or ch in "\t\r\n":
            good += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF5E:
            try:
                ch.encode("gb2312")
                good += 1
            except UnicodeEncodeError:
                good += 0.2 if 0x4E00 <= o <= 0x9FFF else 0.0
        elif 0xC0 <= o <= 0xFF and o not in (0xD7, 0xF7):
            good += 0.9  # accented Latin letters
    return good / len(text)


def qr_bytes_to_text(raw: bytes) -> str:
    """Text of raw QR byte data: strict UTF-8 if valid, else the most plausible of GB18030,
    Shift-JIS (CP932; ZBar's output for Kanji-mode segments) and Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best, best_score = raw.decode("latin-1"), -1.0
    for enc in ("gb18030", "cp932", "latin-1"):
        try:
            cand = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        score = _plausible(cand)
        if score > best_score + 1e-9:
            best, best_score = cand, score
    return best


def recover_qr_text(text: str) -> str:
    """Repair text that ZBar converted with a wrong charset guess (its non-binary mode): re-encode
    with the charsets ZBar guesses (Big5, Shift-JIS, Latin-1) to get the original bytes back, decode them
    properly, and keep whichever reading is the most plausible (the given text wins ties)."""
    if text.isascii():
        return text
    best, best_score = text, _plausible(text)
    for enc in ("big5", "cp950", "cp932", "shift_jis", "latin-1"):
        try:
            raw = text.encode(enc)
        except UnicodeEncodeError:
            continue
        for dec in ("utf-8", "gb18030"):
            try:
                cand = raw.decode(dec)
            except UnicodeDecodeError:
                continue
            # ties go to the re-decoded reading: a mainland label is far likelier GBK/UTF-8 than
            # Big5/Shift-JIS, and ZBar only "found" those by guessing
            score = _plausible(cand) + (0.05 if dec == "utf-8" else 0.01)
            if score > best_score + 1e-9:
                best, best_score = cand, score
    return best


# ---------------------------------------------------------------------------------------------
# ZBar


@dataclass
class _Raw:
    symbology: str
    data: bytes
    points: list[tuple[int, int]]
    binary: bool = False  # data are the symbol's raw bytes (no charset guessed)
    quality: int = 0  # ZBar: scan lines that decoded it (0: another engine)


_qr_binary_ok: bool | None = None
_FALLBACK = True  # whole-frame fallback pass (tests/benchmarks may switch it off)
# in this process: whole-frame fallbacks run, 1-D reads dropped unconfirmed, conflicting reads dropped
STATS = {"fallback": 0, "unconfirmed": 0, "conflicts": 0}


def _zbar(
    img: np.ndarray,
    symbologies: Iterable[str],
    x_density: int = 1,
    y_density: int = 1,
) -> list[_Raw]:
    """One ZBar scan of ``img`` (uint8 2-D, C-contiguous) for ``symbologies`` (our names).
    Each symbol is extracted separately: a symbol pyzbar cannot describe is skipped, not fatal."""
    global _qr_binary_ok
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    syms = {_ZBAR[s] for s in symbologies if s in _ZBAR}
    if not syms or h < 8 or w < 8:
        return []
    if ZBarSymbol.UPCA in syms or ZBarSymbol.EAN13 in syms:
        # with UPC-E off, ZBar expands what it takes for a UPC-E (a short 6-digit code that text
        # and fragments of other codes imitate) into a UPC-A "0xxxxx0000xx": measured as the most
        # common wrong read on 1.5 px labels.  With it on, it says UPC-E, and that is dropped.
        syms = syms | {ZBarSymbol.UPCE}
    out: list[_Raw] = []
    pixels = img.tobytes()
    with _pz._image_scanner() as scanner:
        for s in ZBarSymbol:
            if s not in syms and s != ZBarSymbol.NONE:
                _pz.zbar_image_scanner_set_config(scanner, s, ZBarConfig.CFG_ENABLE, 0)
        for s in syms:
            _pz.zbar_image_scanner_set_config(scanner, s, ZBarConfig.CFG_ENABLE, 1)
        if ZBarSymbol.QRCODE in syms and _qr_binary_ok is not False:
            rc = _pz.zbar_image_scanner_set_config(scanner, ZBarSymbol.QRCODE, _CFG_BINARY, 1)
            _qr_binary_ok = rc == 0
        _pz.zbar_image_scanner_set_config(scanner, ZBarSymbol.NONE, ZBarConfig.CFG_X_DENSITY, x_density)
        _pz.zbar_image_scanner_set_config(scanner, ZBarSymbol.NONE, ZBarConfig.CFG_Y_DENSITY, y_density)
        with _pz._image() as zimg:
            _pz.zbar_image_set_format(zimg, _pz._FOURCC["L800"])
            _pz.zbar_image_set_size(zimg, w, h)
            _pz.zbar_image_set_data(zimg, cast(pixels, c_void_p), len(pixels), None)
            if _pz.zbar_scan_image(scanner, zimg) < 0:
                raise RuntimeError("ZBar rejected the image format")
            sym = _pz.zbar_image_first_symbol(zimg)
            while sym:
                try:
                    name = ZBarSymbol(sym.contents.type).name
                    ours = _FROM_ZBAR.get(name)
                    # ZBar reports a 1-D code decoded on a single scan line; at 1.5 px/module a
                    # blurred line can pass Code 128's mod-103 check with the wrong digits (a
                    # parcel in the wrong town).  Two scan lines must agree: ``quality`` counts them.
                    quality = _pz.zbar_symbol_get_quality(sym)
                    if ours in ONE_D and quality < 2:
                        ours = None
                    if ours is not None:
                        data = string_at(_pz.zbar_symbol_get_data(sym), _pz.zbar_symbol_get_data_length(sym))
                        n = _pz.zbar_symbol_get_loc_size(sym)
                        pts = [(_pz.zbar_symbol_get_loc_x(sym, i), _pz.zbar_symbol_get_loc_y(sym, i)) for i in range(n)]
                        out.append(_Raw(ours, data, pts, quality=quality))
                except Exception:  # one odd symbol must not lose the others
                    pass
                sym = _pz.zbar_symbol_next(sym)
    return out


def _text_of(raw: _Raw) -> str | None:
    if raw.symbology in ("datamatrix", "pdf417") or (raw.symbology == "qrcode" and raw.binary):
        return qr_bytes_to_text(raw.data)
    if raw.symbology == "qrcode":
        if _qr_binary_ok:
            return qr_bytes_to_text(raw.data)
        try:
            return recover_qr_text(raw.data.decode("utf-8"))
        except UnicodeDecodeError:
            return qr_bytes_to_text(raw.data)
    try:
        return raw.data.decode("ascii")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# locating candidate regions

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
_PYRAMID_LEVELS = 2  # coarser levels tried for wide bars: 1/2 and 1/4 size
_PYRAMID_MIN_SIDE = 256  # ... while the level's shorter side is at least this
_WIDE_RUN = 12.0  # mean bar/space px above which a region is left to the coarser pyramid level
_FALLBACK_MAX_PX = 6_000_000  # whole-frame fallback scan: at most a 5 MP camera frame's pixels
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


# ---------------------------------------------------------------------------------------------
# passes


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


class _Collector:
    def __init__(self, frame_hw: tuple[int, int]):
        self.frame_hw = frame_hw
        self.scale = 1.0  # pixels of the pyramid level being read -> frame pixels
        self.codes: dict[tuple[str, str], Code] = {}
        self.errors: list[str] = []
        self.votes: dict[tuple[str, str], list] = {}  # 1-D reads -> [(raw, M to frame px, attempt)]
        self.banned: set[tuple[str, str]] = set()
        self.regions = 0
        self.regions_seen = 0  # candidate regions located, all levels
        self.both_engines = False  # ZBar and zxing-cpp both run
        self.unconfirmed = 0  # 1-D reads that no second attempt confirmed (dropped)
        self.conflicts = 0  # confirmed reads that disagreed about one place (both dropped)

    def code_of(self, raw: _Raw, M: np.ndarray | None = None, unscaled: bool = False) -> Code:
        """The read as it would be reported (polygon in frame px), without adding it (``unscaled``:
        ``M`` maps to frame px already)."""
        p = _map_points(raw.points, M)
        poly = _polygon(p if unscaled else p * self.scale, raw.symbology, self.frame_hw)
        return Code(raw.symbology, _text_of(raw) or "", poly)

    def confirmed(self, key: tuple[str, str]) -> bool:
        """Two different attempts decoded it.  EAN-13/UPC-A (one check digit, which two swapped
        digits of equal weight pass) need the two engines to agree when both run: two ZBar passes
        over the same blurred bars were measured agreeing on a wrong product code."""
        v = self.votes.get(key, [])
        if len(v) < 2:
            return False
        if key[0] in ("ean13", "upca") and self.both_engines:
            return len({"zxing" in a[2][1] for a in v}) == 2
        return True

    def accept(self, key: tuple[str, str]) -> int:
        """Report a 1-D read once two different attempts decoded it, unless a confirmed read of the
        same symbology says something else about the same place (then neither is reported)."""
        v = self.votes.get(key, [])
        if not self.confirmed(key) or key in self.banned:
            return 0
        if key in self.codes:
            return 1
        # reported with the polygon of the vote that spans the most: ZBar gives the ends of its scan
        # lines, often only one end on a thin symbol; zxing gives the symbol's corners
        code = max((self.code_of(x[0], x[1], unscaled=True) for x in v), key=_extent)
        code = Code(key[0], key[1], code.polygon)
        for other, ov in self.votes.items():
            if other[0] == key[0] and other != key and self.confirmed(other) and other not in self.banned \
                    and any(_same_place(a, b) for a in v for b in ov):
                self.conflicts += 1
                self.banned.update((key, other))
                self.codes.pop(other, None)
                return 0
        self.codes[key] = code
        return 1

    def finish(self) -> None:
        self.unconfirmed += sum(1 for k in self.votes if not self.confirmed(k))

    def add(self, raws: list[_Raw], M: np.ndarray | None = None, dx: int = 0, dy: int = 0) -> int:
        n = 0
        for raw in raws:
            text = _text_of(raw)
            if text is None or not validate(raw.symbology, text):
                continue
            key = (raw.symbology, text)
            n += 1
            if key in self.codes:
                continue
            poly = _polygon(_map_points(raw.points, M, dx, dy) * self.scale, raw.symbology, self.frame_hw)
            self.codes[key] = Code(raw.symbology, text, poly)
        return n

    def run(self, name: str, fn, *args, **kwargs) -> list[_Raw]:
        """Call one pass; an exception loses only that pass."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # pyzbar ValueError on odd QR codes, etc.
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return []


def _normalise_symbologies(symbologies: Iterable[str] | None) -> tuple[str, ...]:
    if symbologies is None:
        return DEFAULT_SYMBOLOGIES
    if isinstance(symbologies, str):
        symbologies = [symbologies]
    out = []
    for s in symbologies:
        key = s.strip().lower().replace("-", "").replace("_", "")
        key = {"qr": "qrcode", "i25": "itf", "interleaved2of5": "itf", "ean": "ean13", "upc": "upca"}.get(key, key)
        if key not in SYMBOLOGIES:
            raise ValueError(f"unknown symbology {s!r}; known: {', '.join(SYMBOLOGIES)}")
        if key not in out:
            out.append(key)
    return tuple(out)


try:  # the second engine (optional)
    import zxingcpp as _zx

    _ZX_FORMAT = {
        "code128": _zx.BarcodeFormat.Code128, "code39": _zx.BarcodeFormat.Code39, "itf": _zx.BarcodeFormat.ITF,
        "ean13": _zx.BarcodeFormat.EAN13, "upca": _zx.BarcodeFormat.UPCA, "qrcode": _zx.BarcodeFormat.QRCode,
        "datamatrix": _zx.BarcodeFormat.DataMatrix, "pdf417": _zx.BarcodeFormat.PDF417,
    }
    _ZX_NAME = {v: k for k, v in _ZX_FORMAT.items()}
except Exception:  # pragma: no cover
    _zx = None
    _ZX_FORMAT, _ZX_NAME = {}, {}

ENGINES = ("zbar", "zxing") if _zx is not None else ("zbar",)
DEFAULT_ENGINES = ENGINES


def _zxing(img: np.ndarray, symbologies: Iterable[str], rotate: bool = False, downscale: bool = False) -> list[_Raw]:
    """One zxing-cpp scan of ``img`` for ``symbologies`` (our names); raw bytes out (charset ours)."""
    if _zx is None:
        return []
    wanted = [s for s in symbologies if s in _ZX_FORMAT]
    if not wanted or img.shape[0] < 8 or img.shape[1] < 8:
        return []
    formats = tuple(_ZX_FORMAT[w] for w in wanted)
    out = []
    for r in _zx.read_barcodes(np.ascontiguousarray(img), formats=formats, try_rotate=rotate,
                               try_downscale=downscale, try_invert=False, text_mode=_zx.TextMode.Plain):
        if not r.valid:
            continue
        name = _ZX_NAME.get(r.format)
        if name is None:
            continue
        p = r.position
        pts = [(p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y),
               (p.bottom_right.x, p.bottom_right.y), (p.bottom_left.x, p.bottom_left.y)]
        out.append(_Raw(name, bytes(r.bytes), pts, binary=True))
    return out


def _normalise_engines(engines: Iterable[str] | None) -> tuple[str, ...]:
    if engines is None:
        return DEFAULT_ENGINES
    if isinstance(engines, str):
        engines = [engines]
    out = tuple(dict.fromkeys(e.strip().lower() for e in engines))
    for e in out:
        if e not in ("zbar", "zxing"):
            raise ValueError(f"unknown decoding engine {e!r}; known: zbar, zxing")
    if "zxing" in out and _zx is None:
        out = tuple(e for e in out if e != "zxing") or ("zbar",)
    return out


def _unsharp(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Unsharp mask: thin bars that blur has flattened get their contrast back."""
    return cv2.addWeighted(img, 1.0 + amount, cv2.GaussianBlur(img, (0, 0), sigma), -amount, 0)


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
        raws = col.run(name, _zbar, img, one_d, x_density=0, y_density=2) if engine == "zbar" \
            else col.run(name, _zxing, img, one_d_zx)
        for raw in raws:
            text = _text_of(raw)
            if text is None or not validate(raw.symbology, text):
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
    if text is None or not validate(raw.symbology, text):
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
    if use_zx:
        tries.append(lambda: col.run("frame-confirm-zxing", _zxing, area, one_d, rotate=True))
    if use_zbar:
        tries.append(lambda: col.run("frame-confirm-2x", _zbar,
                                     cv2.resize(area, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), one_d))
    for attempt in tries:
        if any(r.symbology == raw.symbology and _text_of(r) == text for r in attempt()):
            return True
    return False


def _extent(code: Code) -> float:
    if len(code.polygon) < 2:
        return 0.0
    (_, _), (w, h), _ = cv2.minAreaRect(np.asarray(code.polygon, np.float32))
    return max(w, h)


def _same_place(a: tuple, b: tuple) -> bool:
    """Two votes (raw, M, attempt, region) from overlapping candidate regions: one symbol read two
    ways.  The regions, not the polygons, because a garbled read's polygon can be a point."""
    ra, rb = a[3], b[3]

    def inside(r: _Cand, x: float, y: float) -> bool:
        c, s = math.cos(r.theta), math.sin(r.theta)
        du, dv = (x - r.cx) * c + (y - r.cy) * s, -(x - r.cx) * s + (y - r.cy) * c
        return abs(du) <= r.length / 2 + 10 and abs(dv) <= r.height / 2 + 10

    return inside(ra, rb.cx, rb.cy) or inside(rb, ra.cx, ra.cy)


def _decode_level(gray: np.ndarray, col: "_Collector", plan, coarser: bool) -> tuple[list[_Cand], bool, bool]:
    """Locate and read the candidate regions of one pyramid level (``col.scale``: level px -> frame
    px; ``coarser``: a smaller level can still follow).  Returns the barcode-like regions nothing
    read (in frame px), whether any 1-D region was found at all, and whether regions of wide bars
    were left for the coarser level."""
    one_d, one_d_zx, two_d, two_d_zx, use_zbar, use_zx = plan
    deferred = False
    cands = col.run("locate", _locate, gray) if (one_d_zx or two_d_zx) else []
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
                got = col.add(col.run("qr", _zbar, crop, two_d), None, x0, y0)
            if not got and use_zx:
                got = col.add(col.run("2d-zxing", _zxing, crop, two_d_zx, rotate=True), None, x0, y0)
            if not got and use_zbar and two_d:
                # ZBar's QR finder is fragile on small rotated modules: retry enlarged
                big = cv2.resize(crop, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
                S = np.array([[0.5, 0.0, x0 - 0.25], [0.0, 0.5, y0 - 0.25]])
                col.add(col.run("qr-retry", _zbar, big, two_d), S)

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
            raws = col.run("frame", _zbar, fallback_img, one_d, x_density=3, y_density=3)
        else:
            raws = col.run("frame-zxing", _zxing, fallback_img, one_d)
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
