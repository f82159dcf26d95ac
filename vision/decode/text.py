"""What a read is and whether its text can be true: the result type, the symbology names, the
check-digit and length rules a line may set (:class:`ReadRules`), and the charset of 2-D byte data.

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
    # a 1-D read that only one attempt made (no second decode agreed): kept and reported rather than
    # dropped, so that a no-read parcel still shows what was seen; whether it may sort is the line's
    # choice (``cameras[].weak_reads_sort``)
    weak: bool = False


SYMBOLOGIES = ("code128", "code39", "itf", "ean13", "upca", "upce", "qrcode", "datamatrix", "pdf417")
ONE_D = frozenset({"code128", "code39", "itf", "ean13", "upca", "upce"})
TWO_D = frozenset({"qrcode", "datamatrix", "pdf417"})


@dataclass(frozen=True)
class ReadRules:
    """What a line accepts of the symbologies that carry no fixed length or mandatory check.

    ``code39_check``: "optional" takes any Code 39; "required" only one whose last character is its
    mod-43 check (kept in the text, as the symbol carries it). ``itf_lengths``: the digit counts
    allowed (empty: any even count from 4, what zxing-cpp itself accepts); ``itf_check_digit``: the
    last digit must be the GS1 mod-10 check (ITF-14 and most carriers' ITF)."""

    code39_check: str = "optional"
    itf_lengths: tuple[int, ...] = ()
    itf_check_digit: bool = False


DEFAULT_RULES = ReadRules()


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


def upce_to_upca(text: str) -> str | None:
    """The UPC-A a UPC-E (8 digits: number system 0/1, six digits, check) stands for."""
    if len(text) != 8 or not text.isdigit() or text[0] not in "01":
        return None
    ns, d, check = text[0], text[1:7], text[7]
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    return ns + body + check


def upce_valid(text: str) -> bool:
    """8 digits whose UPC-A expansion has a correct GS1 check digit, or that expansion itself (as
    12 or, zxing-cpp's form, 13 digits)."""
    if len(text) in (12, 13):
        return text.isdigit() and _gs1_check_ok(text)
    full = upce_to_upca(text)
    return full is not None and upca_valid(full)


def gtin13(symbology: str, text: str) -> str:
    """The EAN-13 form of an EAN-13, UPC-A or UPC-E read (one symbol is reported as any of them:
    zxing-cpp gives a UPC-A as the EAN-13 "0" + its digits); other reads unchanged."""
    if symbology == "upce" and len(text) == 8:
        text = upce_to_upca(text) or text
    if symbology in ("ean13", "upca", "upce") and text.isdigit() and len(text) < 13:
        return text.zfill(13)
    return text


_CODE39_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"


def code39_check_ok(text: str) -> bool:
    """The last character is the mod-43 check of the others."""
    if len(text) < 2 or any(c not in _CODE39_CHARS for c in text):
        return False
    return _CODE39_CHARS[sum(_CODE39_CHARS.index(c) for c in text[:-1]) % 43] == text[-1]


def validate(symbology: str, text: str, rules: ReadRules = DEFAULT_RULES) -> bool:
    """Reject partial or impossible reads, and what the line's rules do not accept."""
    if not text:
        return False
    if symbology == "ean13":
        return ean13_valid(text)
    if symbology == "upca":
        return upca_valid(text)
    if symbology == "upce":
        return upce_valid(text)
    if symbology == "itf":
        if not text.isdigit() or len(text) % 2:
            return False
        if rules.itf_lengths:
            if len(text) not in rules.itf_lengths:
                return False
        elif len(text) < 4:
            return False
        return not rules.itf_check_digit or _gs1_check_ok(text)
    if symbology == "code39" and rules.code39_check == "required" and not code39_check_ok(text):
        return False
    if symbology in ONE_D:
        return text.isprintable()
    return True


# ---------------------------------------------------------------------------------------------
# 2-D text charset


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
        elif 0x3040 <= o <= 0x30FF:
            good += 0.9  # kana: Japanese text (and Kanji-mode data) is full of it
        elif 0xC0 <= o <= 0xFF and o not in (0xD7, 0xF7):
            good += 0.9  # accented Latin letters
    return good / len(text)


def _gb2312_hanzi_text(text: str) -> bool:
    """Every non-ASCII character is in GB2312 (the common hanzi and CJK punctuation a mainland
    label uses) and at least one is a hanzi: GBK bytes that "read as CJK"."""
    cjk = False
    for ch in text:
        if ch.isascii():
            continue
        try:
            ch.encode("gb2312")
        except UnicodeEncodeError:
            return False
        cjk = cjk or 0x4E00 <= ord(ch) <= 0x9FFF
    return cjk


def qr_bytes_to_text(raw: bytes) -> str:
    """Text of byte data that says nothing of its charset (no ECI): strict UTF-8 if valid; else
    GB18030 when it reads as common hanzi (:func:`_gb2312_hanzi_text`); else the most plausible of
    Shift-JIS, GB18030 and Latin-1. (A symbol that says its charset, by ECI, never comes here; see
    :func:`eci_bytes_to_text`.)"""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        gb = raw.decode("gb18030")
    except UnicodeDecodeError:
        gb = None
    if gb is not None and _gb2312_hanzi_text(gb):
        return gb
    # the rest are guesses: Shift-JIS (Kanji-mode and Japanese byte data, whose katakana pairs are
    # valid GBK but rare hanzi there), GB18030, Latin-1 (the QR default, lossless for binary data),
    # the most plausible reading winning, ties in that order
    best, best_score = raw.decode("latin-1"), -1.0
    for enc, text in (("cp932", None), ("gb18030", gb), ("latin-1", None)):
        if text is None:
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError:
                continue
        score = _plausible(text)
        if score > best_score + 1e-9:
            best, best_score = text, score
    return best


# ECI assignment number -> Python codec (AIM ECI register; 899 = binary)
_ECI_CODECS = {0: "cp437", 1: "latin-1", 2: "cp437", 3: "latin-1", 4: "iso8859-2", 5: "iso8859-3", 6: "iso8859-4",
               7: "iso8859-5", 8: "iso8859-6", 9: "iso8859-7", 10: "iso8859-8", 11: "iso8859-9", 12: "iso8859-10",
               13: "iso8859-11", 15: "iso8859-13", 16: "iso8859-14", 17: "iso8859-15", 18: "iso8859-16",
               20: "cp932", 21: "cp1250", 22: "cp1251", 23: "cp1252", 24: "cp1256", 25: "utf-16-be", 26: "utf-8",
               27: "ascii", 28: "big5", 29: "gb18030", 30: "euc-kr", 31: "gbk", 32: "gb18030", 33: "utf-16-le",
               34: "utf-32-be", 35: "utf-32-le", 170: "ascii"}


def eci_bytes_to_text(stream: bytes) -> str:
    """Text of an ECI-protocol byte stream (``\\NNNNNN`` switches the charset, ``\\\\`` is a backslash):
    each segment decoded in the charset its ECI names; a segment before the first ECI, or under an
    ECI with no codec here (binary, 899), as unmarked byte data."""
    out: list[str] = []
    seg = bytearray()
    codec: str | None = None
    i, n = 0, len(stream)

    def flush() -> None:
        if seg:
            data = bytes(seg)
            if codec is None:
                out.append(qr_bytes_to_text(data))
            else:
                out.append(data.decode(codec, errors="replace"))
            seg.clear()

    while i < n:
        b = stream[i]
        if b == 0x5C and i + 1 < n and stream[i + 1] == 0x5C:
            seg.append(0x5C)
            i += 2
            continue
        if b == 0x5C and i + 7 <= n and stream[i + 1:i + 7].isdigit():
            flush()
            codec = _ECI_CODECS.get(int(stream[i + 1:i + 7]))
            i += 7
            continue
        seg.append(b)
        i += 1
    flush()
    return "".join(out)


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
