"""What a read is and whether its text can be true: the result type, the symbology names, the
check-digit rules, and the charset of QR byte data.

Both engines and the fixed-mount code readers (vision/sources) pass their reads through these rules,
so a read is judged the same whichever device made it. Pure Python: nothing here touches an image.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    symbology: str
    text: str
    polygon: tuple[tuple[int, int], ...]


SYMBOLOGIES = ("code128", "code39", "itf", "ean13", "upca", "qrcode", "datamatrix", "pdf417")
ONE_D = frozenset({"code128", "code39", "itf", "ean13", "upca"})


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
