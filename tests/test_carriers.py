import numpy as np
import pytest

from sorter.controller.routing.carriers import CarrierTable, gtin_valid, s10_check_digit, s10_valid
from sorter.plc.sim.waybills import (CARRIER_CODES, CARRIER_WEIGHTS, CARRIERS, make_ean13, make_waybill, random_carrier)

T = CarrierTable()

REAL_SHAPED = [
    ("SF1423456789012", "SF"),
    ("SF142345678901", "SF"),
    ("912345678901", "SF"),          # legacy 12-digit SF
    ("75123456789012", "ZTO"),       # 14 digits
    ("73100012345678", "ZTO"),
    ("781234567890123", "ZTO"),      # 15 digits
    ("712345678901", "ZTO"),         # older 12 digits
    ("YT7512345678901", "YTO"),
    ("7730123456789", "STO"),
    ("8812345678901", "STO"),
    ("3123456789012", "YUNDA"),
    ("4312345678901", "YUNDA"),
    ("463123456789012", "YUNDA"),    # 15 digits
    ("JT0012345678901", "JT"),
    ("EA123456785CN", "EMS"),        # the S10 textbook example
    ("EE123456785CN", "EMS"),
    ("1012345678901", "EMS"),        # domestic EMS
    ("RR123456785CN", "CHINAPOST"),
    ("CP123456785CN", "CHINAPOST"),
    ("9812345678901", "CHINAPOST"),
    ("JDVA12345678901", "JD"),
    ("JDX123456789012", "JD"),
    ("JD0012345678901", "JD"),
    ("  sf1423456789012 ", "SF"),    # normalised
]

NEAR_MISSES = [
    "EA123456784CN",      # wrong S10 check digit
    "RR123456780CN",      # wrong S10 check digit
    "EA12345678CN",       # too short
    "SF12345678901",      # SF + 11 digits
    "YT751234567890",     # YT + 12 digits
    "JT00123456789012",   # JT + 14 digits
    "2123456789012",      # 13 digits, no carrier starts with 2
    "12345678901",        # 11 digits
    "7512345678901234567",
    "JDVZ12345678901",
    "",
    "hello world",
    "https://example.com",
    "顺丰SF1423456789012",
]


@pytest.mark.parametrize("text,carrier", REAL_SHAPED)
def test_real_shaped(text, carrier):
    assert T.identify(text) == carrier


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses(text):
    assert T.identify(text) is None


def test_s10_check_digit():
    # 1*8+2*6+3*4+4*2+5*3+6*5+7*9+8*7 = 204; 204 % 11 = 6; 11 - 6 = 5 -> EA123456785CN
    assert s10_check_digit("12345678") == 5
    # exhaustive property: exactly one check digit is valid for a serial
    for serial in ("12345678", "00000000", "99999999", "47312482", "10000000"):
        good = [d for d in range(10) if s10_valid(f"EA{serial}{d}CN")]
        assert good == [s10_check_digit(serial)]
    assert s10_check_digit("00000000") == 5   # sum 0 -> 11 -> 5


def test_s10_ten_maps_to_zero():
    # find a serial whose raw check is 10 and one whose is 11
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        serial = "".join(str(d) for d in rng.integers(0, 10, 8))
        total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7)))
        raw = 11 - total % 11
        if raw in (10, 11):
            seen.add(raw)
            assert s10_check_digit(serial) == {10: 0, 11: 5}[raw]
    assert seen == {10, 11}


def test_product_codes():
    rng = np.random.default_rng(3)
    for _ in range(200):
        e = make_ean13(rng)
        assert gtin_valid(e) and e[:2] == "69"
        assert T.is_product_code("ean13", e)
    assert T.is_product_code("upca", "036000291452")
    assert T.is_product_code("ean8", "96385074")
    assert T.is_product_code("EAN-13", "6901234567892")
    assert T.is_product_code(None, "6901234567892")       # unknown symbology, valid EAN, no carrier
    assert not T.is_product_code("code128", "6901234567892")
    assert not T.is_product_code("code128", "SF1423456789012")
    # a waybill-shaped number of unknown symbology is never taken for a product code
    assert T.identify("3123456789012") == "YUNDA"
    assert not T.is_product_code(None, "3123456789012")


def test_override_replaces_default():
    t = CarrierTable({"SF": r"SF\d{15}"})
    assert t.identify("SF123456789012345") == "SF"
    assert t.identify("SF1423456789012") is None
    assert t.identify("912345678901") is None   # the legacy default is replaced too
    t2 = CarrierTable({"DBL": r"DPK\d{12}"})
    assert t2.identify("DPK123456789012") == "DBL"
    assert "DBL" in t2.codes
    with pytest.raises(Exception):
        CarrierTable({"SF": "("})


def test_generated_waybills_identify_as_own_carrier():
    rng = np.random.default_rng(12345)
    for carrier in CARRIER_CODES:
        for _ in range(2000):
            w = make_waybill(carrier, rng)
            assert T.identify(w) == carrier, (carrier, w)
    for _ in range(5000):
        c = random_carrier(rng)
        assert T.identify(make_waybill(c, rng)) == c


def test_generated_s10_have_valid_check_digit():
    rng = np.random.default_rng(7)
    n = 0
    for _ in range(3000):
        w = make_waybill("EMS", rng)
        if w[0].isalpha():
            n += 1
            assert s10_valid(w)
    assert n > 500


def test_market_share():
    assert abs(CARRIER_WEIGHTS.sum() - 1) < 1e-9
    share = dict(CARRIERS)
    big = [share[c] for c in ("ZTO", "YTO", "YUNDA", "JT", "STO")]
    small = [share[c] for c in ("SF", "EMS", "JD")]
    assert min(big) > max(small)
    assert set(CARRIER_CODES) == set(T.codes)
    rng = np.random.default_rng(1)
    draws = [random_carrier(rng) for _ in range(20000)]
    assert draws.count("ZTO") > draws.count("JD") * 2


def test_unknown_carrier_in_generator():
    with pytest.raises(ValueError):
        make_waybill("DHL", np.random.default_rng(0))


def test_find_waybills_in_qr():
    assert T.find_waybills("https://m.zto.com/q?billcode=75123456789012&x=1") == [("75123456789012", "ZTO")]
    assert T.find_waybills("SF1423456789012") == [("SF1423456789012", "SF")]
    assert T.find_waybills("https://weixin.qq.com/r/abcdef") == []
