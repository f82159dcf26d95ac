import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sorter.controller.routing.carriers import CarrierTable
from sorter.controller.config.load import load_config
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import RouteDecision, Router
from sorter.plc.sim.waybills import CARRIER_CODES, make_ean13, make_waybill, random_carrier

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config(ROOT / "config/wenling-line1.yaml")
CHUTES = {c.id: c.alternate for c in CFG.line.chutes}
TOWNS = CFG.sim.towns
TOWN_CHUTE = {c.name: c.id for c in CFG.line.chutes}


@pytest.fixture
def setup(tmp_path):
    routes = tmp_path / "routes.yaml"
    shutil.copy(ROOT / "config/wenling-routes.yaml", routes)
    mpath = tmp_path / "manifest.db"
    m = Manifest(mpath)
    rng = np.random.default_rng(42)
    rows = {}
    for i in range(2000):
        c = CARRIER_CODES[i % len(CARRIER_CODES)]
        rows[make_waybill(c, rng)] = TOWNS[i % len(TOWNS)]
    rows["75123456789012"] = "泽国镇"
    rows["SF1423456789012"] = "大溪镇"
    rows["DPK123456789012"] = "松门镇"      # a carrier the table does not know
    rows["JT0012345678901"] = "杭州市"       # not a Wenling town -> default
    m.upsert(list(rows.items()))
    router = Router(routes, mpath, CHUTES)
    yield router, routes, m, rows
    router.close()
    m.close()


def test_sorted_by_town(setup):
    router, _, _, rows = setup
    d = router.decide([("code128", "75123456789012")])
    assert isinstance(d, RouteDecision)
    assert (d.outcome, d.chute, d.waybill, d.carrier, d.destination) == ("sorted", "C06", "75123456789012", "ZTO", "泽国镇")
    assert "rule 6 (town=泽国镇)" in d.reason
    assert d.routing_version == router.version and len(d.routing_version) == 12
    for wb, town in rows.items():
        if town in TOWN_CHUTE:
            d = router.decide([("code128", wb)])
            assert d.outcome == "sorted" and d.chute == TOWN_CHUTE[town], (wb, town, d)


def test_default_for_other_towns(setup):
    router, *_ = setup
    d = router.decide([("code128", "JT0012345678901")])
    assert d.outcome == "sorted" and d.chute == "MANUAL" and d.reason.endswith("default")


def test_product_codes_and_junk_ignored(setup):
    router, *_ = setup
    rng = np.random.default_rng(0)
    d = router.decide([("ean13", make_ean13(rng)), ("code128", "SF1423456789012"), ("code128", "HELLO"),
                       ("qrcode", "https://weixin.qq.com/r/abc"), ("upca", "036000291452")])
    assert d.outcome == "sorted" and d.chute == "C07" and d.carrier == "SF"


def test_same_waybill_from_several_cameras(setup):
    router, *_ = setup
    d = router.decide([("code128", "SF1423456789012"), ("code128", "SF1423456789012"),
                       ("qrcode", "https://www.sf-express.com/waybill?no=SF1423456789012"),
                       ("code128", " sf1423456789012")])
    assert d.outcome == "sorted" and d.waybill == "SF1423456789012"


def test_qr_waybill_alone(setup):
    router, *_ = setup
    d = router.decide([("qrcode", '{"billcode":"75123456789012","site":"温岭"}')])
    assert d.outcome == "sorted" and d.waybill == "75123456789012" and d.chute == "C06"


def test_no_read(setup):
    router, *_ = setup
    for reads in ([], [("ean13", "6901234567892")], [("code128", "ABC")], [("code128", "EA123456784CN")]):
        d = router.decide(reads)
        assert d.outcome == "no_read" and d.chute is None and d.waybill is None
        assert d.routing_version == router.version


def test_multi_read(setup):
    router, *_ = setup
    d = router.decide([("code128", "75123456789012"), ("code128", "SF1423456789012"), ("ean13", "6901234567892")])
    assert d.outcome == "multi_read" and d.chute is None
    assert "75123456789012" in d.reason and "SF1423456789012" in d.reason


def test_not_in_manifest(setup):
    router, *_ = setup
    d = router.decide([("code128", "78999999999999")])
    assert d.outcome == "no_route" and d.chute is None and d.carrier == "ZTO"
    assert d.reason == "waybill 78999999999999 not in manifest"


def test_unknown_carrier_found_in_manifest(setup):
    router, *_ = setup
    d = router.decide([("code128", "DPK123456789012")])
    assert d.outcome == "sorted" and d.carrier is None and d.chute == "C08"


def test_no_rule_no_default(setup):
    router, routes, *_ = setup
    routes.write_text("rules:\n  - {town: 泽国镇, chute: C06}\n", encoding="utf-8")
    assert not router.reload()[0]        # no default, and 1 rule of ~40: a cut-short file?
    assert router.reload(force=True)[0]  # a person says it is meant
    d = router.decide([("code128", "SF1423456789012")])
    assert d.outcome == "no_route" and d.destination == "大溪镇" and "no default" in d.reason


def test_chute_unavailable_alternate(setup):
    router, *_ = setup
    reads = [("code128", "75123456789012")]
    d = router.decide(reads, available=lambda c: c != "C06")
    assert d.outcome == "sorted" and d.chute == "MANUAL" and "alternate MANUAL" in d.reason
    d = router.decide(reads, available=lambda c: c not in ("C06", "MANUAL"))
    assert d.outcome == "chute_unavailable" and d.chute is None and d.destination == "泽国镇"
    # MANUAL has no alternate
    d = router.decide([("code128", "JT0012345678901")], available=lambda c: c != "MANUAL")
    assert d.outcome == "chute_unavailable" and "no alternate" in d.reason


def test_reload_success_and_failure(setup):
    router, routes, *_ = setup
    router.max_rule_drop = 1.0   # this test swaps the example table for a one-rule one
    v1 = router.version
    ok, msg = router.reload()
    assert ok and router.version == v1 and "unchanged" in msg
    routes.write_text("rules:\n  - {town: 泽国镇, chute: C16}\ndefault: MANUAL\n", encoding="utf-8")
    ok, msg = router.reload()
    assert ok and router.version != v1 and v1 in msg
    v2 = router.version
    d = router.decide([("code128", "75123456789012")])
    assert d.chute == "C16" and d.routing_version == v2
    # a bad file is refused, the old table stays
    routes.write_text("rules:\n  - {town: 泽国镇, chute: C99}\ndefault: MANUAL\n", encoding="utf-8")
    ok, msg = router.reload()
    assert not ok and f"{routes}:2:" in msg and "C99" in msg and v2 in msg
    assert router.version == v2
    assert router.decide([("code128", "75123456789012")]).chute == "C16"
    routes.write_text("rules: [\n", encoding="utf-8")
    ok, msg = router.reload()
    assert not ok and router.version == v2


def test_manifest_rows_written_after_start_are_seen(setup):
    router, _, m, _ = setup
    assert router.decide([("code128", "75000000000001")]).outcome == "no_route"
    m.upsert([("75000000000001", "坞根镇")])
    d = router.decide([("code128", "75000000000001")])
    assert d.outcome == "sorted" and d.chute == "C16"


def test_bad_routes_file_at_start(tmp_path):
    from sorter.controller.routing.routes import RoutesError
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {town: x, chute: NOPE}\n", encoding="utf-8")
    with pytest.raises(RoutesError):
        Router(p, tmp_path / "m.db", CHUTES)


def test_custom_carrier_table(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {carrier: DBL, chute: C01}\ndefault: MANUAL\n", encoding="utf-8")
    m = Manifest(tmp_path / "m.db")
    m.upsert([("DPK123456789012", "泽国镇")])
    r = Router(p, tmp_path / "m.db", CHUTES, carriers=CarrierTable({"DBL": r"DPK\d{12}"}))
    d = r.decide([("code128", "DPK123456789012")])
    assert (d.outcome, d.carrier, d.chute) == ("sorted", "DBL", "C01")
    r.close()
    m.close()


def test_decide_latency_100k_manifest(tmp_path, capsys):
    mpath = tmp_path / "m.db"
    m = Manifest(mpath)
    rng = np.random.default_rng(7)
    rows = {}
    while len(rows) < 100_000:
        rows[make_waybill(random_carrier(rng), rng)] = TOWNS[int(rng.integers(0, len(TOWNS)))]
    m.upsert(list(rows.items()))
    router = Router(ROOT / "config/wenling-routes.yaml", mpath, CHUTES)
    wbs = list(rows)
    parcels = []
    for i in range(20_000):
        wb = wbs[int(rng.integers(0, len(wbs)))] if i % 20 else make_waybill("ZTO", rng)  # 5% unknown
        parcels.append([("code128", wb), ("ean13", make_ean13(rng)), ("qrcode", f"https://x.cn/q?no={wb}"),
                        ("code128", wb)])
    for reads in parcels[:1000]:
        router.decide(reads)  # warm up
    times = np.empty(len(parcels))
    for i, reads in enumerate(parcels):
        t0 = time.perf_counter_ns()
        router.decide(reads)
        times[i] = time.perf_counter_ns() - t0
    p50, p99, mx = np.percentile(times, 50) / 1e3, np.percentile(times, 99) / 1e3, times.max() / 1e3
    with capsys.disabled():
        print(f"\ndecide() with 100k-row manifest, 4 reads/parcel: p50 {p50:.1f} us, p99 {p99:.1f} us, max {mx:.1f} us")
    assert p99 < 1000
    router.close()
    m.close()
