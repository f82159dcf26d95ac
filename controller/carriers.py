"""Waybill -> carrier recognition, and product codes (EAN/UPC) that are not waybills.

Each carrier has one or more formats (full-match regexes over the normalised text: stripped,
upper case). Numeric formats overlap between carriers (a 12-digit number may be an old SF
waybill or a ZTO one), so the table is checked in an explicit order: the first carrier whose
format matches wins. A carrier may hand over its own format, which replaces the default one.

China Post / EMS international-style numbers follow UPU S10 (2 letters, 8 digits, a mod-11
check digit, 2-letter country); a wrong check digit means the number is not EMS/China Post.
Service indicator E* is EMS, the other S10 indicators (C parcel, R registered, L, V, U, K...)
are China Post.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# carrier code -> human name (the page shows these)
CARRIER_NAMES: dict[str, str] = {
    "SF": "顺丰速运 SF Express",
    "ZTO": "中通快递 ZTO Express",
    "YTO": "圆通速递 YTO Express",
    "STO": "申通快递 STO Express",
    "YUNDA": "韵达速递 Yunda Express",
    "JT": "极兔速递 J&T Express",
    "EMS": "EMS 中国邮政速递",
    "CHINAPOST": "中国邮政 China Post",
    "JD": "京东物流 JD Logistics",
}

# Default formats, in precedence order: the first (carrier, regex) that fully matches the
# normalised text wins. Letter-prefixed formats cannot collide; among the digits-only ones the
# prefixes are mostly disjoint and the order settles the rest (a 12-digit number starting 5/6/7
# is ZTO, any other 12-digit number a legacy SF one).
DEFAULT_FORMATS: tuple[tuple[str, str], ...] = (
    ("SF", r"SF\d{12,13}"),                      # SF1234567890123
    ("YTO", r"YT\d{13}"),                        # YT7512345678901
    ("JT", r"JT\d{13}"),                         # JT0012345678901
    ("JD", r"JDV[A-F]\d{11}"),                   # JDVA12345678901
    ("JD", r"JDX\d{12}"),                        # JDX123456789012
    ("JD", r"JD\d{13}"),                         # JD0012345678901
    ("EMS", r"E[A-Z]\d{9}[A-Z]{2}"),             # EA123456785CN (S10, check digit verified)
    ("CHINAPOST", r"[A-DF-Z][A-Z]\d{9}[A-Z]{2}"),  # RR123456785CN, CP..., LK... (S10)
    ("EMS", r"1\d{12}"),                         # domestic EMS: 13 digits starting 1
    ("CHINAPOST", r"9[89]\d{11}"),               # domestic parcel: 13 digits starting 98/99
    ("STO", r"(?:77|88|66|55)\d{11}"),           # 13 digits starting 77/88/66/55
    ("YUNDA", r"(?:31|33|34|43|46)\d{11}"),      # 13 digits starting 31/33/34/43/46
    ("YUNDA", r"(?:31|33|34|43|46)\d{13}"),      # 15 digits, same prefixes
    ("ZTO", r"[57]\d{13,14}"),                   # 14/15 digits starting 7/5 (73.., 75.., 78..)
    ("ZTO", r"[5-7]\d{11}"),                     # older 12 digits starting 5/6/7
    ("SF", r"\d{12}"),                           # legacy SF: 12 digits, any other prefix
)
CARRIER_CODES: tuple[str, ...] = tuple(CARRIER_NAMES)
S10_CARRIERS = ("EMS", "CHINAPOST")

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
S10_RE = re.compile(r"[A-Z]{2}(\d{8})(\d)[A-Z]{2}")

PRODUCT_SYMBOLOGIES = frozenset({"ean13", "ean8", "upca", "upce", "ean", "upc", "isbn13", "isbn10", "gtin"})

# a token inside free text (QR contents) that may be a waybill
_TOKEN_RE = re.compile(r"[A-Za-z0-9]{8,40}")


def s10_check_digit(digits8: str) -> int:
    """UPU S10 check digit over the 8 serial digits."""
    total = sum(int(d) * w for d, w in zip(digits8, S10_WEIGHTS))
    check = 11 - total % 11
    if check == 10:
        return 0
    if check == 11:
        return 5
    return check


def s10_valid(text: str) -> bool:
    m = S10_RE.fullmatch(text)
    return bool(m) and s10_check_digit(m.group(1)) == int(m.group(2))


def gtin_check_digit(body: str) -> int:
    """GS1 check digit for the digits before it (EAN-8/UPC-A/EAN-13/GTIN-14)."""
    total = 0
    for i, d in enumerate(reversed(body)):
        total += int(d) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def gtin_valid(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) in (8, 12, 13, 14) and \
        gtin_check_digit(text[:-1]) == int(text[-1])


def normalise(text: str) -> str:
    return text.strip().upper()


class CarrierTable:
    """Identify the carrier of a waybill number.

    overrides: carrier code -> regex (or list of regexes) that replaces all of that carrier's
    default formats, at the position of its first default format; a code that is not a default
    carrier adds a carrier, checked before all defaults. An override is taken as given: no S10
    check digit is verified for it.
    """

    def __init__(self, overrides: Mapping[str, str | Iterable[str]] | None = None):
        overrides = {k: ((v,) if isinstance(v, str) else tuple(v)) for k, v in (overrides or {}).items()}
        entries: list[tuple[str, str, bool]] = []  # (carrier, regex, verify S10)
        for code, pats in overrides.items():
            if code not in CARRIER_NAMES:
                entries.extend((code, p, False) for p in pats)
        placed: set[str] = set()
        for code, pat in DEFAULT_FORMATS:
            if code in overrides:
                if code not in placed:
                    entries.extend((code, p, False) for p in overrides[code])
                    placed.add(code)
                continue
            entries.append((code, pat, code in S10_CARRIERS and pat.endswith("[A-Z]{2}")))
        for p in (p for _, p, _ in entries):
            re.compile(p)  # a bad override fails here, at construction
        self._checks: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
            (code, re.compile(p), s10) for code, p, s10 in entries)
        self._codes = tuple(dict.fromkeys(code for code, _, _ in entries))

    @property
    def codes(self) -> tuple[str, ...]:
        """Carrier codes this table can return."""
        return self._codes

    def identify(self, text: str) -> str | None:
        """Carrier code of a waybill number, or None if it fits no carrier."""
        t = normalise(text)
        if not 8 <= len(t) <= 40 or not t.isascii() or not t.isalnum():
            return None
        for code, rx, s10 in self._checks:
            if rx.fullmatch(t) is not None:
                if s10 and not s10_valid(t):
                    return None  # S10-shaped with a wrong check digit: a misread, not a waybill
                return code
        return None

    def is_product_code(self, symbology: str | None, text: str) -> bool:
        """True for EAN-13/EAN-8/UPC product codes, which are never waybills.

        A read from an EAN/UPC symbology is a product code whatever it says (a label printer
        never prints a waybill as EAN); a digits-only read of unknown symbology counts if it has
        a valid GS1 check digit, an EAN/UPC length and no carrier format fits it.
        """
        sym = (symbology or "").strip().lower().replace("-", "").replace("_", "")
        if sym in PRODUCT_SYMBOLOGIES:
            return True
        if sym:
            return False
        t = text.strip()
        return gtin_valid(t) and len(t) in (8, 12, 13) and self.identify(t) is None

    def find_waybills(self, text: str) -> list[tuple[str, str]]:
        """(waybill, carrier) for the whole text if it is a waybill, else for each token in it.

        Used for 2D codes (QR, DataMatrix, PDF417) whose content may be a URL or a record that
        contains the waybill number.
        """
        t = normalise(text)
        code = self.identify(t)
        if code is not None:
            return [(t, code)]
        found: dict[str, str] = {}
        for m in _TOKEN_RE.finditer(text):
            tok = m.group(0).upper()
            c = self.identify(tok)
            if c is not None:
                found.setdefault(tok, c)
        return list(found.items())
