"""Real images, per symbology family: raw zxing-cpp, raw pyzbar and ``sorter``'s decoder side by
side in the same run (one core), plus codes made with zxing-cpp's writer in every family the config
names (rotated, blurred, inverted) so that the rendered side of each rule is measured too.

    python bench/realphotos.py                  # the development set and the made codes
    python bench/realphotos.py real --list      # ... and every image that one decoder misses
    python bench/realphotos.py rules            # what each EAN/UPC confirmation rule costs and saves

The development set lives outside the repository, in ``../shared/realphotos`` (folders
``SYMBOLOGY-N`` with an image and a ``.txt`` beside it). It is skipped cleanly when absent.

Scoring (the set's README): control characters and surrounding whitespace stripped on both sides,
EAN-13/UPC-A compared as digits left-padded to 14; an image is *read* when a read of its family has
its text, and every other distinct text of that family read from it is a *wrong* read. Our weak
reads (one attempt only) are counted apart: a read rate "ours" counts confirmed reads, "+weak"
counts them as well.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import one_core, pct, table  # noqa: E402

REALPHOTOS = ROOT.parent / "shared" / "realphotos"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm"}

# folder prefix -> family
FAMILY_OF_FOLDER = {"code128": "Code 128", "code39": "Code 39", "itf": "ITF", "ean13": "EAN/UPC", "upca": "EAN/UPC",
                    "upce": "EAN/UPC", "ean8": "EAN/UPC", "qrcode": "QR", "microqrcode": "QR",
                    "datamatrix": "Data Matrix", "pdf417": "PDF417"}
# our symbology names -> family
FAMILY_OF_OURS = {"code128": "Code 128", "code39": "Code 39", "itf": "ITF", "ean13": "EAN/UPC", "upca": "EAN/UPC",
                  "upce": "EAN/UPC", "qrcode": "QR", "microqr": "QR", "datamatrix": "Data Matrix", "pdf417": "PDF417"}
# AIM symbology identifier letter (zxing-cpp reports it) -> family
FAMILY_OF_AIM = {"C": "Code 128", "A": "Code 39", "I": "ITF", "E": "EAN/UPC", "Q": "QR", "d": "Data Matrix",
                 "L": "PDF417"}
FAMILY_OF_ZBAR = {"CODE128": "Code 128", "CODE39": "Code 39", "I25": "ITF", "EAN13": "EAN/UPC", "UPCA": "EAN/UPC",
                  "UPCE": "EAN/UPC", "EAN8": "EAN/UPC", "QRCODE": "QR", "PDF417": "PDF417"}
FAMILIES = ["Code 128", "Code 39", "ITF", "EAN/UPC", "QR", "Data Matrix", "PDF417"]


def normalise(family: str, text: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]", "", text).strip()
    if family == "EAN/UPC":
        return re.sub(r"\D", "", text).zfill(14)
    return text


@dataclass
class Case:
    name: str
    family: str
    image: np.ndarray
    expected: str


def load_realphotos(root: Path = REALPHOTOS) -> list[Case]:
    """The development set, or [] when the folder is absent."""
    cases: list[Case] = []
    if not root.is_dir():
        return cases
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        family = FAMILY_OF_FOLDER.get(folder.name.rsplit("-", 1)[0].lower())
        if family is None:
            continue
        for img_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            txt = img_path.with_suffix(".txt")
            if not txt.exists():
                continue
            img = cv2.imread(str(img_path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            expected = txt.read_bytes().decode("utf-8", errors="replace")
            cases.append(Case(f"{folder.name}/{img_path.name}", family, img, expected))
    return cases


# ------------------------------------------------------------------------------------- readers
# each: grayscale image -> [(family, text, weak)]


def raw_zxing(img: np.ndarray) -> list[tuple[str, str, bool]]:
    import zxingcpp

    out = []
    for r in zxingcpp.read_barcodes(img):
        out.append((FAMILY_OF_AIM.get(r.symbology_identifier[1:2], "other"), zxing_plain_text(r), False))
    return out


def zxing_plain_text(r) -> str:
    """A default (HRI) zxing-cpp read in the plain form the expected texts use: GS1 and ISO 15434
    data are shown with "(01)" and "<GS>" for people, which is formatting, not a wrong read."""
    import zxingcpp

    if r.content_type in (zxingcpp.ContentType.GS1, zxingcpp.ContentType.ISO15434):
        return bytes(r.bytes).decode("utf-8", errors="replace")
    return r.text


def raw_pyzbar(img: np.ndarray) -> list[tuple[str, str, bool]]:
    from pyzbar import pyzbar

    try:
        syms = pyzbar.decode(img)
    except Exception:  # noqa: BLE001 - raw pyzbar raises on some QR codes: the image is lost
        return []
    out = []
    for s in syms:
        fam = FAMILY_OF_ZBAR.get(s.type, "other")
        try:
            text = s.data.decode("utf-8")
        except UnicodeDecodeError:
            text = s.data.decode("latin-1")
        out.append((fam, text, False))
    return out


def ours(img: np.ndarray) -> list[tuple[str, str, bool]]:
    """``sorter decode IMAGE`` as a user runs it: its default symbologies and engines."""
    from sorter.vision.decode import decode

    return [(FAMILY_OF_OURS.get(c.symbology, "other"), c.text, bool(getattr(c, "weak", False)))
            for c in decode(img)]


READERS = [("raw zxing-cpp", raw_zxing), ("raw pyzbar", raw_pyzbar), ("sorter decode", ours)]


@dataclass
class Score:
    images: int = 0
    read: int = 0
    read_weak: int = 0  # read only by a weak read
    wrong: int = 0
    wrong_weak: int = 0
    ms: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def score(cases: list[Case], fn) -> dict[str, Score]:
    out: dict[str, Score] = {}
    for case in cases:
        s = out.setdefault(case.family, Score())
        s.images += 1
        t0 = time.perf_counter()
        try:
            reads = fn(case.image)
        except Exception as exc:  # noqa: BLE001 - a crash is a no-read, and is shown
            reads = []
            s.missed.append(f"{case.name} (error {type(exc).__name__}: {exc})")
        s.ms.append((time.perf_counter() - t0) * 1000)
        want = normalise(case.family, case.expected)
        strong = {normalise(case.family, t) for f, t, weak in reads if f == case.family and not weak}
        weak = {normalise(case.family, t) for f, t, w in reads if f == case.family and w} - strong
        if want in strong:
            s.read += 1
        elif want in weak:
            s.read_weak += 1
        else:
            s.missed.append(case.name)
        s.wrong += len(strong - {want})
        s.wrong_weak += len(weak - {want})
    return out


def cell(s: Score | None, show_weak: bool) -> str:
    if s is None or not s.images:
        return "-"
    txt = f"{s.read}/{s.images}"
    if show_weak and s.read_weak:
        txt += f" (+{s.read_weak} weak)"
    if s.wrong:
        txt += f" ({s.wrong} wrong)"
    if show_weak and s.wrong_weak:
        txt += f" ({s.wrong_weak} weak wrong)"
    return txt


def print_table(title: str, cases: list[Case], list_missed: bool = False) -> None:
    results = {name: score(cases, fn) for name, fn in READERS}
    rows = []
    for fam in FAMILIES + ["other"]:
        if not any(fam in r for r in results.values()):
            continue
        rows.append([fam] + [cell(results[name].get(fam), name == "sorter decode") for name, _ in READERS])
    tot_row = ["all"]
    for name, _ in READERS:
        scores = results[name].values()
        n = sum(s.images for s in scores)
        r = sum(s.read for s in scores)
        rw = sum(s.read_weak for s in scores)
        w = sum(s.wrong for s in scores)
        ms = [m for s in scores for m in s.ms]
        txt = f"{100 * r / max(1, n):.1f}%"
        if rw:
            txt += f" (+weak {100 * (r + rw) / max(1, n):.1f}%)"
        tot_row.append(txt + f" ({w} wrong), ms p50 {pct(ms, 50):.0f} p99 {pct(ms, 99):.0f}")
    rows.append(tot_row)
    table(title, ["family"] + [name for name, _ in READERS], rows)
    if list_missed:
        for name, _ in READERS:
            missed = [m for s in results[name].values() for m in s.missed]
            print(f"\n{name} missed {len(missed)}: " + ", ".join(missed))


# ------------------------------------------------------------------------------------- made codes
MADE = [  # (family, zxing-cpp writer format name, text)
    ("Code 128", "Code128", "SF1234567890123"),
    ("Code 128", "Code128", "YT8812345678901"),
    ("Code 39", "Code39", "JD0012345678"),
    ("Code 39", "Code39", "ABC-123 45"),
    ("ITF", "ITF", "12345678901231"),
    ("ITF", "ITF", "00123456"),
    ("EAN/UPC", "EAN13", "6901234567892"),
    ("EAN/UPC", "UPCA", "036000291452"),
    ("EAN/UPC", "UPCE", "01234565"),  # scored as its UPC-A expansion 012345000065
    ("QR", "QRCode", "SF1234567890123|温岭"),
    ("QR", "MicroQRCode", "SF12345"),
    ("Data Matrix", "DataMatrix", "JT5012345678901"),
    ("PDF417", "PDF417", "ZTO 7501234567890 Wenling"),
]


def made_cases(rng: np.random.Generator, per: int = 4) -> list[Case]:
    """Codes from zxing-cpp's writer at 2-3 px/module on a grey background: rotated, blurred, noisy,
    and every other one inverted (light on dark)."""
    import zxingcpp

    cases = []
    for fam, fmt, text in MADE:
        for k in range(per):
            try:
                bc = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
                img = np.asarray(bc.to_image(scale=int(2 + k % 2) + (fam == "PDF417"), add_quiet_zones=True))
            except Exception:  # noqa: BLE001 - an old zxing-cpp: write_barcode
                img = np.asarray(zxingcpp.write_barcode(getattr(zxingcpp.BarcodeFormat, fmt), text))
            if img.ndim == 3:
                img = img[..., 0]
            if fam in ("Code 128", "Code 39", "ITF", "EAN/UPC", "PDF417") and img.shape[0] < 40:
                img = cv2.resize(img, (img.shape[1], 60), interpolation=cv2.INTER_NEAREST)
            h, w = img.shape
            canvas = np.full((h + w + 200, h + w + 200), 255, np.uint8)
            y0, x0 = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
            canvas[y0:y0 + h, x0:x0 + w] = img
            angle = float(rng.uniform(0, 360))
            M = cv2.getRotationMatrix2D((canvas.shape[1] / 2, canvas.shape[0] / 2), angle, 1.0)
            canvas = cv2.warpAffine(canvas, M, canvas.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=255)
            canvas = cv2.LUT(canvas, np.linspace(30, 225, 256).astype(np.uint8))
            canvas = cv2.GaussianBlur(canvas, (0, 0), 0.6)
            canvas = np.clip(canvas + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8)
            if k % 2:
                canvas = 255 - canvas
            expected = "012345000065" if fmt == "UPCE" else text  # the UPC-A a UPC-E stands for
            cases.append(Case(f"{fmt}-{k}{' inverted' if k % 2 else ''}", fam, canvas, expected))
    return cases


# ------------------------------------------------------------------------------------- EAN/UPC rules
def bench_rules(cases: list[Case], n_rendered: int = 40) -> None:
    """Each EAN/UPC confirmation rule on the EAN/UPC images: real ones, made ones, and the rendered
    label classes of bench/vision.py (where the product EAN-13 is printed beside the waybill)."""
    from bench.vision import CLASSES, label_texts, make_case
    from sorter.vision.decode import confirm

    rendered = []
    for module in (1.5, 2.0):
        for cls in CLASSES:
            for k in range(n_rendered):
                img, wb = make_case(cls, module, k)
                ean = sorted(label_texts(cls, module, k) - {wb})  # (a waybill may be 13 digits too)
                if ean:
                    rendered.append(Case(f"{cls} {module} #{k}", "EAN/UPC", img, ean[0]))
    # the labels on which one engine, run once, was measured passing a wrong EAN-13 check digit
    from tests.test_decode_hard import TRAPS
    traps = []
    for cls, module, k in TRAPS:
        img, wb = make_case(cls, module, k)
        ean = sorted(label_texts(cls, module, k) - {wb})
        if ean:
            traps.append(Case(f"{cls} {module} #{k}", "EAN/UPC", img, ean[0]))
    eans = [c for c in cases if c.family == "EAN/UPC"]
    rows = []
    for rule in confirm.EAN_RULES:
        saved = confirm.EAN_RULE
        confirm.EAN_RULE = rule
        try:
            row = [rule]
            for label, cs in (("real + made", eans), ("rendered", rendered), ("traps", traps)):
                s = score(cs, ours).get("EAN/UPC", Score())
                row.append(f"{s.read}/{s.images} +{s.read_weak} weak, {s.wrong} wrong, {s.wrong_weak} weak wrong")
        finally:
            confirm.EAN_RULE = saved
        rows.append(row)
    row = ["raw zxing-cpp (one read)"]
    for cs in (eans, rendered, traps):
        z = score(cs, raw_zxing).get("EAN/UPC", Score())
        row.append(f"{z.read}/{z.images}, {z.wrong} wrong")
    rows.append(row)
    table("EAN/UPC confirmation rules: reads kept and wrong reads",
          ["rule", "real + made", f"rendered classes (1.5, 2 px; {n_rendered} each)", "trap labels"], rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="*", default=["real", "made"])
    ap.add_argument("--list", action="store_true", help="list the images each decoder missed")
    ap.add_argument("--per", type=int, default=4, help="made codes per format")
    a = ap.parse_args()
    one_core()
    print(f"\n# real-image benchmarks ({os.cpu_count()} cores, measured on one; {time.strftime('%Y-%m-%d %H:%M')})")
    real = load_realphotos()
    if "real" in a.which:
        if real:
            print_table(f"Development set {REALPHOTOS} ({len(real)} images): images read per family", real, a.list)
        else:
            print(f"\n(no development set at {REALPHOTOS}: skipped)")
    made = made_cases(np.random.default_rng(3), a.per)
    if "made" in a.which:
        print_table(f"Codes made with zxing-cpp's writer, rotated, blurred, half inverted ({len(made)} images)",
                    made, a.list)
    if "rules" in a.which:
        bench_rules(real + made)


if __name__ == "__main__":
    main()
