"""Never below raw zxing-cpp: on every image these tests decode (rendered labels, codes made with
segno and zxing-cpp's writer, and the real development set in ../shared/realphotos when it is
there), ``decode()`` reports every code that ``zxingcpp.read_barcodes`` with its defaults reports,
unless two readings of that one symbol disagree (then the decoder may keep neither).

The development set is not in the repository; its tests skip when the folder is absent.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

zxingcpp = pytest.importorskip("zxingcpp")

from bench.realphotos import (FAMILY_OF_AIM, FAMILY_OF_OURS, REALPHOTOS, load_realphotos, made_cases,  # noqa: E402
                              normalise, zxing_plain_text)
from bench.vision import make_case  # noqa: E402
from sorter.vision.decode import decode  # noqa: E402

# what raw zxing-cpp reads that no camera config names (EAN-8, Codabar, Aztec ...) is not ours to read
OUR_FAMILIES = set(FAMILY_OF_OURS.values())


def _centre(points) -> tuple[float, float]:
    p = np.asarray(points, np.float32).reshape(-1, 2)
    return float(p[:, 0].mean()), float(p[:, 1].mean())


def _near(poly, xy, margin: float = 12.0) -> bool:
    if len(poly) < 3:
        return False
    return cv2.pointPolygonTest(np.asarray(poly, np.float32).reshape(-1, 1, 2), xy, True) > -margin


def raw_zxing_reads(img: np.ndarray) -> list[tuple[str, str, tuple[float, float]]]:
    out = []
    for r in zxingcpp.read_barcodes(img):
        fam = FAMILY_OF_AIM.get(r.symbology_identifier[1:2])
        if fam not in OUR_FAMILIES:
            continue
        p = r.position
        pts = [(p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y), (p.bottom_right.x, p.bottom_right.y),
               (p.bottom_left.x, p.bottom_left.y)]
        out.append((fam, normalise(fam, zxing_plain_text(r)), _centre(pts)))
    return out


def missing_from_ours(img: np.ndarray) -> list[str]:
    """Raw zxing-cpp's reads that decode() lacks, and that no other reading of the same place
    contradicts (a disagreement between two readings of one symbol is allowed to lose it)."""
    ours = [(FAMILY_OF_OURS.get(c.symbology, c.symbology), normalise(FAMILY_OF_OURS.get(c.symbology, ""), c.text), c)
            for c in decode(img)]
    have = {(f, t) for f, t, _ in ours}
    missing = []
    for fam, text, xy in raw_zxing_reads(img):
        if (fam, text) in have:
            continue
        disagreed = any(f == fam and t != text and _near(c.polygon, xy) for f, t, c in ours)
        if not disagreed:
            missing.append(f"{fam} {text!r}")
    return missing


# ------------------------------------------------------------------------------------- rendered
RENDERED = [(cls, module, k) for cls in ("rotation", "perspective", "motion blur", "low contrast", "plain")
            for module in (1.5, 2.0, 3.0) for k in (0, 1)]


@pytest.mark.parametrize("cls,module,k", RENDERED)
def test_rendered_labels_never_below_raw_zxing(cls, module, k):
    img, _wb = make_case(cls, module, k)
    assert missing_from_ours(img) == []


def test_made_codes_never_below_raw_zxing():
    """Every symbology from zxing-cpp's writer, rotated, blurred and half of them inverted."""
    problems = {c.name: m for c in made_cases(np.random.default_rng(3), 4) if (m := missing_from_ours(c.image))}
    assert problems == {}


def test_upright_made_codes_read_by_both():
    """Upright and clean, raw zxing-cpp reads each of them: so must we (a property test that
    cannot pass vacuously)."""
    for fam, fmt, text in [("Code 128", "Code128", "SF1234567890123"), ("Code 39", "Code39", "JD0012345678"),
                           ("ITF", "ITF", "12345678901231"), ("EAN/UPC", "EAN13", "6901234567892"),
                           ("QR", "QRCode", "SF1234567890123"), ("Data Matrix", "DataMatrix", "JT5012345678901"),
                           ("PDF417", "PDF417", "ZTO 7501234567890 Wenling")]:
        img = np.asarray(zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt)).to_image(scale=3))
        img = cv2.copyMakeBorder(img, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
        assert raw_zxing_reads(img), fmt
        assert missing_from_ours(img) == [], fmt


# ------------------------------------------------------------------------------------- real photos
REAL = load_realphotos()
needs_real = pytest.mark.skipif(not REAL, reason=f"no development set at {REALPHOTOS}")


@needs_real
@pytest.mark.parametrize("case", REAL, ids=[c.name for c in REAL])
def test_real_photo_never_below_raw_zxing(case):
    assert missing_from_ours(case.image) == []


@needs_real
def test_real_photos_no_wrong_confirmed_read():
    """On the development set a confirmed read of an image's family is its expected text (the
    set's scoring: control characters stripped, EAN/UPC as 14 digits)."""
    wrong = []
    for case in REAL:
        for c in decode(case.image):
            fam = FAMILY_OF_OURS.get(c.symbology)
            if fam == case.family and not c.weak and normalise(fam, c.text) != normalise(fam, case.expected):
                wrong.append((case.name, c.text))
    assert wrong == []


@needs_real
def test_real_photos_read_at_least_as_many_as_raw_zxing_per_family():
    ours: dict[str, int] = {}
    raw: dict[str, int] = {}
    for case in REAL:
        want = normalise(case.family, case.expected)
        ours[case.family] = ours.get(case.family, 0) + any(
            FAMILY_OF_OURS.get(c.symbology) == case.family and normalise(case.family, c.text) == want
            for c in decode(case.image))
        raw[case.family] = raw.get(case.family, 0) + any(
            f == case.family and t == want for f, t, _ in raw_zxing_reads(case.image))
    assert all(ours[f] >= raw[f] for f in raw), (ours, raw)


def test_normalise_follows_the_sets_scoring():
    assert normalise("EAN/UPC", "036000291452") == normalise("EAN/UPC", "0036000291452")
    assert normalise("Data Matrix", "a\x1db\r\n") == "ab"
    assert re.fullmatch(r"\d{14}", normalise("EAN/UPC", "6901234567892"))
