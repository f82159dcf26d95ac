"""Realistic parcel-label images for the simulated line.

The simulation renders each parcel's label and shows it to the camera workers as a camera frame:

* :func:`render_label` draws a white shipping label (landscape, ~140 x 110 mm at ~4 px/mm with the
  default module size) carrying a large Code 128 waybill with its digits printed underneath, and
  optionally a QR code (segno), a product EAN-13 (python-barcode) and a second, stale waybill.
* :func:`render_frame` places that label on a cardboard parcel on a dark belt, rotated by an
  arbitrary angle, with mild blur, uneven light and sensor noise, in a 1024 x 768 (default) frame.

A label that is ``missing`` or ``face_down`` is not visible to the camera: :func:`render_label`
returns ``None`` for it and :func:`render_frame` then draws the parcel without any label.

``damaged=True`` tears a jagged white strip through the full height of the middle of the waybill
bars (about a third of its symbol characters), so the waybill can never be decoded; the other codes
on the label stay intact.

Barcodes are drawn from their module patterns (python-barcode builds Code 128 and EAN-13 patterns,
including Code 128 start/stop/checksum and code-set C for digit runs), so they are exact; nothing is
rasterised through PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import segno
from sorter.vision.code128 import code128_modules
from barcode.ean import EuropeanArticleNumber13

__all__ = [
    "LabelSpec",
    "code128_modules",
    "ean13_check_digit",
    "ean13_modules",
    "render_frame",
    "render_label",
]

QUIET_MODULES = 12  # >= 10 required for Code 128 / EAN-13
QR_QUIET_MODULES = 4

INK = 0  # label image is pure black/white; render_frame maps it to realistic levels
PAPER = 255


@dataclass
class LabelSpec:
    """What is printed on a parcel's label.

    ``ean13`` may have 12 digits (the check digit is computed) or 13 digits (drawn as given, even
    with a wrong check digit — useful for testing rejection).
    """

    waybill: str | None
    qr_text: str | None = None
    ean13: str | None = None
    stale_waybill: str | None = None
    town: str = ""
    damaged: bool = False
    face_down: bool = False
    missing: bool = False
    qr_encoding: str = "utf-8"  # how qr_text is turned into QR bytes: "utf-8", "gbk", "gb18030"

    @property
    def visible(self) -> bool:
        return not (self.missing or self.face_down)


# ---------------------------------------------------------------------------------------------
# module patterns


def ean13_check_digit(first12: str) -> int:
    if len(first12) != 12 or not first12.isdigit():
        raise ValueError(f"EAN-13 needs 12 digits before the check digit, got {first12!r}")
    s = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return (10 - s % 10) % 10


def ean13_full(digits: str) -> str:
    digits = digits.strip()
    if not digits.isdigit() or len(digits) not in (12, 13):
        raise ValueError(f"EAN-13 needs 12 or 13 digits, got {digits!r}")
    if len(digits) == 12:
        return digits + str(ean13_check_digit(digits))
    return digits


def ean13_modules(digits: str) -> np.ndarray:
    """Module pattern of an EAN-13 (12 digits: check digit computed; 13 digits: drawn as given)."""
    full = ean13_full(digits)
    pattern = EuropeanArticleNumber13(full, no_checksum=True).build()[0]
    return np.frombuffer(pattern.encode("ascii"), np.uint8) - ord("0")


def qr_modules(text: str, encoding: str = "utf-8") -> np.ndarray:
    """QR matrix (1 = dark) of ``text`` encoded as bytes in ``encoding`` (byte mode, no ECI)."""
    q = segno.make_qr(text.encode(encoding), error="m", mode="byte")
    return np.asarray(q.matrix, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# drawing helpers


def _bars_row(modules: np.ndarray, module_px: float) -> np.ndarray:
    """One row of a 1-D symbol, 0..255 with exact (area-averaged) fractional module edges."""
    width = max(1, int(round(len(modules) * module_px)))
    if float(module_px).is_integer():
        row = np.repeat(modules, int(module_px))
    else:
        fine = np.repeat(modules, 8).astype(np.float32)[None, :]
        row = cv2.resize(fine, (width, 1), interpolation=cv2.INTER_AREA)[0]
    return (PAPER - row * (PAPER - INK)).astype(np.uint8)


def _draw_1d(img: np.ndarray, modules: np.ndarray, x: int, y: int, height: int, module_px: float) -> tuple[int, int]:
    row = _bars_row(modules, module_px)
    w = min(len(row), img.shape[1] - x)
    img[y : y + height, x : x + w] = row[None, :w]
    return w, height


def _draw_qr(img: np.ndarray, matrix: np.ndarray, x: int, y: int, module_px: float) -> int:
    size = int(round(matrix.shape[0] * module_px))
    block = np.where(matrix > 0, INK, PAPER).astype(np.uint8)
    block = cv2.resize(block, (size, size), interpolation=cv2.INTER_NEAREST if float(module_px).is_integer() else cv2.INTER_AREA)
    img[y : y + size, x : x + size] = block
    return size


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float, thickness: int = 1) -> None:
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cv2.putText(img, ascii_text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, thickness, cv2.LINE_AA)


def _text_width(text: str, scale: float, thickness: int = 1) -> int:
    (w, _h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    return w


def _tear(img: np.ndarray, x0: int, x1: int, y0: int, y1: int, rng: np.random.Generator) -> None:
    """Jagged white tear covering columns x0..x1 over rows y0..y1 (full height of the bars)."""
    n = 12
    ys = np.linspace(y0 - 6, y1 + 6, n)
    left = x0 + rng.integers(-4, 5, n)
    right = x1 + rng.integers(-4, 5, n)
    # keep the guaranteed core [x0+4, x1-4] fully covered
    left = np.minimum(left, x0 + 4)
    right = np.maximum(right, x1 - 4)
    poly = np.concatenate([np.stack([left, ys], 1), np.stack([right, ys], 1)[::-1]]).astype(np.int32)
    cv2.fillPoly(img, [poly], PAPER)
    # a few grey smudges / fibres along the tear edges
    for _ in range(6):
        cx = int(rng.integers(x0, x1 + 1))
        cy = int(rng.integers(y0, y1 + 1))
        cv2.circle(img, (cx, cy), int(rng.integers(2, 6)), int(rng.integers(200, 245)), -1)


# ---------------------------------------------------------------------------------------------
# label


def render_label(spec: LabelSpec, rng: np.random.Generator, module_px: float = 3.0) -> np.ndarray | None:
    """Render the label as a uint8 grayscale image (white paper, black ink).

    Returns ``None`` when the label is not visible (``missing`` or ``face_down``)."""
    if not spec.visible:
        return None
    m = float(module_px)
    q = QUIET_MODULES * m
    margin = int(round(max(10.0, 2 * m)))

    wb = code128_modules(spec.waybill) if spec.waybill else None
    stale = code128_modules(spec.stale_waybill) if spec.stale_waybill else None
    ean = ean13_modules(spec.ean13) if spec.ean13 else None
    qr = qr_modules(spec.qr_text, spec.qr_encoding) if spec.qr_text else None

    wb_w = len(wb) * m if wb is not None else 0
    stale_w = len(stale) * m if stale is not None else 0
    ean_w = len(ean) * m if ean is not None else 0
    qr_w = qr.shape[0] * m if qr is not None else 0

    header_h = int(round(max(26, 8 * m)))
    wb_h = int(round(max(30 * m, 0.24 * wb_w))) if wb is not None else 0
    digits_h = int(round(max(24, 8 * m))) if wb is not None else 0
    row_qr = qr_w + 2 * QR_QUIET_MODULES * m if qr is not None else 0
    row_ean = ean_w + 2 * q if ean is not None else 0
    ean_h = int(round(max(25 * m, 0.3 * ean_w))) if ean is not None else 0
    row4_h = int(max(row_qr, ean_h + digits_h if ean is not None else 0))
    stale_h = int(round(max(18 * m, 0.14 * stale_w))) if stale is not None else 0

    width = int(math.ceil(max(wb_w + 2 * q, stale_w + 2 * q, row_qr + row_ean, 100 * m) + 2 * margin))
    height = int(
        margin + header_h + wb_h + digits_h + (row4_h + margin if row4_h else 0)
        + (stale_h + digits_h + margin if stale is not None else 0) + margin
    )
    img = np.full((height, width), PAPER, np.uint8)
    cv2.rectangle(img, (2, 2), (width - 3, height - 3), 90, 1)  # printed frame line

    # header: carrier-style banner + town
    y = margin
    scale = header_h / 40.0
    _text(img, "EXPRESS", margin, y + int(header_h * 0.75), scale, 2)
    if spec.town:
        town = spec.town.encode("ascii", "ignore").decode() or "TOWN"
        _text(img, town, width - margin - _text_width(town, scale, 2), y + int(header_h * 0.75), scale, 2)
    y += header_h

    # the waybill
    if wb is not None:
        x = int(round((width - wb_w) / 2))
        _draw_1d(img, wb, x, y, wb_h, m)
        if spec.damaged:
            # Tear through the middle third of the symbol characters (between start and stop),
            # the full height of the bars: no scan line can cross the symbol intact.
            data0 = x + 11 * m
            data1 = x + wb_w - 13 * m
            mid = (data0 + data1) / 2
            half = max((data1 - data0) / 6, 12 * m)
            _tear(img, int(mid - half), int(mid + half), y, y + wb_h, rng)
        ds = digits_h / 34.0
        tw = _text_width(spec.waybill, ds, 2)
        _text(img, spec.waybill, int((width - tw) / 2), y + wb_h + int(digits_h * 0.85), ds, 2)
        y += wb_h + digits_h
    else:
        y += margin

    # row 4: QR (left) and EAN-13 (right)
    if row4_h:
        y += margin
        x = margin
        if qr is not None:
            qx = int(round(x + QR_QUIET_MODULES * m))
            _draw_qr(img, qr, qx, int(round(y + (row4_h - qr_w) / 2)), m)
            x += int(row_qr)
        if ean is not None:
            ex = int(round(width - margin - row_ean + q))
            ey = int(round(y + (row4_h - ean_h - digits_h) / 2))
            _draw_1d(img, ean, ex, ey, ean_h, m)
            full = ean13_full(spec.ean13)
            ds = digits_h / 40.0
            tw = _text_width(full, ds, 1)
            _text(img, full, int(ex + (ean_w - tw) / 2), ey + ean_h + int(digits_h * 0.8), ds, 1)
        y += row4_h

    # a stale waybill from an earlier shipment, partly greyed (older thermal print)
    if stale is not None:
        y += margin
        x = int(round((width - stale_w) / 2))
        _draw_1d(img, stale, x, y, stale_h, m)
        ds = digits_h / 40.0
        tw = _text_width(spec.stale_waybill, ds, 1)
        _text(img, spec.stale_waybill, int((width - tw) / 2), y + stale_h + int(digits_h * 0.8), ds, 1)
        region = img[y - margin // 2 : y + stale_h + digits_h, :]
        np.maximum(region, 40, out=region)  # faded ink
    return img


# ---------------------------------------------------------------------------------------------
# frame


def _fit_scale(lw: int, lh: int, angle: float, fw: int, fh: int, border: int) -> float:
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    bw, bh = lw * c + lh * s, lw * s + lh * c
    return min(1.0, (fw - 2 * border) / bw, (fh - 2 * border) / bh)


def render_frame(
    label: np.ndarray | None,
    rng: np.random.Generator,
    frame_hw: tuple[int, int] = (768, 1024),
    rotation_deg: float | None = None,
    blur_sigma: float | None = None,
    noise_sigma: float | None = None,
) -> np.ndarray:
    """A camera frame (uint8 gray, ``frame_hw``) of a parcel on a dark belt carrying ``label``.

    ``label=None`` (missing or face-down label) draws the parcel without a label.
    ``rotation_deg`` None: random 0..360. ``blur_sigma`` (pixels) None: random 0.3..1.1 px (at most
    ~0.4 module with the default 3 px module). ``noise_sigma`` (grey levels) None: random 1.5..5.
    The rotated label always fits inside the frame (it is scaled down only if it could not).
    """
    fh, fw = frame_hw
    angle = float(rng.uniform(0.0, 360.0)) if rotation_deg is None else float(rotation_deg)
    blur = float(rng.uniform(0.3, 1.1)) if blur_sigma is None else float(blur_sigma)
    noise = float(rng.uniform(1.5, 5.0)) if noise_sigma is None else float(noise_sigma)

    # belt: dark with faint transverse slats
    belt = int(rng.integers(25, 50))
    frame = np.full((fh, fw), belt, np.uint8)
    period = int(rng.integers(40, 90))
    frame[:: period // 2 or 1, :] = max(0, belt - 12)

    if label is not None:
        lh, lw = label.shape
    else:
        lh, lw = int(rng.integers(250, 420)), int(rng.integers(350, 560))
    scale = _fit_scale(lw, lh, angle, fw, fh, border=12)

    # where the label centre goes: anywhere the rotated label still fits
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    bw, bh = (lw * c + lh * s) * scale, (lw * s + lh * c) * scale
    cx = fw / 2 + rng.uniform(-1, 1) * max(0.0, (fw - 12 * 2 - bw) / 2)
    cy = fh / 2 + rng.uniform(-1, 1) * max(0.0, (fh - 12 * 2 - bh) / 2)

    # the parcel (cardboard), rotated a little differently from the label
    box_angle = angle + float(rng.uniform(-8, 8))
    bx_w = lw * scale + float(rng.uniform(60, 240))
    bx_h = lh * scale + float(rng.uniform(60, 200))
    box = cv2.boxPoints(((cx + rng.uniform(-20, 20), cy + rng.uniform(-20, 20)), (bx_w, bx_h), box_angle))
    cardboard = int(rng.integers(120, 175))
    cv2.fillConvexPoly(frame, box.astype(np.int32), cardboard, cv2.LINE_AA)

    if label is not None:
        ink = int(rng.integers(15, 45))
        paper = int(rng.integers(205, 245))
        lut = np.linspace(ink, paper, 256).astype(np.uint8)
        lab = cv2.LUT(label, lut)
        M = cv2.getRotationMatrix2D((lw / 2.0, lh / 2.0), angle, scale)
        M[0, 2] += cx - lw / 2.0
        M[1, 2] += cy - lh / 2.0
        cv2.warpAffine(lab, M, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)

    # uneven illumination: a smooth ramp in x and y
    gx = np.linspace(1.0 - rng.uniform(0, 0.15), 1.0, fw, dtype=np.float32)
    if rng.random() < 0.5:
        gx = gx[::-1]
    gy = np.linspace(1.0 - rng.uniform(0, 0.1), 1.0, fh, dtype=np.float32)
    light = np.outer(gy, gx)

    if blur > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    frame = cv2.multiply(frame, light, dtype=cv2.CV_8U)
    if noise > 0:
        n = np.empty((fh, fw), np.int16)
        cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
        cv2.randn(n, 0.0, noise)
        frame = cv2.add(frame, n, dtype=cv2.CV_8U)
    return frame
