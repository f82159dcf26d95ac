"""Decoding real rendered labels: rotation, validation, charsets, robustness, CLI."""

from __future__ import annotations

import io
import json
from collections import Counter

import cv2
import numpy as np
import pytest
import segno
from pyzbar import pyzbar

from sorter.vision import decode as D
from sorter.vision.decode import engines as E, locate as L
from sorter.controller.cli import decode as decode_cli
from sorter.vision.decode import Code, decode, decode_file, ean13_valid, recover_qr_text, upca_valid, validate
from sorter.vision.labels import LabelSpec, render_frame, render_label

WAYBILL = "SF1234567890123"
QR_TEXT = "浙江省温岭市城东街道 张三 13800138000"
EAN = "6901234567892"


def frame_of(spec: LabelSpec, angle: float, seed: int = 1, **kw) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_frame(render_label(spec, rng), rng, rotation_deg=angle, **kw)


def texts(codes: list[Code]) -> set[tuple[str, str]]:
    return {(c.symbology, c.text) for c in codes}


def qr_image(data: bytes, scale: int = 4) -> np.ndarray:
    buf = io.BytesIO()
    segno.make_qr(data, error="m", mode="byte").save(buf, kind="png", scale=scale, border=4)
    return cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)


# ---------------------------------------------------------------------------------------------
# rotation


@pytest.mark.parametrize("angle", [0, 12, 30, 45, 60, 90, 135, 170, 200, 225, 270, 315, 352])
def test_all_codes_read_at_any_rotation(angle):
    spec = LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN[:12], town="Wenling")
    codes = decode(frame_of(spec, angle, seed=angle))
    got = texts(codes)
    assert ("code128", WAYBILL) in got
    assert ("ean13", EAN) in got
    assert ("qrcode", QR_TEXT) in got
    assert len(codes) == 3  # nothing else, nothing twice


@pytest.mark.parametrize("angle", [30, 45, 135, 200, 315])
def test_numeric_waybill_rotated_with_polygon_in_frame(angle):
    spec = LabelSpec("773012345678")
    frame = frame_of(spec, angle, seed=7)
    codes = [c for c in decode(frame) if c.symbology == "code128"]
    assert [c.text for c in codes] == ["773012345678"]
    poly = np.array(codes[0].polygon)
    assert len(poly) >= 4
    h, w = frame.shape
    assert (poly[:, 0] >= 0).all() and (poly[:, 0] < w).all() and (poly[:, 1] >= 0).all() and (poly[:, 1] < h).all()
    # the polygon lies on the bars: dark pixels inside it, its long side along the bar direction
    mask = np.zeros_like(frame)
    cv2.fillConvexPoly(mask, poly.astype(np.int32), 255)
    inside = frame[mask > 0]
    assert inside.min() < 80 and inside.max() > 150


def test_raw_zbar_alone_misses_rotated_code_but_decode_reads_it():
    frame = frame_of(LabelSpec(WAYBILL), 45, seed=3)
    raw = [d for d in pyzbar.decode(frame) if d.type == "CODE128"]
    assert raw == []  # the reason for the deskew pass
    assert ("code128", WAYBILL) in texts(decode(frame))


def test_frame_with_several_codes_returns_all():
    spec = LabelSpec(WAYBILL, qr_text="https://example.com/t/1", ean13=EAN, stale_waybill="YT9876543210987")
    got = texts(decode(frame_of(spec, 33, seed=5)))
    assert got == {
        ("code128", WAYBILL),
        ("code128", "YT9876543210987"),
        ("ean13", EAN),
        ("qrcode", "https://example.com/t/1"),
    }


def test_same_code_twice_is_reported_once():
    rng = np.random.default_rng(2)
    label = render_label(LabelSpec(WAYBILL), rng)
    canvas = np.full((label.shape[0] * 2 + 40, label.shape[1] + 40), 255, np.uint8)
    canvas[10 : 10 + label.shape[0], 20 : 20 + label.shape[1]] = label
    canvas[30 + label.shape[0] : 30 + 2 * label.shape[0], 20 : 20 + label.shape[1]] = label
    codes = decode(canvas)
    assert [c.text for c in codes if c.symbology == "code128"] == [WAYBILL]


def test_symbology_filter():
    spec = LabelSpec(WAYBILL, qr_text="hello", ean13=EAN)
    frame = frame_of(spec, 20, seed=9)
    assert texts(decode(frame, ["qrcode"])) == {("qrcode", "hello")}
    assert texts(decode(frame, ["ean13"])) == {("ean13", EAN)}
    assert texts(decode(frame, ["code128", "ean13"])) == {("code128", WAYBILL), ("ean13", EAN)}
    with pytest.raises(ValueError, match="unknown symbology"):
        decode(frame, ["aztec"])


def test_empty_and_odd_inputs():
    assert decode(np.zeros((768, 1024), np.uint8)) == []
    assert decode(np.full((50, 60), 255, np.uint8)) == []
    rng = np.random.default_rng(0)
    assert decode(rng.integers(0, 256, (300, 400), dtype=np.uint8)) == []
    bgr = cv2.cvtColor(frame_of(LabelSpec(WAYBILL), 0), cv2.COLOR_GRAY2BGR)
    assert ("code128", WAYBILL) in texts(decode(bgr))


@pytest.mark.parametrize("angle", [0, 37, 128, 250])
def test_low_contrast_label_reads(angle):
    """Ink and paper ~50 grey levels apart (faded thermal print, dim light): the locator's threshold
    follows the local contrast."""
    spec = LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN)
    frame = frame_of(spec, angle, seed=angle + 11)
    faint = cv2.convertScaleAbs(frame, alpha=0.25, beta=100)  # ink ~105, paper ~160
    got = texts(decode(faint))
    assert ("code128", WAYBILL) in got
    assert ("ean13", EAN) in got


@pytest.mark.parametrize("angle", [8, 45, 110, 160, 300])
def test_thin_modules_read(angle):
    """1.5 px per module: the crop is upsampled (and sharpened) before the engines give up."""
    rng = np.random.default_rng(angle)
    frame = render_frame(render_label(LabelSpec(WAYBILL, ean13=EAN), rng, module_px=1.5), rng,
                         rotation_deg=angle, blur_sigma=0.7, noise_sigma=4.0)
    assert ("code128", WAYBILL) in texts(decode(frame))


def _count_work(monkeypatch) -> tuple[Counter, list]:
    """Engine calls (ZBar, zxing-cpp) and pyramid levels of the decodes that follow."""
    from sorter.vision.decode import frame as F
    calls, levels = Counter(), []
    for name in ("_zbar", "_zxing"):
        real = getattr(E, name)
        monkeypatch.setattr(E, name, lambda *a, _real=real, _name=name, **k: (calls.update([_name]), _real(*a, **k))[1])
    level = F._decode_level
    monkeypatch.setattr(F, "_decode_level", lambda img, *a, **k: (levels.append(img.shape), level(img, *a, **k))[1])
    return calls, levels


def test_empty_frame_is_cheap(monkeypatch):
    """An empty belt (a 5 MP frame of noise) has no barcode-like region: no engine is run, no
    coarser pyramid level, no whole-frame fallback. (Its time is bench/vision.py's figure: "Full
    frames", 2448x2048 with 0 labels.)"""
    rng = np.random.default_rng(3)
    frame = np.clip(rng.normal(37, 2.5, (2048, 2448)), 0, 255).astype(np.uint8)
    calls, levels = _count_work(monkeypatch)
    fallbacks = D.STATS["fallback"]
    assert decode(frame) == []
    assert not calls and levels == [frame.shape] and D.STATS["fallback"] == fallbacks


# ---------------------------------------------------------------------------------------------
# validation


def test_check_digit_validators():
    assert ean13_valid("6901234567892")
    assert not ean13_valid("6901234567893")
    assert not ean13_valid("690123456789")  # partial
    assert not ean13_valid("69012345678a2")
    assert upca_valid("036000291452")
    assert not upca_valid("036000291453")
    assert validate("ean13", "4006381333931")
    assert not validate("ean13", "4006381333932")
    assert not validate("itf", "12345")  # odd length: impossible for ITF
    assert not validate("code128", "")


def test_ean13_with_wrong_check_digit_is_not_read():
    bad = EAN[:12] + str((int(EAN[12]) + 1) % 10)
    spec = LabelSpec(WAYBILL, ean13=bad)
    for angle in (0, 40):
        codes = decode(frame_of(spec, angle, seed=4))
        assert not [c for c in codes if c.symbology == "ean13"]
        assert ("code128", WAYBILL) in texts(codes)


def test_validator_rejects_what_zbar_would_return(monkeypatch):
    """Even if ZBar handed back an EAN-13 with a wrong check digit, decode() drops it."""
    real = E._zbar

    def fake(img, symbologies, *a, **kw):
        out = real(img, symbologies, *a, **kw)
        return [D._Raw(r.symbology, b"6901234567893" if r.symbology == "ean13" else r.data, r.points) for r in out]

    monkeypatch.setattr(E, "_zbar", fake)
    codes = decode(frame_of(LabelSpec(WAYBILL, ean13=EAN), 25, seed=8), engines=["zbar"])
    assert [c for c in codes if c.symbology == "ean13"] == []
    assert ("code128", WAYBILL) in texts(codes)


def test_damaged_waybill_is_never_read():
    for seed, angle in enumerate([0, 30, 45, 90, 135, 200, 315, 11]):
        spec = LabelSpec("SF" + str(10**12 + seed * 7919), ean13=EAN[:12], damaged=True)
        codes = decode(frame_of(spec, angle, seed=seed))
        assert not [c for c in codes if c.symbology == "code128"], (angle, codes)
        assert ("ean13", EAN) in texts(codes)  # the rest of the label still reads


# ---------------------------------------------------------------------------------------------
# QR charsets

CHINESE = ["浙江省温岭市城东街道", "中国", "ABC 顺丰 123", "上海市浦东新区", "收件人：李四，电话 13912345678", "温岭 箬横镇 张三 13800138000"]


@pytest.mark.parametrize("encoding", ["utf-8", "gbk", "gb18030"])
@pytest.mark.parametrize("text", CHINESE)
def test_chinese_qr_plain_image(text, encoding):
    assert texts(decode(qr_image(text.encode(encoding)))) == {("qrcode", text)}


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_chinese_qr_on_rotated_label(encoding):
    spec = LabelSpec(WAYBILL, qr_text=QR_TEXT, qr_encoding=encoding)
    for angle in (15, 135, 290):
        assert ("qrcode", QR_TEXT) in texts(decode(frame_of(spec, angle, seed=angle)))


@pytest.mark.parametrize(
    "text,encoding",
    [
        ("浙江省温岭市城东街道", "utf-8"),  # ZBar guesses Shift-JIS
        ("上海市浦东新区", "utf-8"),
        ("中国", "utf-8"),
        ("温岭", "utf-8"),  # ZBar guesses Big5
        ("浙江省温岭市城东街道", "gbk"),  # ZBar guesses Big5
        ("中国", "gbk"),
        ("ABC 顺丰 123", "gbk"),
    ],
)
def test_recover_mojibake_from_zbar_charset_guess(text, encoding):
    """Real ZBar output in its default (non-binary) mode is wrong for these; re-encoding recovers."""
    zbar_text = pyzbar.decode(qr_image(text.encode(encoding)))[0].data.decode("utf-8")
    assert zbar_text != text  # ZBar really guessed wrong
    assert recover_qr_text(zbar_text) == text


def test_recover_leaves_correct_text_alone():
    for t in ["温岭 箬横镇 张三 13800138000", "泽国镇", "hello world", "收件人：李四"]:
        assert recover_qr_text(t) == t
    assert D.qr_bytes_to_text("héllo".encode("latin-1")) == "héllo"
    assert D.qr_bytes_to_text("中国".encode("cp932")) == "中国"  # Kanji-mode bytes


# ---------------------------------------------------------------------------------------------
# robustness


def test_exception_in_qr_pass_does_not_lose_other_reads(monkeypatch):
    real = E._zbar

    def flaky(img, symbologies, *a, **kw):
        if "qrcode" in symbologies:
            raise ValueError("0 is not a valid ZBarOrientation")
        return real(img, symbologies, *a, **kw)

    monkeypatch.setattr(E, "_zbar", flaky)
    frame = frame_of(LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN), 45, seed=6)
    assert texts(decode(frame, engines=["zbar"])) == {("code128", WAYBILL), ("ean13", EAN)}
    # the second engine reads what the failing ZBar pass lost
    assert texts(decode(frame, engines=["zbar", "zxing"])) == {("code128", WAYBILL), ("ean13", EAN), ("qrcode", QR_TEXT)}


def test_exception_in_first_1d_pass_does_not_lose_other_reads(monkeypatch):
    real = E._zbar
    calls = {"n": 0}

    def flaky(img, symbologies, *a, **kw):
        if "code128" in symbologies:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ValueError("boom")
        return real(img, symbologies, *a, **kw)

    monkeypatch.setattr(E, "_zbar", flaky)
    codes = decode(frame_of(LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN), 200, seed=6))
    assert ("qrcode", QR_TEXT) in texts(codes)
    assert calls["n"] >= 2
    assert len(texts(codes)) >= 2


def test_exception_in_locator_is_contained(monkeypatch):
    monkeypatch.setattr(L, "_locate", lambda g: (_ for _ in ()).throw(RuntimeError("x")))
    # the whole-frame zxing-cpp pass does not need the locator: a small frame is still read
    assert WAYBILL in [c.text for c in decode(frame_of(LabelSpec(WAYBILL), 0))]
    from sorter.vision.decode import frame as F
    monkeypatch.setattr(F, "_FALLBACK", False)
    assert decode(frame_of(LabelSpec(WAYBILL), 0)) == []


def test_one_label_frame_is_read_in_one_pass(monkeypatch):
    """A frame with one label (Code 128, QR, EAN-13) at any rotation is read whole at full size:
    one pyramid level, no whole-frame fallback, a few engine calls per code. (Its time is
    bench/vision.py's figure: "Full frames", 1280x1024 with 1 label, and "Label classes".)"""
    spec = LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN)
    calls, levels = _count_work(monkeypatch)
    for a in range(0, 360, 24):
        calls.clear()
        levels.clear()
        fallbacks = D.STATS["fallback"]
        codes = decode(frame_of(spec, a, seed=a))
        assert {("code128", WAYBILL), ("qrcode", QR_TEXT), ("ean13", EAN)} <= texts(codes), a
        assert len(levels) == 1 and D.STATS["fallback"] == fallbacks, a
        assert sum(calls.values()) <= 3 * len(codes), (a, calls)


# ---------------------------------------------------------------------------------------------
# files and CLI


def test_decode_file_and_unreadable(tmp_path):
    p = tmp_path / "label.png"
    cv2.imwrite(str(p), frame_of(LabelSpec(WAYBILL), 45))
    codes, ms = decode_file(p)
    assert ("code128", WAYBILL) in texts(codes) and ms > 0
    with pytest.raises(ValueError, match="missing.png"):
        decode_file(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png"):
        decode_file(junk)


def test_cli_json(tmp_path, capsys):
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    cv2.imwrite(str(a), frame_of(LabelSpec(WAYBILL, qr_text=QR_TEXT, ean13=EAN), 135, seed=2))
    cv2.imwrite(str(b), frame_of(LabelSpec("773012345678"), 315, seed=3))
    missing = tmp_path / "nope.png"
    rc = decode_cli.run([str(a), str(missing), str(b)], as_json=True)
    out = capsys.readouterr().out
    lines = out.strip().split("\n")
    assert rc == 1 and len(lines) == 3
    objs = [json.loads(line) for line in lines]
    assert objs[0]["file"] == str(a) and set(objs[0]) == {"file", "reads", "ms"}
    reads = {(r["symbology"], r["text"]) for r in objs[0]["reads"]}
    assert reads == {("code128", WAYBILL), ("ean13", EAN), ("qrcode", QR_TEXT)}
    for r in objs[0]["reads"]:
        assert set(r) == {"symbology", "text", "polygon", "weak"} and r["weak"] is False  # clean label: confirmed
        assert all(len(p) == 2 and all(isinstance(v, int) for v in p) for p in r["polygon"])
    assert isinstance(objs[0]["ms"], float) and objs[0]["ms"] > 0
    assert QR_TEXT in lines[0]  # ensure_ascii=False: Chinese as-is
    assert objs[1]["file"] == str(missing) and "nope.png" in objs[1]["error"] and "reads" not in objs[1]
    assert [(r["symbology"], r["text"]) for r in objs[2]["reads"]] == [("code128", "773012345678")]


def test_cli_text_and_exit_code(tmp_path, capsys):
    a = tmp_path / "a.png"
    cv2.imwrite(str(a), frame_of(LabelSpec(WAYBILL), 60))
    assert decode_cli.run([str(a)], as_json=False) == 0
    out = capsys.readouterr().out
    assert f"code128 {WAYBILL}" in out
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros((100, 100), np.uint8))
    assert decode_cli.run([str(empty)], as_json=False) == 0
    assert "no read" in capsys.readouterr().out
    assert decode_cli.run([str(a)], as_json=True, symbologies=["qrcode"]) == 0
    assert json.loads(capsys.readouterr().out)["reads"] == []
