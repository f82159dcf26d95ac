"""Text as the symbol encodes it, and every symbology a camera config names.

QR codes made with segno in UTF-8, GBK, Shift-JIS bytes, Kanji mode and with ECI; Micro QR from
segno's default; Data Matrix and PDF417 from zxing-cpp's writer; light-on-dark codes; Code 39 with
and without its mod-43 check, ITF lengths and check digit, UPC-E, under the line's read rules.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
import segno

from sorter.vision.decode import ReadRules, decode, eci_bytes_to_text, qr_bytes_to_text, validate
from sorter.vision.labels import LabelSpec, render_label

zxingcpp = pytest.importorskip("zxingcpp")


def segno_image(qr, scale: int = 4) -> np.ndarray:
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=4)
    return cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)


def on_a_box(img: np.ndarray, angle: float, invert: bool = False) -> np.ndarray:
    """The code on grey cardboard, rotated, softened, with sensor noise (inverted: light on dark)."""
    if invert:
        img = 255 - img
    h, w = img.shape
    side = int(math.hypot(h, w)) + 120
    canvas = np.full((side, side), 255 if not invert else 0, np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = img
    M = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    canvas = cv2.warpAffine(canvas, M, (side, side), flags=cv2.INTER_LINEAR, borderValue=255 if not invert else 0)
    canvas = cv2.LUT(canvas, np.linspace(35, 220, 256).astype(np.uint8))
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.5)
    rng = np.random.default_rng(int(angle))
    return np.clip(canvas + rng.normal(0, 2, canvas.shape), 0, 255).astype(np.uint8)


def texts(img, symbology: str | None = None, **kw) -> list[str]:
    return [c.text for c in decode(img, **kw) if symbology is None or c.symbology == symbology]


def zxing_image(text: str, fmt: str, scale: int = 3) -> np.ndarray:
    img = np.asarray(zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt)).to_image(scale=scale))
    return cv2.copyMakeBorder(img, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255)


# ------------------------------------------------------------------------------------- QR charsets
QR_CASES = {
    # name: (content, segno options); (text, charset): the text's bytes in that charset, no ECI
    "utf-8": ("温岭 SF1234567890123", {"encoding": "utf-8"}),
    "utf-8 with ECI": ("温岭 SF1234567890123", {"encoding": "utf-8", "eci": True}),
    "GBK bytes": (("温岭市 ZT75123456789", "gbk"), {}),
    "GB18030 with ECI": ("温岭市 ZT75123456789", {"encoding": "gb18030", "eci": True}),
    "Shift-JIS bytes": (("Google モバイル", "shift_jis"), {}),
    "Shift-JIS with ECI": ("Google モバイル", {"encoding": "shift_jis", "eci": True}),
    "Kanji mode": ("点茗", {"mode": "kanji"}),
    "Latin-1": ("Café Zürich", {"encoding": "latin-1"}),
}


@pytest.mark.parametrize("name", list(QR_CASES))
@pytest.mark.parametrize("angle", [0, 37])
def test_qr_text_in_the_charset_the_symbol_says(name, angle):
    content, opts = QR_CASES[name]
    text = content[0] if isinstance(content, tuple) else content
    qr = segno.make(content[0].encode(content[1]) if isinstance(content, tuple) else content, micro=False, **opts)
    if name == "Kanji mode":
        assert qr.mode == "kanji"  # the test means what it says
    img = on_a_box(segno_image(qr), angle)
    assert texts(img, "qrcode") == [text]


def test_eci_stream_segments_each_in_their_charset():
    # zxing-cpp's own multi-ECI sample: Latin-1, Shift-JIS, GB18030, Greek, Windows-1251, Latin-2
    stream = (b"\\000003AB\\000020\x93_\xe4\xaa\x83e\\000029\xf7\xfe\xb0\xf2\xf4\xf6\\000009\xe1"
              b"\\000022\x90\\000004\xac")
    assert eci_bytes_to_text(stream) == "AB点茗テ齄膀赧αђŹ"
    assert eci_bytes_to_text(b"\\000026a\\\\b") == "a\\b"  # an escaped backslash is one backslash


@pytest.mark.parametrize("text,encoding", [("温岭市横峰街道", "gbk"), ("Google モバイル", "shift_jis"),
                                           ("点茗", "shift_jis"), ("SF123 温岭", "utf-8"), ("Café", "latin-1")])
def test_unmarked_byte_data_guess(text, encoding):
    """No ECI: UTF-8, then GB18030 only for common hanzi, then the most plausible of Shift-JIS,
    GB18030 and Latin-1."""
    assert qr_bytes_to_text(text.encode(encoding)) == text


def test_gbk_guess_does_not_take_shift_jis_katakana():
    """Katakana pairs are valid GBK (rare hanzi): the old guess turned モバイル into 儌僶僀儖."""
    raw = "モバイル".encode("shift_jis")
    assert raw.decode("gbk")  # valid GBK, which is the trap
    assert qr_bytes_to_text(raw) == "モバイル"


# ------------------------------------------------------------------------------------- symbologies
def test_micro_qr_from_segnos_default_is_read():
    qr = segno.make("SF12345")
    assert qr.is_micro
    assert texts(on_a_box(segno_image(qr, scale=5), 0), "qrcode") == ["SF12345"]


@pytest.mark.parametrize("fmt,ours,text,angle", [
    ("DataMatrix", "datamatrix", "JT5012345678901", 0), ("DataMatrix", "datamatrix", "JT5012345678901", 12),
    ("DataMatrix", "datamatrix", "温岭 YT8812345678901", 90), ("PDF417", "pdf417", "ZTO 7501234567890 Wenling", 0),
    ("PDF417", "pdf417", "ZTO 7501234567890 Wenling", 90), ("PDF417", "pdf417", "ZTO 7501234567890 Wenling", 180)])
def test_data_matrix_and_pdf417_are_read_by_default(fmt, ours, text, angle):
    img = on_a_box(zxing_image(text, fmt, scale=4), angle)
    assert texts(img, ours) == [text]


@pytest.mark.parametrize("what", ["code128", "qrcode", "datamatrix", "ean13"])
@pytest.mark.parametrize("angle", [0, 150])
def test_inverted_codes_are_read(what, angle):
    if what == "code128":
        img, want = zxing_image("SF1234567890123", "Code128"), "SF1234567890123"
        img = cv2.resize(img, (img.shape[1], 120), interpolation=cv2.INTER_NEAREST)
    elif what == "ean13":
        img, want = zxing_image("6901234567892", "EAN13"), "6901234567892"
        img = cv2.resize(img, (img.shape[1], 120), interpolation=cv2.INTER_NEAREST)
    elif what == "qrcode":
        img, want = segno_image(segno.make("SF1234567890123|温岭", micro=False)), "SF1234567890123|温岭"
    else:
        img, want = zxing_image("JT5012345678901", "DataMatrix", scale=4), "JT5012345678901"
    assert texts(on_a_box(img, angle, invert=True), what) == [want]


def test_inverted_waybill_label_is_read():
    rng = np.random.default_rng(4)
    label = render_label(LabelSpec("SF1234567890123"), rng, module_px=2.5)
    assert "SF1234567890123" in texts(on_a_box(label, 200, invert=True), "code128")


def _code39_check(text: str) -> str:
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"
    return chars[sum(chars.index(c) for c in text) % 43]


@pytest.mark.parametrize("angle", [0, 63])
def test_code39_with_and_without_its_check(angle):
    body = "JD0012345678"
    with_check = body + _code39_check(body)
    img_plain = on_a_box(cv2.resize(zxing_image(body, "Code39"), None, fx=1, fy=3), angle)
    img_check = on_a_box(cv2.resize(zxing_image(with_check, "Code39"), None, fx=1, fy=3), angle)
    assert texts(img_plain, "code39") == [body]  # optional (the default): read as printed
    assert texts(img_check, "code39") == [with_check]
    required = ReadRules(code39_check="required")
    assert texts(img_plain, "code39", rules=required) == []  # its last character is no check
    assert texts(img_check, "code39", rules=required) == [with_check]


def test_itf_lengths_and_check_digit_rules():
    assert validate("itf", "1515")  # what zxing-cpp accepts by default
    assert not validate("itf", "15")
    assert not validate("itf", "12345678", ReadRules(itf_lengths=(10, 14)))
    assert validate("itf", "1234567890", ReadRules(itf_lengths=(10, 14)))
    assert validate("itf", "12345678901231", ReadRules(itf_check_digit=True))
    assert not validate("itf", "12345678901232", ReadRules(itf_check_digit=True))
    img = on_a_box(cv2.resize(zxing_image("12345678901231", "ITF"), None, fx=1, fy=3), 20)
    assert texts(img, "itf") == ["12345678901231"]
    # a line that allows only 10 digits refuses the 14, and a partial scan of 10 of them too
    assert texts(img, "itf", rules=ReadRules(itf_lengths=(10,))) == []


def test_upc_e_is_read():
    img = on_a_box(cv2.resize(zxing_image("01234565", "UPCE"), None, fx=1, fy=3), 0)
    got = [c for c in decode(img) if c.symbology in ("upce", "upca", "ean13")]
    assert len(got) == 1 and got[0].symbology == "upce" and validate("upce", got[0].text)
    assert got[0].text.lstrip("0") == "12345000065"  # the UPC-A it stands for


def test_check_rules_refuse_bad_codes():
    assert validate("upce", "01234565") and not validate("upce", "01234566")
    assert validate("code39", "ANYTHING-1") and not validate("code39", "JD0012345678",
                                                              ReadRules(code39_check="required"))
