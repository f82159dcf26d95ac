"""Real-shaped waybill numbers and product barcodes for the simulated line.

Every number made here has the shape the carriers use (and the controller's carrier table should
recognise as that carrier); S10 numbers and EAN-13 codes carry their check digits. The check
digits are computed here from the standards (UPU S10, GS1), not with the controller's code: the
simulated line tests the carrier recogniser and must not share its mistakes.
"""

from __future__ import annotations

import numpy as np

# (carrier, share of parcels): roughly the 2023-24 national express market; the county
# co-delivery centre sees mostly the "通达系" networks plus J&T, fewer SF/EMS/JD parcels.
CARRIERS: list[tuple[str, float]] = [
    ("ZTO", 0.21),
    ("YTO", 0.16),
    ("YUNDA", 0.14),
    ("JT", 0.12),
    ("STO", 0.12),
    ("SF", 0.08),
    ("EMS", 0.07),
    ("CHINAPOST", 0.05),
    ("JD", 0.05),
]
CARRIER_CODES: list[str] = [c for c, _ in CARRIERS]
_P = np.array([w for _, w in CARRIERS], dtype=float)
CARRIER_WEIGHTS: np.ndarray = _P / _P.sum()

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, size=n))


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(0, len(options)))]


def s10_check_digit(serial: str) -> int:
    """UPU S10 check digit of an 8-digit serial number: weights 8 6 4 2 3 5 9 7, then 11 minus the
    sum modulo 11, where 10 is written 0 and 11 is written 5."""
    c = 11 - sum(w * int(d) for w, d in zip((8, 6, 4, 2, 3, 5, 9, 7), serial, strict=True)) % 11
    return {10: 0, 11: 5}.get(c, c)


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit (EAN-13, EAN-8, UPC-A) of the digits before it: from the right,
    weights 3 1 3 1 ...; the digit that brings the sum to a multiple of ten."""
    weighted = sum(int(d) * (1 if i % 2 else 3) for i, d in enumerate(body[::-1]))
    return -weighted % 10


def s10(rng: np.random.Generator, service: str, country: str = "CN") -> str:
    """A UPU S10 number with a correct check digit, e.g. EA123456785CN."""
    serial = _digits(rng, 8)
    return f"{service}{serial}{s10_check_digit(serial)}{country}"


def random_carrier(rng: np.random.Generator) -> str:
    """A carrier code drawn with the market-share weighting of CARRIERS."""
    return CARRIER_CODES[int(rng.choice(len(CARRIER_CODES), p=CARRIER_WEIGHTS))]


def make_waybill(carrier: str, rng: np.random.Generator) -> str:
    """A real-shaped waybill number of `carrier` (a code of CARRIERS)."""
    r = float(rng.random())
    if carrier == "SF":
        if r < 0.9:
            return "SF" + _digits(rng, 13)
        # legacy 12-digit numeric: any first digit except 5/6/7 (those are ZTO's)
        return _pick(rng, "0123489") + _digits(rng, 11)
    if carrier == "ZTO":
        if r < 0.75:
            return _pick(rng, ["73", "75", "78"]) + _digits(rng, 12)       # 14 digits
        if r < 0.85:
            return "7" + _digits(rng, 14)                                  # 15 digits
        return _pick(rng, "567") + _digits(rng, 11)                        # older 12 digits
    if carrier == "YTO":
        return "YT" + _digits(rng, 13)
    if carrier == "STO":
        return _pick(rng, ["77", "77", "77", "88", "66", "55"]) + _digits(rng, 11)
    if carrier == "YUNDA":
        prefix = _pick(rng, ["31", "43", "46", "33", "34"])
        return prefix + _digits(rng, 11 if r < 0.6 else 13)
    if carrier == "JT":
        return "JT" + _digits(rng, 13)
    if carrier == "EMS":
        if r < 0.6:
            return "1" + _digits(rng, 12)                                  # domestic EMS
        return s10(rng, "E" + _pick(rng, "ABCDEFGHJKLMNPQRSTUVWXYZ"))
    if carrier == "CHINAPOST":
        if r < 0.5:
            return _pick(rng, ["98", "99"]) + _digits(rng, 11)             # domestic parcel
        return s10(rng, _pick(rng, "CRLKV") + _pick(rng, _LETTERS))
    if carrier == "JD":
        if r < 0.6:
            return "JDV" + _pick(rng, "ABCDE") + _digits(rng, 11)
        if r < 0.8:
            return "JDX" + _digits(rng, 12)
        return "JD" + _digits(rng, 13)
    raise ValueError(f"unknown carrier {carrier!r}")


def make_ean13(rng: np.random.Generator) -> str:
    """An EAN-13 product code with a Chinese (GS1 China, 690-699) prefix and a valid check digit."""
    body = "69" + str(int(rng.integers(0, 10))) + _digits(rng, 9)
    return body + str(gs1_check_digit(body))
