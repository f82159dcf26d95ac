"""The two decoding engines behind one shape of answer: ZBar (through pyzbar's ctypes binding,
configured per call) and zxing-cpp (optional), each returning raw reads (symbology, bytes, points).

Each engine's quirks stay here, out of the image work: ZBar's UPC-E expansion, its 1-D reads from a
single scan line, its QR charset guess (binary mode where the library has it); zxing-cpp's formats
(3.x: one format names a family, e.g. QR Code covers Micro QR, Code 39 covers Code 32 and full
ASCII) and its ECI stream, from which the text of a 2-D symbol is taken in the charset it declares.
Also the names a caller may give for symbologies and engines.
"""

from __future__ import annotations

from ctypes import c_void_p, cast, string_at
from dataclasses import dataclass
from typing import Iterable

import numpy as np


try:  # pragma: no cover - import guard
    from pyzbar import pyzbar as _pz
    from pyzbar.wrapper import ZBarConfig, ZBarSymbol
except Exception as exc:  # pragma: no cover
    raise ImportError(f"pyzbar with the system ZBar library (libzbar0) is required: {exc}") from exc

from sorter.vision.decode.text import ONE_D, SYMBOLOGIES, TWO_D, eci_bytes_to_text, qr_bytes_to_text, recover_qr_text


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
_ZXING_ONLY = ("datamatrix", "pdf417", "upce")
DEFAULT_SYMBOLOGIES = SYMBOLOGIES  # None = every symbology a camera config names

_CFG_BINARY = 4  # ZBAR_CFG_BINARY (zbar >= 0.23): QR data returned as raw bytes


@dataclass
class _Raw:
    symbology: str
    data: bytes
    points: list[tuple[int, int]]
    binary: bool = False  # data are the symbol's raw bytes (no charset guessed)
    quality: int = 0  # ZBar: scan lines that decoded it (0: another engine)
    text: str | None = None  # the text as the engine decoded it from the symbol's own charset (ECI)
    engine: str = "zbar"


_qr_binary_ok: bool | None = None


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
    if raw.text is not None:
        return raw.text
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


try:  # the second engine (optional)
    import zxingcpp as _zx

    _F = _zx.BarcodeFormat
    # our names -> the zxing-cpp formats read for them (each a family in 3.x)
    _ZX_FORMAT = {
        "code128": (_F.Code128,), "code39": (_F.Code39,), "itf": (_F.ITF,), "ean13": (_F.EAN13, _F.ISBN),
        "upca": (_F.UPCA,), "upce": (_F.UPCE,), "qrcode": (_F.QRCode,), "datamatrix": (_F.DataMatrix,),
        "pdf417": (_F.PDF417,),
    }
    _ZX_NAME = {}  # every zxing-cpp format (family member) -> our name
    for _ours, _fmts in _ZX_FORMAT.items():
        for _f in _fmts:
            for _member in _zx.barcode_formats_list(_f):
                _ZX_NAME.setdefault(_member, _ours)
except Exception:  # pragma: no cover
    _zx = None
    _ZX_FORMAT, _ZX_NAME = {}, {}

ENGINES = ("zbar", "zxing") if _zx is not None else ("zbar",)
DEFAULT_ENGINES = ENGINES


def _zxing(img: np.ndarray, symbologies: Iterable[str], rotate: bool = False, downscale: bool = False,
           invert: bool = False) -> list[_Raw]:
    """One zxing-cpp scan of ``img`` for ``symbologies`` (our names). Read in its HexECI text mode:
    the symbol's bytes with its ECI switches, so that a 2-D symbol's text is decoded in the charset
    it declares, and only unmarked byte data is guessed (:func:`qr_bytes_to_text`)."""
    if _zx is None:
        return []
    wanted = [s for s in symbologies if s in _ZX_FORMAT]
    # (zxing-cpp reads a 1-D code from a strip a few pixels high: a scanner's line image)
    if not wanted or img.shape[0] < 1 or img.shape[1] < 8:
        return []
    formats = tuple(f for w in wanted for f in _ZX_FORMAT[w])
    img = np.ascontiguousarray(img)
    found = _zx.read_barcodes(img, formats=formats, try_rotate=rotate, try_downscale=downscale, try_invert=invert,
                              text_mode=_zx.TextMode.HexECI)
    if invert and not found:
        # zxing-cpp 3.1's own try_invert was measured reading no light-on-dark 1-D code in a crop
        # that it reads once inverted here
        found = _zx.read_barcodes(255 - img, formats=formats, try_rotate=rotate, try_downscale=downscale,
                                  try_invert=False, text_mode=_zx.TextMode.HexECI)
    out = []
    for r in found:
        if not r.valid:
            continue
        name = _ZX_NAME.get(r.format)
        if name is None:
            continue
        p = r.position
        pts = [(p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y),
               (p.bottom_right.x, p.bottom_right.y), (p.bottom_left.x, p.bottom_left.y)]
        data = bytes(r.bytes)
        out.append(_Raw(name, data, pts, binary=True, text=_zxing_text(name, data, r.text), engine="zxing"))
    return out


def _zxing_text(name: str, data: bytes, hex_eci: str) -> str | None:
    """The text of a zxing-cpp read: 1-D codes are ASCII (Code 39's full-ASCII, Code 32 and PZN
    forms already resolved by zxing-cpp); a 2-D symbol's stream (AIM prefix, then bytes with ECI
    switches) differs from its plain bytes exactly when it carries an ECI."""
    if name not in TWO_D:
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            return None
    try:
        stream = bytes.fromhex(hex_eci)
    except ValueError:
        return qr_bytes_to_text(data)
    stream = stream[3:] if stream[:1] == b"]" else stream
    if stream == data:
        return qr_bytes_to_text(data)
    return eci_bytes_to_text(stream)


def _normalise_symbologies(symbologies: Iterable[str] | None) -> tuple[str, ...]:
    if symbologies is None:
        return DEFAULT_SYMBOLOGIES
    if isinstance(symbologies, str):
        symbologies = [symbologies]
    out = []
    for s in symbologies:
        key = s.strip().lower().replace("-", "").replace("_", "")
        key = {"qr": "qrcode", "microqr": "qrcode", "microqrcode": "qrcode", "i25": "itf", "interleaved2of5": "itf",
               "ean": "ean13", "upc": "upca", "dm": "datamatrix", "pdf": "pdf417"}.get(key, key)
        if key not in SYMBOLOGIES:
            raise ValueError(f"unknown symbology {s!r}; known: {', '.join(SYMBOLOGIES)}")
        if key not in out:
            out.append(key)
    return tuple(out)


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
