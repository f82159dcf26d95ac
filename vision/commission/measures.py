"""Image measures of one camera frame, for setting a camera up over the belt.

* **focus**: the variance of the Laplacian of the grey frame (higher = sharper). It depends on the
  scene, so it is only compared with itself: :class:`FocusMeter` keeps the best value seen while
  the technician turns the lens, and says how far below it the current frame is.
* **exposure**: the brightness histogram, the share of saturated pixels (>= 250: bars or paper
  clipped to white lose their edges) and of black ones.
* **pixels per module** of each decoded code: the symbol's width (1-D) or side (2-D) in pixels over
  its module count. The count comes from the code itself: Code 128 from its text (start, data,
  check, stop: the project's own encoder), EAN-13/UPC-A 95, UPC-E 51, QR 17 + 4 x version, Data
  Matrix its rows x columns, the last two as zxing-cpp reports the symbol (its ``Version``).
* **motion blur**: during one exposure the belt moves ``speed x exposure``; in modules that is
  ``speed x exposure / module_mm`` and must stay under one module, so the longest exposure that
  keeps a code readable is ``module_mm / speed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

SATURATED = 250  # grey level from which a pixel counts as clipped white
BLACK = 5

# modules of a 1-D symbol without its quiet zones, where the symbology fixes it
FIXED_MODULES = {"ean13": 95, "upca": 95, "upce": 51}


def focus_score(gray: np.ndarray) -> float:
    """Variance of the Laplacian: the energy of fine detail. Compare only frames of one scene."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F, ksize=3).var())


@dataclass
class FocusMeter:
    """The best focus score so far, to turn the lens towards (reset when the scene changes)."""

    best: float = 0.0
    last: float = 0.0

    def add(self, gray: np.ndarray) -> dict:
        self.last = focus_score(gray)
        self.best = max(self.best, self.last)
        share = self.last / self.best if self.best > 0 else 0.0
        return {"focus": round(self.last, 1), "focus_best": round(self.best, 1), "focus_of_best": round(share, 3)}

    def reset(self) -> None:
        self.best = self.last = 0.0


def exposure_stats(gray: np.ndarray, bins: int = 32) -> dict:
    """Histogram (``bins`` buckets over 0..255, counts as shares), mean, saturated and black shares."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    n = float(gray.size) or 1.0
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    per = hist.reshape(bins, 256 // bins).sum(1) / n
    return {"mean": round(float(gray.mean()), 1),
            "saturated_share": round(float(hist[SATURATED:].sum() / n), 5),
            "black_share": round(float(hist[:BLACK + 1].sum() / n), 5),
            "histogram": [round(float(v), 5) for v in per]}


def blur_modules(belt_speed_mps: float, exposure_s: float, module_mm: float) -> float:
    """How many modules the belt moves during one exposure (must stay under 1)."""
    if module_mm <= 0:
        raise ValueError("module_mm must be > 0")
    return belt_speed_mps * 1000.0 * exposure_s / module_mm


def max_exposure_s(belt_speed_mps: float, module_mm: float, modules: float = 1.0) -> float:
    """The longest exposure whose motion blur stays under ``modules`` modules."""
    if belt_speed_mps <= 0:
        return math.inf
    return modules * module_mm / (belt_speed_mps * 1000.0)


def exposure_advice(belt_speed_mps: float, module_mm: float, exposure_s: float | None, stats: dict | None) -> dict:
    """What to tell the technician about the exposure: blur at belt speed, the longest exposure
    that keeps it under one module, and the histogram's verdict."""
    limit = max_exposure_s(belt_speed_mps, module_mm)
    out: dict = {"belt_speed_mps": belt_speed_mps, "module_mm": module_mm,
                 "max_exposure_ms": round(limit * 1000, 3), "exposure_ms": None, "blur_modules": None, "advice": []}
    if exposure_s is not None and exposure_s > 0:
        b = blur_modules(belt_speed_mps, exposure_s, module_mm)
        out["exposure_ms"] = round(exposure_s * 1000, 3)
        out["blur_modules"] = round(b, 3)
        if b >= 1:
            out["advice"].append(f"exposure {exposure_s * 1000:.2f} ms blurs {b:.1f} modules at "
                                 f"{belt_speed_mps} m/s: shorten it to under {limit * 1000:.2f} ms "
                                 "(more light or gain)")
        elif b > 0.5:
            out["advice"].append(f"blur {b:.2f} module: readable, little margin")
    else:
        out["advice"].append(f"exposure unknown: keep it under {limit * 1000:.2f} ms (manual exposure)")
    if stats:
        if stats["saturated_share"] > 0.02:
            out["advice"].append(f"{100 * stats['saturated_share']:.1f}% of the pixels are clipped white: "
                                 "less gain or light")
        elif stats["mean"] < 40:
            out["advice"].append(f"dark image (mean {stats['mean']:.0f}): more light or gain")
    return out


# ------------------------------------------------------------------------------ pixels per module
@dataclass
class CodeGeometry:
    symbology: str
    text: str
    polygon: list[tuple[float, float]]
    modules: int | None  # across a 1-D symbol, or along one side of a 2-D one
    width_px: float  # the symbol's extent those modules span
    ppm: float | None = None
    version: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"symbology": self.symbology, "text": self.text, "polygon": [[round(x, 1), round(y, 1)] for x, y in self.polygon],
                "modules": self.modules, "width_px": round(self.width_px, 1),
                "ppm": None if self.ppm is None else round(self.ppm, 2), "version": self.version}


def one_d_modules(symbology: str, text: str) -> int | None:
    if symbology in FIXED_MODULES:
        return FIXED_MODULES[symbology]
    if symbology == "code128":
        from sorter.vision.code128 import code128_modules
        try:
            return int(len(code128_modules(text)))
        except ValueError:
            return None
    return None


def two_d_modules(symbology: str, version: str | None) -> tuple[int, int] | None:
    """(rows, columns) of a 2-D symbol from zxing-cpp's ``Version``."""
    if not version:
        return None
    try:
        if symbology == "qrcode":
            n = 17 + 4 * int(version)
            return n, n
        if symbology == "datamatrix":
            rows, _, cols = version.partition("x")
            return int(rows), int(cols or rows)
    except ValueError:
        return None
    return None


_ZX_FORMATS = {"qrcode": "QRCode", "datamatrix": "DataMatrix", "code128": "Code128", "ean13": "EAN13",
               "upca": "UPCA", "upce": "UPCE"}


def _zxing_reread(gray: np.ndarray, polygon, symbology: str, text: str):
    """zxing-cpp's read of the code at ``polygon``: its corner points (at the symbol's edges) and
    its ``Version``. None when zxing-cpp is missing or does not read it there."""
    try:
        import zxingcpp
    except ImportError:
        return None
    fmt = _ZX_FORMATS.get(symbology)
    if fmt is None:
        return None
    p = np.asarray(polygon, np.float64).reshape(-1, 2)
    h, w = gray.shape[:2]
    span = float(max(np.ptp(p[:, 0]), np.ptp(p[:, 1]), 20.0))
    x0, y0 = int(max(0, p[:, 0].min() - 0.4 * span)), int(max(0, p[:, 1].min() - 0.4 * span))
    x1, y1 = int(min(w, p[:, 0].max() + 0.4 * span)), int(min(h, p[:, 1].max() + 0.4 * span))
    crop = np.ascontiguousarray(gray[y0:y1, x0:x1])
    if crop.size == 0:
        return None
    try:
        res = zxingcpp.read_barcodes(crop, formats=getattr(zxingcpp.BarcodeFormat, fmt))
    except Exception:  # noqa: BLE001 - a measure, never a crash
        return None
    for r in res:
        if r.text != text:
            continue
        pos = r.position
        pts = [(pt.x + x0, pt.y + y0) for pt in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
        return pts, (r.extra or {}).get("Version")
    return None


def code_geometry(gray: np.ndarray, symbology: str, text: str, polygon) -> CodeGeometry:
    """Pixels per module of one decoded code (``polygon`` from the decoder's result)."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    poly = [(float(x), float(y)) for x, y in polygon]
    got = _zxing_reread(gray, poly, symbology, text)
    version = None
    if got is not None:
        pts, version = got
        q = np.asarray(pts, np.float64)
        if symbology in ("qrcode", "datamatrix"):
            # zxing-cpp's corners are the outer corners of the symbol's corner modules; top and
            # bottom span its columns, left and right its rows (a Data Matrix may be oblong)
            sides = [float(np.hypot(*(q[(i + 1) % 4] - q[i]))) for i in range(4)]
            rc = two_d_modules(symbology, version)
            if rc is not None:
                rows, cols = rc
                ppm2 = (sides[0] / cols + sides[2] / cols + sides[1] / rows + sides[3] / rows) / 4
                return CodeGeometry(symbology, text, [(float(x), float(y)) for x, y in pts], cols,
                                    (sides[0] + sides[2]) / 2, ppm2, version)
            width = float(np.mean(sides))
        else:  # left edge (top-left, bottom-left) to right edge (top-right, bottom-right)
            width = float(np.hypot(*((q[1] + q[2]) / 2 - (q[0] + q[3]) / 2)))
        poly = [(float(x), float(y)) for x, y in pts]
    else:
        rect = cv2.minAreaRect(np.asarray(poly, np.float32).reshape(-1, 1, 2)) if len(poly) >= 3 else None
        width = float(max(rect[1])) if rect is not None else 0.0
    modules = None if symbology in ("qrcode", "datamatrix") else one_d_modules(symbology, text)
    ppm = width / modules if modules and width > 0 else None
    return CodeGeometry(symbology, text, poly, modules, width, ppm, version)


def frame_measures(gray: np.ndarray, codes, focus: FocusMeter | None = None) -> dict:
    """Everything the page and the report show about one frame: focus, exposure, each code's ppm."""
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    out = focus.add(gray) if focus is not None else {"focus": round(focus_score(gray), 1)}
    out.update(exposure_stats(gray))
    out["codes"] = [code_geometry(gray, c.symbology, c.text, c.polygon).to_json() for c in codes]
    ppms = [c["ppm"] for c in out["codes"] if c["ppm"]]
    out["ppm_min"] = round(min(ppms), 2) if ppms else None
    out["frame_size"] = [int(gray.shape[1]), int(gray.shape[0])]
    return out


def annotate(gray: np.ndarray, measures: dict, blur: dict | None = None) -> np.ndarray:
    """A BGR copy of the frame with each code outlined, its text and ppm, and the focus/exposure line."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if gray.ndim == 2 else gray.copy()
    scale = max(0.5, img.shape[1] / 1600)
    for c in measures.get("codes", []):
        pts = np.asarray(c["polygon"], np.int32).reshape(-1, 1, 2)
        ok = c["ppm"] is not None and c["ppm"] >= 2.0
        colour = (0, 200, 0) if ok else (0, 140, 255)
        cv2.polylines(img, [pts], True, colour, max(2, int(2 * scale)))
        x, y = pts.reshape(-1, 2).min(0)
        label = f"{c['symbology']} {c['text'][:24]} {c['ppm'] or '?'} px/module"
        # the text is the barcode's: ASCII only in an image (cv2 draws nothing else), cut short
        label = label.encode("ascii", "replace").decode("ascii")
        cv2.putText(img, label, (int(x), max(12, int(y) - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                    max(1, int(scale)), cv2.LINE_AA)
    line = (f"focus {measures.get('focus')} (best {measures.get('focus_best', '-')})  "
            f"saturated {100 * measures.get('saturated_share', 0):.2f}%  mean {measures.get('mean')}")
    if blur and blur.get("blur_modules") is not None:
        line += f"  blur {blur['blur_modules']} module"
    cv2.putText(img, line, (10, int(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 255),
                max(1, int(1.5 * scale)), cv2.LINE_AA)
    return img
