"""The routing files: carriers.yaml, towns.yaml (gazetteer), the rule table's fields (groups, sort
codes, service, weight, intercept), CSV tables, versions and reloads, the county-hub example."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sorter.controller.routing.carriers import CarrierTable, load_carriers
from sorter.controller.config.load import load_config
from sorter.controller.routing.gazetteer import load_gazetteer
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.routes import Facts, RoutesError, load_routes
from sorter.controller.routing.router import Router, load_routing, load_routing_config
from sorter.controller.routing.files import FileProblems
from tests.conftest import ROOT

CFG = load_config(ROOT / "config/wenling-line1.yaml")
CHUTES = {c.id: c.alternate for c in CFG.line.chutes}
TOWNS = CFG.sim.towns


def w(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---- carriers.yaml ---------------------------------------------------------------------------
def test_shipped_carriers_file_equals_defaults():
    table, notes, raw = load_carriers(ROOT / "config/carriers.yaml")
    assert table.patterns == CarrierTable().patterns
    assert table.order[-2:] == ("ZTO", "SF")
    assert any("ZTO" in n and "SF" in n for n in notes)   # the one overlap, resolved by the order
    assert table.identify("712345678901") == "ZTO" and table.identify("912345678901") == "SF"
    assert table.identify("EA123456784CN") is None        # S10 with a wrong check digit


def test_carrier_override_new_carrier_and_order(tmp_path):
    p = w(tmp_path / "c.yaml", """\
order: [DBL, SF]
carriers:
  SF: {formats: [{pattern: 'SF\\d{15}', examples: [SF123456789012345]}]}
  DBL:
    name: 德邦快递
    formats:
      - {pattern: 'DPK\\d{12}', examples: [DPK123456789012]}
      - {pattern: '\\d{12}'}
""")
    t, notes, _ = load_carriers(p)
    assert t.identify("SF123456789012345") == "SF"
    assert t.identify("SF1423456789012") is None           # the default SF format is replaced
    assert t.identify("DPK123456789012") == "DBL"
    assert t.identify("712345678901") == "DBL"             # DBL's \d{12} is first in the order
    assert t.names["DBL"] == "德邦快递"
    assert any("DBL" in n for n in notes)


def test_carrier_file_errors_have_lines(tmp_path):
    p = w(tmp_path / "c.yaml", """\
order: [SF, NOPE]
carriers:
  ems:
    formats: ['E\\d+']
  EMS:
    formats:
      - {pattern: 'E[A-Z]\\d{9}[A-Z]{2}', check: s10, examples: [EA123456784CN]}
      - {pattern: '(', note: broken}
      - {pattern: 'X\\d+', check: luhn}
  ZTO:
    formats:
      - {pattern: '[57]\\d{13,14}', examples: ['1012345678901']}
""")
    with pytest.raises(FileProblems) as ei:
        load_carriers(p)
    probs = ei.value.problems
    f = str(p)
    assert any(x.startswith(f"{f}:1: order: unknown carrier 'NOPE'") for x in probs)
    assert any(x.startswith(f"{f}:3: carrier code 'ems'") for x in probs)
    assert any(x.startswith(f"{f}:7: EMS: example EA123456784CN has a wrong S10 check digit") for x in probs)
    assert any(x.startswith(f"{f}:8: EMS: bad pattern") for x in probs)
    assert any(x.startswith(f"{f}:9: EMS: unknown check 'luhn'") for x in probs)
    assert any(x.startswith(f"{f}:12: ZTO: example 1012345678901 does not fit") for x in probs)


def test_carrier_example_shadowed_by_order(tmp_path):
    p = w(tmp_path / "c.yaml", """\
order: [SF, ZTO]
carriers:
  ZTO: {formats: [{pattern: '[5-7]\\d{11}', examples: ['712345678901']}]}
""")
    with pytest.raises(FileProblems) as ei:
        load_carriers(p)
    assert "is identified as SF" in ei.value.problems[0] and f"{p}:3:" in ei.value.problems[0]


def test_manifest_carrier_wins(tmp_path):
    m = Manifest(tmp_path / "m.db")
    m.upsert([("712345678901", "泽国镇", None, None, "SF")])   # ZTO by format, SF says the platform
    r = Router(ROOT / "config/wenling-routes.yaml", tmp_path / "m.db", CHUTES)
    d = r.decide([("code128", "712345678901")])
    assert d.carrier == "SF" and d.chute == "C06"
    r.close()
    m.close()


# ---- gazetteer -------------------------------------------------------------------------------
def test_shipped_gazetteer():
    g = load_gazetteer(ROOT / "config/towns.yaml")
    assert set(g.towns) == set(TOWNS)
    assert "横径村" in g.villages_of("泽国镇")
    # every village and community of the statistical codes (tests/test_gazetteer_villages.py)
    assert sum(len(v) for _, v in g.towns.values()) == 660
    assert "china-division 2.7.0" in (ROOT / "config/towns.yaml").read_text(encoding="utf-8")
    assert g.canonical("泽国") == "泽国镇" and g.canonical("杭州") is None
    assert g.resolve("浙江省台州市温岭市泽国镇横径村12号")[0] == "泽国镇"
    assert g.resolve("温岭市横径村8号")[0] == "泽国镇"              # the village names its town
    assert g.resolve("温岭市城南镇人民路5号")[0] == "城南镇"
    assert g.resolve("温岭市泽国镇大溪路1号")[0] == "泽国镇"        # full town name beats an alias in a road
    town, why = g.resolve("温岭市泽国镇大溪镇")
    assert town is None and "ambiguous" in why and "泽国镇" in why and "大溪镇" in why
    town, why = g.resolve("杭州市西湖区文三路")
    assert town is None and "no known town" in why


def test_village_in_two_towns(tmp_path):
    p = w(tmp_path / "t.yaml", """\
towns:
  - {name: 甲镇, villages: [新村, 东村]}
  - {name: 乙镇, villages: [新村]}
""")
    g = load_gazetteer(p)
    town, why = g.resolve("某县新村5号")
    assert town is None and "ambiguous" in why and "甲镇" in why and "乙镇" in why
    assert g.resolve("某县乙镇新村5号")[0] == "乙镇"
    assert g.resolve("东村")[0] == "甲镇"


def test_gazetteer_errors(tmp_path):
    p = w(tmp_path / "t.yaml", """\
towns:
  - {name: 甲镇, aliases: [甲]}
  - {name: 乙镇, aliases: [甲]}
  - {name: 甲镇}
  - {nmae: 丙镇}
""")
    with pytest.raises(FileProblems) as ei:
        load_gazetteer(p)
    probs, f = ei.value.problems, str(p)
    assert any(x.startswith(f"{f}:3: '甲' already names 甲镇") for x in probs)
    assert any(x.startswith(f"{f}:4: town 甲镇 listed twice") for x in probs)
    assert any(x.startswith(f"{f}:5: ") for x in probs)


# ---- the rule table --------------------------------------------------------------------------
RULES = """\
rules:
  - {intercept: true, carrier: JD, chute: C19}
  - {town: [泽国镇, 大溪], carrier: [SF, EMS], service: 冷链, chute: C18}
  - {town: 泽国镇, weight_kg: [30, null], chute: MANUAL}
  - {town: 泽国镇, chute: C06}
  - {town: 太平街道, chutes: [C01, C17], alternate: C20}
  - {sort_code: "576-W3?-*", chute: C07}
  - {sort_code: [571-*, 572-A1*], chute: C08}
default: MANUAL
intercept: C16
"""


@pytest.fixture
def table(tmp_path):
    g = load_gazetteer(ROOT / "config/towns.yaml")
    return load_routes(w(tmp_path / "r.yaml", RULES),
                       set(CHUTES) | {"C17", "C18", "C19", "C20"}, None, g)


def test_rule_fields(table):
    m = table.match
    assert m(Facts("SF", "泽国镇", service="冷链"))[0].chutes == ("C18",)
    assert m(Facts("ZTO", "泽国镇", service="冷链"))[0].chutes == ("C06",)
    assert m(Facts("SF", "大溪镇", service="冷链"))[0].chutes == ("C18",)     # alias 大溪 -> 大溪镇
    assert m(Facts("ZTO", "泽国镇", weight_kg=31.0))[0].chutes == ("MANUAL",)
    assert m(Facts("ZTO", "泽国镇", weight_kg=29.9))[0].chutes == ("C06",)
    assert m(Facts("ZTO", "泽国镇"))[0].chutes == ("C06",)                    # no weight: the range does not match
    assert m(Facts("ZTO", None, ("576", "W31", "02")))[0].chutes == ("C07",)
    assert m(Facts("ZTO", None, ("576", "W40", "02")))[1] == "default"
    assert m(Facts("ZTO", None, ("571", "X", "9")))[0].chutes == ("C08",)
    assert m(Facts("ZTO", None, ("572", "A19")))[0].chutes == ("C08",)
    assert m(Facts("ZTO", "泽国镇", ("576", "W31", "02")))[0].chutes == ("C06",)  # the town rule comes first
    # intercepted parcels: only intercept rules, then the intercept chute; never the town's chute
    assert m(Facts("JD", "泽国镇", intercept=True))[0].chutes == ("C19",)
    r, why = m(Facts("ZTO", "泽国镇", intercept=True))
    assert r.chutes == ("C16",) and why == "intercept"
    assert table.chutes_for(None, "太平街道") == (("C01", "C17"), "rule 5 (town=太平街道)")


def test_group_balanced_and_alternate(tmp_path):
    routes = w(tmp_path / "r.yaml", RULES)
    m = Manifest(tmp_path / "m.db")
    m.upsert([(f"75{i:012d}", "太平街道") for i in range(100)])
    chutes = dict(CHUTES) | {"C17": None, "C18": None, "C19": None, "C20": None}
    r = Router(routes, tmp_path / "m.db", chutes, towns=ROOT / "config/towns.yaml")
    got = [r.decide([("code128", f"75{i:012d}")]).chute for i in range(100)]
    assert got.count("C01") == 50 and got.count("C17") == 50
    d = r.decide([("code128", "75000000000001")], available=lambda c: c != "C01")
    assert d.chute == "C17"
    d = r.decide([("code128", "75000000000001")], available=lambda c: c not in ("C01", "C17"))
    assert d.chute == "C20" and "alternate C20" in d.reason         # the rule's own alternate
    d = r.decide([("code128", "75000000000001")], available=lambda c: c not in ("C01", "C17", "C20"))
    assert d.outcome == "chute_unavailable"
    r.close()
    m.close()


def test_router_destinations(tmp_path):
    routes = w(tmp_path / "r.yaml", RULES)
    m = Manifest(tmp_path / "m.db")
    m.upsert([
        ("75000000000001", "泽国", None, None, None, None, None, 0),          # alias
        ("75000000000002", None, "576-W31 07", None, None, None, None, 0),    # sort code only
        ("75000000000003", None, None, "温岭市横径村3号", None, None, None, 0),  # village address
        ("75000000000004", None, None, "温岭市泽国镇大溪镇", None, None, None, 0),  # ambiguous
        ("75000000000005", None, None, "上海市浦东新区", None, None, None, 0),      # unknown
        ("75000000000006", "泽国镇", None, None, None, None, 40.0, 0),        # heavy
        ("75000000000007", "泽国镇", None, None, None, None, None, 1),        # intercepted
        ("SF1423456789012", "泽国镇", None, None, None, "冷链", 2.0, 0),
    ])
    chutes = dict(CHUTES) | {"C17": None, "C18": None, "C19": None, "C20": None}
    r = Router(routes, tmp_path / "m.db", chutes, towns=ROOT / "config/towns.yaml")
    d = lambda wb: r.decide([("code128", wb)])
    assert (d("75000000000001").destination, d("75000000000001").chute) == ("泽国镇", "C06")
    x = d("75000000000002")
    assert (x.chute, x.sort_code, x.destination, x.rule) == ("C07", "576-W31-07", "576-W31-07", "rule 6 (sort_code=576-W3?-*)")
    x = d("75000000000003")
    assert x.chute == "C06" and "横径村" in x.reason
    x = d("75000000000004")
    assert x.outcome == "no_route" and "ambiguous" in x.reason
    x = d("75000000000005")
    assert x.outcome == "no_route" and "no known town" in x.reason
    assert d("75000000000006").chute == "MANUAL"
    x = d("75000000000007")
    assert x.chute == "C16" and x.rule == "intercept"
    assert d("SF1423456789012").chute == "C18"
    r.close()
    m.close()


def test_rule_errors(tmp_path):
    p = w(tmp_path / "r.yaml", """\
rules:
  - {town: 泽国镇, chute: C06}
  - {town: 大溪镇, chutes: [C07, C07]}
  - {town: 黑龙镇, chute: C08}
  - {sort_code: 576--W30, chute: C09}
  - {sort_code: "5%6", chute: C09}
  - {town: 松门镇, weight_kg: [5, 1], chute: C08}
  - {town: 松门镇, intercept: false, chute: C08}
  - {town: 松门镇, chute: C08, chutes: [C08, C09]}
  - {town: [泽国镇, 松门镇], chute: C10}
  - {sort_code: 576-W3*, chute: C11}
  - {sort_code: 576-W31-*, chute: C12}
  - {town: 石塘镇, chute: C11, alternate: C11}
default: MANUAL
intercept: NOPE
""")
    with pytest.raises(RoutesError) as ei:
        load_routes(p, set(CHUTES), None, load_gazetteer(ROOT / "config/towns.yaml"))
    probs, f = ei.value.problems, str(p)
    want = {3: "a chute is listed twice", 4: "unknown town '黑龙镇'", 6: "bad sort code pattern",
            7: "weight_kg must be", 8: "intercept: true is the only value", 9: "not both",
            12: "can never match, rule 10", 13: "is one of the rule's own chutes", 15: "unknown chute 'NOPE'"}
    for line, text in want.items():
        assert any(x.startswith(f"{f}:{line}:") and text in x for x in probs), (line, text, probs)
    # a list rule partly shadowed is fine; a list fully shadowed is not
    assert not any(x.startswith(f"{f}:10:") for x in probs)


def test_csv_rule_table_gbk(tmp_path):
    text = ("kind,carrier,town,sort_code,service,weight_kg,intercept,chute,alternate\n"
            ",,泽国镇,,,,,C06,\n"
            ",SF|EMS,大溪镇,,,,,C07|C17,MANUAL\n"
            ",,,576-W3*-*,,,,C09,\n"
            ",,松门镇,,,30-,,MANUAL,\n"
            ",JD,,,,,1,C19,\n"
            "default,,,,,,,MANUAL,\n"
            "intercept,,,,,,,C16,\n")
    p = w(tmp_path / "routes.csv", text, "gbk")
    t = load_routes(p, set(CHUTES) | {"C17", "C19"})
    assert t.chutes_for("SF", "大溪镇")[0] == ("C07", "C17")
    assert t.match(Facts("ZTO", None, ("576", "W30", "1")))[0].chutes == ("C09",)
    assert t.match(Facts("ZTO", "松门镇", weight_kg=31))[0].chutes == ("MANUAL",)
    assert t.match(Facts("JD", "松门镇", intercept=True))[0].chutes == ("C19",)
    assert t.match(Facts("ZTO", "松门镇", intercept=True))[1] == "intercept"
    assert t.default == "MANUAL" and t.intercept_chute == "C16"
    bad = w(tmp_path / "bad.csv", "town,chute,colour\n泽国镇,C99,red\n大溪镇,C07\n", "gbk")
    with pytest.raises(RoutesError) as ei:
        load_routes(bad, set(CHUTES))
    probs = ei.value.problems
    assert any(x.startswith(f"{bad}:1: unknown column 'colour'") for x in probs)
    assert any(x.startswith(f"{bad}:2: rule 1: unknown chute 'C99'") for x in probs)


def test_example_line_every_town_by_town_sort_code_and_address(tmp_path):
    st = load_routing(CFG.routing.routes, set(CHUTES), ROOT / "config/towns.yaml", ROOT / "config/carriers.yaml")
    by_name = {c.name: c.id for c in CFG.line.chutes}
    for i, town in enumerate(TOWNS, 1):
        assert st.table.chute_for(None, town)[0] == by_name[town]
        assert st.table.match(Facts("ZTO", None, ("576", f"W{i:02d}", "33")))[0].chutes == (by_name[town],)
        g_town, _ = st.gazetteer.resolve(f"浙江省台州市温岭市{town}人民路{i}号")
        assert g_town == town
    assert st.table.intercept_chute == "MANUAL"


# ---- versions and reloads --------------------------------------------------------------------
def test_version_covers_every_file(tmp_path):
    for name in ("wenling-routes.yaml", "towns.yaml", "carriers.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    args = (tmp_path / "wenling-routes.yaml", set(CHUTES), tmp_path / "towns.yaml", tmp_path / "carriers.yaml")
    v1 = load_routing(*args).version
    t = (tmp_path / "towns.yaml").read_text(encoding="utf-8")
    (tmp_path / "towns.yaml").write_text(t.replace("aliases: [坞根]", "aliases: [坞根, 坞根乡]"), encoding="utf-8")
    v2 = load_routing(*args).version
    assert v1 != v2 and len(v2) == 12
    only = load_routing(tmp_path / "wenling-routes.yaml", set(CHUTES)).version
    assert only == hashlib.sha256((tmp_path / "wenling-routes.yaml").read_bytes()).hexdigest()[:12]


def test_reload_if_changed(tmp_path, monkeypatch):
    for name in ("wenling-routes.yaml", "towns.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    routes, towns = tmp_path / "wenling-routes.yaml", tmp_path / "towns.yaml"
    m = Manifest(tmp_path / "m.db")
    m.upsert([("75123456789012", "泽国")])
    r = Router(routes, tmp_path / "m.db", CHUTES, towns=towns)
    assert r.reload_if_changed() is None
    # unchanged files cost one stat() each and are never read again (the watcher asks every second)
    import sorter.controller.routing.router as router_mod
    stats, loads = [], []
    monkeypatch.setattr(router_mod, "os", type("os", (), {"stat": staticmethod(lambda f: stats.append(f) or os.stat(f))}))
    monkeypatch.setattr(r, "_load", lambda: loads.append(1))
    for _ in range(1000):
        assert r.reload_if_changed() is None
    assert len(stats) == 1000 * len(r.state.files) and not loads
    monkeypatch.undo()
    v1 = r.version
    # a bad towns file is refused, the old state stays, and it is not retried until it changes
    towns.write_text("towns:\n  - {name: 泽国镇, aliases: [泽国]}\n  - {name: 大溪镇, aliases: [泽国]}\n", encoding="utf-8")
    os.utime(towns, ns=(time.time_ns(), time.time_ns() + 10**9))
    ok, msg = r.reload_if_changed()
    assert not ok and f"{towns}:3:" in msg and v1 in msg and r.version == v1
    assert r.reload_if_changed() is None
    assert r.decide([("code128", "75123456789012")]).chute == "C06"
    # a good change is taken
    routes.write_text(routes.read_text(encoding="utf-8").replace("{town: 泽国镇, chute: C06}", "{town: 泽国镇, chute: C16}"),
                      encoding="utf-8")
    shutil.copy(ROOT / "config/towns.yaml", towns)
    os.utime(routes, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    ok, msg = r.reload_if_changed()
    assert ok and r.version != v1
    d = r.decide([("code128", "75123456789012")])
    assert d.chute == "C16" and d.routing_version == r.version
    r.close()
    m.close()


# ---- the county hub --------------------------------------------------------------------------
def test_county_hub_example():
    cfg = load_config(ROOT / "config/wenling-hub-line.yaml")
    st = load_routing_config(cfg)
    assert not st.gazetteer.from_rules and "横径村" in st.gazetteer.villages_of("泽国镇")
    centres = {"XH": "新河", "CN": "城南", "DX": "大溪", "ZG": "泽国", "SM": "松门"}
    names = {c.id: c.name for c in cfg.line.chutes}
    for cid, centre in centres.items():
        assert centre in names[cid]
    seen = {}
    for town in cfg.sim.towns:
        chutes, _ = st.table.chutes_for(None, town)
        assert chutes and "MANUAL" not in chutes, town
        seen[town] = chutes
    for town in ("新河镇", "城南镇", "大溪镇", "泽国镇", "松门镇"):
        assert seen[town][0] in centres and centres[seen[town][0]] in town     # each centre's own town
    assert seen["太平街道"] == ("TP1", "TP2")
    assert st.table.intercept_chute == "ICPT"


# ---- CLI -------------------------------------------------------------------------------------
def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sorter", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_routes_check_and_test(tmp_path):
    r = run_cli("routes", "check", "--config", "config/wenling-hub-line.yaml")
    assert r.returncode == 0 and "OK, version" in r.stdout and "intercept ICPT" in r.stdout, r.stderr
    text = (ROOT / "config/wenling-hub-line.yaml").read_text(encoding="utf-8")
    for name in ("wenling-hub-routes.yaml", "towns.yaml", "carriers.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / name)
    cfgp = w(tmp_path / "hub-line.yaml", text.replace("manifest: hub-manifest.db", f"manifest: {tmp_path / 'm.db'}"))
    csvp = w(tmp_path / "a.csv", "运单号,乡镇,三段码,地址,重量(kg),拦截\n75123456789012,泽国,,,1.5,\n"
                                 "SF1423456789012,,,温岭市横径村1号,,\nJT0012345678901,温峤镇,,,,是\nbad,,,,,\n", "gbk")
    r = run_cli("manifest", "import", str(csvp), "--config", str(cfgp), "--progress")
    assert r.returncode == 1 and "3 rows imported (gb18030)" in r.stdout and "line 5" in r.stdout, r.stdout + r.stderr
    assert "100.0%" in r.stderr
    r = run_cli("routes", "test", "--config", str(cfgp), "75123456789012", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and (out["carrier"], out["destination"], out["chute"]) == ("ZTO", "泽国镇", "ZG")
    assert out["rule"] == "rule 4 (town=泽国镇)"
    r = run_cli("routes", "test", "--config", str(cfgp), "SF1423456789012")
    assert r.returncode == 0 and "ZG" in r.stdout and "横径村" in r.stdout
    r = run_cli("routes", "test", "--config", str(cfgp), "JT0012345678901", "--json")
    assert json.loads(r.stdout)["chute"] == "ICPT"
    r = run_cli("routes", "test", "--config", str(cfgp), "YT7512345678901", "--sort-code", "576-W14 02", "--json")
    assert json.loads(r.stdout)["chute"] == "CN"
    r = run_cli("routes", "test", "--config", str(cfgp), "YT7512345678901", "--address", "温岭市泽国镇大溪镇")
    assert r.returncode == 1 and "ambiguous" in r.stdout
    # a broken route file: check says where
    (tmp_path / "wenling-hub-routes.yaml").write_text("rules:\n  - {town: 泽国镇, chute: ZZ}\n", encoding="utf-8")
    r = run_cli("routes", "check", "--config", str(cfgp))
    assert r.returncode == 1 and f"{tmp_path / 'wenling-hub-routes.yaml'}:2: rule 1: unknown chute 'ZZ'" in r.stderr
