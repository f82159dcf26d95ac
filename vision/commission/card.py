"""The printable test card, and what one camera image of it tells.

The card (A4 portrait, 210 x 297 mm, drawn at 300 dpi) carries, at positions fixed in :data:`LAYOUT`
(card millimetres, x right, y down from the page's top-left corner):

* a chessboard of 8 x 6 squares of 20 mm (7 x 5 inner corners): the image -> card mapping;
* Code 128 at 0.508 mm (20 mil) and 0.254 mm (10 mil) per module, a QR code and a Data Matrix at
  1.016 mm (40 mil): known module sizes, so pixels per module can be checked against the truth and
  the camera's reads against the printed texts (10 mil is the resolution test: it reads only where a
  module gets about 1.5 px or more);
* a 150 mm ruler with millimetre ticks: the print must measure 150 mm (printed at 100 %, no "fit to
  page"), else every figure from the card is off by the same factor.

Module sizes are whole pixels at 300 dpi (20 mil = 6 px), so the PNG is exact; the PDF is one page
holding that image at exactly 210 x 297 mm (written here: a one-image PDF is a few lines, and no
library that writes PDF is installed).

:func:`analyse_card` takes one grey image of the card lying on the belt and returns mm per pixel,
the image -> card homography (its orientation settled by where the codes were read), each code's
pixels per module against the printed module size, the reads against the printed texts, and the
belt calibration (:class:`vision.geometry.Calibration`) for the camera.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sorter.vision.geometry import CalibrationError, chessboard_corners, from_chessboard

DPI = 300
PX_PER_MM = DPI / 25.4
A4_MM = (210.0, 297.0)
MIL = 0.0254  # mm

INNER = (7, 5)          # chessboard inner corners (columns, rows)
SQUARE_MM = 20.0
BOARD_MM = (25.0, 20.0)  # top-left of the board's squares


@dataclass(frozen=True)
class CodeOnCard:
    key: str
    symbology: str
    text: str
    module_mm: float
    x_mm: float  # top-left of the symbol (without quiet zone)
    y_mm: float
    height_mm: float = 0.0  # bar height of a 1-D code


LAYOUT = (
    CodeOnCard("code128_20mil", "code128", "CARD128-20MIL", 20 * MIL, 25.0, 160.0, 22.0),
    CodeOnCard("code128_10mil", "code128", "CARD128-10MIL-0001", 10 * MIL, 25.0, 192.0, 15.0),
    CodeOnCard("qrcode", "qrcode", "SORTER TEST CARD QR 40MIL", 40 * MIL, 25.0, 222.0),
    CodeOnCard("datamatrix", "datamatrix", "SORTER-CARD-DM-40MIL", 40 * MIL, 120.0, 222.0),
)
RULER_MM = (25.0, 280.0, 150.0)  # x, y of its zero tick, length


def _mm(v: float) -> int:
    return int(round(v * PX_PER_MM))


def symbol_matrix(symbology: str, text: str) -> np.ndarray:
    """The symbol's modules, 1 = dark, without quiet zone (a 1-D code: one row)."""
    if symbology == "code128":
        from sorter.vision.code128 import code128_modules
        return code128_modules(text).reshape(1, -1).astype(np.uint8)
    if symbology == "qrcode":
        import segno
        q = segno.make_qr(text, error="m")
        return np.asarray(q.matrix, np.uint8)
    if symbology == "datamatrix":
        import zxingcpp
        img = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.DataMatrix)
                         .to_image(scale=1, add_quiet_zones=False))
        return (img < 128).astype(np.uint8)
    raise ValueError(f"no card symbol for {symbology}")


def code_size_mm(code: CodeOnCard) -> tuple[float, float]:
    m = symbol_matrix(code.symbology, code.text)
    w = m.shape[1] * code.module_mm
    return w, (code.height_mm if m.shape[0] == 1 else m.shape[0] * code.module_mm)


def code_centre_mm(code: CodeOnCard) -> tuple[float, float]:
    w, h = code_size_mm(code)
    return code.x_mm + w / 2, code.y_mm + h / 2


def board_corners_mm() -> np.ndarray:
    """Card mm of the chessboard's inner corners, row by row (as OpenCV lists them)."""
    cols, rows = INNER
    x0, y0 = BOARD_MM[0] + SQUARE_MM, BOARD_MM[1] + SQUARE_MM
    return np.array([[x0 + c * SQUARE_MM, y0 + r * SQUARE_MM] for r in range(rows) for c in range(cols)], np.float64)


def render_card() -> np.ndarray:
    """The card at 300 dpi, grey (2480 x 3508 px)."""
    w, h = _mm(A4_MM[0]), _mm(A4_MM[1])
    img = np.full((h, w), 255, np.uint8)
    cols, rows = INNER
    sq = _mm(SQUARE_MM)
    bx, by = _mm(BOARD_MM[0]), _mm(BOARD_MM[1])
    for r in range(rows + 1):
        for c in range(cols + 1):
            if (r + c) % 2 == 0:
                img[by + r * sq: by + (r + 1) * sq, bx + c * sq: bx + (c + 1) * sq] = 0
    font = cv2.FONT_HERSHEY_SIMPLEX
    for code in LAYOUT:
        m = symbol_matrix(code.symbology, code.text)
        mod = code.module_mm * PX_PER_MM
        if abs(mod - round(mod)) > 1e-6:
            raise ValueError(f"{code.key}: {code.module_mm} mm is not whole pixels at {DPI} dpi")
        mod = int(round(mod))
        hh = _mm(code.height_mm) if m.shape[0] == 1 else m.shape[0] * mod
        sym = np.repeat(np.repeat(m, mod, axis=1), hh if m.shape[0] == 1 else mod, axis=0)
        x, y = _mm(code.x_mm), _mm(code.y_mm)
        img[y: y + sym.shape[0], x: x + sym.shape[1]][sym > 0] = 0
        cv2.putText(img, f"{code.symbology} {code.module_mm:.3f} mm/module ({code.module_mm / MIL:.0f} mil)",
                    (x, y + sym.shape[0] + _mm(4)), font, 1.0, 0, 2, cv2.LINE_AA)
    rx, ry, rl = RULER_MM
    x0, y0 = _mm(rx), _mm(ry)
    cv2.line(img, (x0, y0), (_mm(rx + rl), y0), 0, 3)
    for k in range(int(rl) + 1):
        tick = 6.0 if k % 10 == 0 else (4.0 if k % 5 == 0 else 2.5)
        x = _mm(rx + k)
        cv2.line(img, (x, y0), (x, y0 - _mm(tick)), 0, 2)
        if k % 10 == 0:
            cv2.putText(img, str(k), (x - 12, y0 - _mm(7)), font, 0.9, 0, 2, cv2.LINE_AA)
    cv2.putText(img, "sorter test card - print at 100 % (no fit to page): the ruler must measure 150 mm",
                (_mm(20), _mm(290)), font, 1.1, 0, 2, cv2.LINE_AA)
    cv2.putText(img, f"chessboard {INNER[0]}x{INNER[1]} inner corners, {SQUARE_MM:.0f} mm squares; belt runs along x",
                (_mm(25), _mm(150)), font, 1.0, 0, 2, cv2.LINE_AA)
    return img


def pdf_bytes(gray: np.ndarray, page_mm: tuple[float, float] = A4_MM) -> bytes:
    """A one-page PDF showing ``gray`` over the whole page at exactly ``page_mm``."""
    h, w = gray.shape
    pw, ph = page_mm[0] / 25.4 * 72, page_mm[1] / 25.4 * 72
    data = zlib.compress(np.ascontiguousarray(gray, np.uint8).tobytes(), 9)
    content = f"q {pw:.3f} 0 0 {ph:.3f} 0 0 cm /Im0 Do Q".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.3f} {ph:.3f}] "
         "/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>").encode(),
        (f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
         f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(data)} >>\nstream\n").encode() + data + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_card(folder: str | Path) -> dict[str, Path]:
    """card.png, card.pdf and card.json (the layout) in ``folder``."""
    from sorter.vision.geometry import atomic_write_json

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    img = render_card()
    png, pdf = d / "test-card.png", d / "test-card.pdf"
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {png}")
    # PNG with its dpi, so that an image viewer prints it at size: pHYs is not written by OpenCV;
    # the PDF is the file to print
    png.write_bytes(buf.tobytes())
    pdf.write_bytes(pdf_bytes(img))
    layout = d / "test-card.json"
    atomic_write_json(layout, layout_json())
    return {"png": png, "pdf": pdf, "json": layout}


def layout_json() -> dict:
    return {"dpi": DPI, "page_mm": list(A4_MM), "chessboard": {"inner": list(INNER), "square_mm": SQUARE_MM,
                                                             "first_corner_mm": board_corners_mm()[0].tolist()},
            "codes": [{"key": c.key, "symbology": c.symbology, "text": c.text, "module_mm": round(c.module_mm, 4),
                       "centre_mm": [round(v, 2) for v in code_centre_mm(c)]} for c in LAYOUT],
            "ruler_mm": list(RULER_MM)}


# ------------------------------------------------------------------------------ analysis
class CardError(Exception):
    pass


def _corners(gray: np.ndarray) -> np.ndarray:
    cols, rows = INNER
    corners = chessboard_corners(gray, (cols, rows))
    if corners is None:
        raise CardError(f"no {cols}x{rows} chessboard of the test card in the image (is all of the card in view, "
                        "flat and lit evenly?)")
    return corners.reshape(-1, 2).astype(np.float64)


def local_mm_per_px(H: np.ndarray, px: tuple[float, float]) -> float:
    """Card mm per image pixel at ``px`` (the mean of the homography's two local stretches)."""
    p = np.array([[px, (px[0] + 1, px[1]), (px[0], px[1] + 1)]], np.float64).reshape(-1, 1, 2)
    q = cv2.perspectiveTransform(p, H).reshape(-1, 2)
    return float((np.hypot(*(q[1] - q[0])) + np.hypot(*(q[2] - q[0]))) / 2)


def expected_ppm(code: CodeOnCard, card_to_image: np.ndarray) -> float:
    """Pixels per module the printed code should have in the image: its printed extent across the
    modules, projected through ``card_to_image`` (card mm -> pixels), over its module count."""
    m = symbol_matrix(code.symbology, code.text)
    w, h = code_size_mm(code)
    x0, y0 = code.x_mm, code.y_mm
    if m.shape[0] == 1:  # 1-D: left edge to right edge, at mid-height
        pts, n = [[x0, y0 + h / 2], [x0 + w, y0 + h / 2]], [m.shape[1]]
    else:
        pts, n = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], None
    q = cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), card_to_image).reshape(-1, 2)
    if n is not None:
        return float(np.hypot(*(q[1] - q[0]))) / n[0]
    rows, cols = m.shape
    sides = [float(np.hypot(*(q[(i + 1) % 4] - q[i]))) for i in range(4)]
    return (sides[0] / cols + sides[2] / cols + sides[1] / rows + sides[3] / rows) / 4


def analyse_card(gray: np.ndarray, downstream: str = "right", camera: str = "", decode_fn=None) -> dict:
    """What one image of the test card says: see the module docstring. Raises CardError."""
    from sorter.vision.commission.measures import code_geometry

    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    img = _corners(gray)
    truth = board_corners_mm()
    if decode_fn is None:
        from sorter.vision.decode import decode as decode_fn
    codes = decode_fn(gray)
    expected = {(c.symbology, c.text): c for c in LAYOUT}
    # OpenCV may list the corners from either end of the board: the homography that puts the
    # codes it read where the card has them is the right one
    best = None
    for order in (img, img[::-1]):
        H, _ = cv2.findHomography(order, truth, 0)
        if H is None:
            continue
        misses = []
        for c in codes:
            want = expected.get((c.symbology, c.text))
            if want is None:
                continue
            centre = np.asarray(c.polygon, np.float64).reshape(-1, 2).mean(0)
            got = cv2.perspectiveTransform(centre.reshape(1, 1, 2), H).reshape(2)
            misses.append(float(np.hypot(*(got - code_centre_mm(want)))))
        score = (sum(m < 15 for m in misses), -sum(misses))
        if best is None or score > best[0]:
            best = (score, H, order)
    if best is None:
        raise CardError("could not fit the card's chessboard")
    (placed, _), H, order = best
    res = cv2.perspectiveTransform(order.reshape(-1, 1, 2), H).reshape(-1, 2) - truth
    h, w = gray.shape[:2]
    reads = []
    for c in codes:
        want = expected.get((c.symbology, c.text))
        g = code_geometry(gray, c.symbology, c.text, c.polygon)
        centre = np.asarray(c.polygon, np.float64).reshape(-1, 2).mean(0)
        entry = {"symbology": c.symbology, "text": c.text, "on_card": want is not None,
                 "ppm": None if g.ppm is None else round(g.ppm, 2)}
        if want is not None:
            entry["key"] = want.key
            entry["ppm_expected"] = round(expected_ppm(want, np.linalg.inv(H)), 2)
            entry["module_mm"] = round(want.module_mm, 4)
        reads.append(entry)
    read_keys = {r.get("key") for r in reads}
    # the card lies square on the belt, its x along the travel (printed on it): downstream is the
    # image direction of card x at the view's centre, the way ``downstream`` roughly points
    from sorter.vision.geometry import DIRECTIONS
    c = np.array([[[w / 2.0, h / 2.0]]])
    q = cv2.perspectiveTransform(c, H).reshape(2)
    c2 = cv2.perspectiveTransform(np.array([[q + (10.0, 0.0)]]), np.linalg.inv(H)).reshape(2)
    d = c2 - c.reshape(2)
    d = d / max(float(np.hypot(*d)), 1e-9)
    if np.dot(d, DIRECTIONS[downstream]) < 0:
        d = -d
    try:
        cal = from_chessboard(gray, INNER, SQUARE_MM, (float(d[0]), float(d[1])), camera=camera)
    except CalibrationError as exc:
        raise CardError(str(exc)) from exc
    corners_img = cv2.perspectiveTransform(np.array([[[0, 0]], [[w - 1, 0]], [[w - 1, h - 1]], [[0, h - 1]]], np.float64), H)
    fov = corners_img.reshape(-1, 2)
    cal.method = "test_card"
    cal.meta.update({"card": {"mm_per_px_centre": round(local_mm_per_px(H, (w / 2, h / 2)), 4),
                              "codes_read": sorted(k for k in read_keys if k)}})
    return {
        "frame_size": [w, h],
        "mm_per_px": round(local_mm_per_px(H, (w / 2, h / 2)), 4),
        "corner_residual_mm": round(float(np.sqrt((res ** 2).sum(1)).mean()), 3),
        "H_card_mm": [[float(v) for v in row] for row in H],
        "orientation_checked_by_codes": placed,
        "field_of_view_mm": {"width": round(float(np.hypot(*(fov[1] - fov[0]))), 1),
                             "height": round(float(np.hypot(*(fov[3] - fov[0]))), 1)},
        "reads": reads,
        "missing": [c.key for c in LAYOUT if c.key not in read_keys],
        "calibration": cal,
    }
