"""The shipped gazetteer knows every village and community of Wenling (the statistical division codes'
fifth level, config/towns.yaml): an address as people write it -- with or without province and
city, by village or community, an old town name, house numbers, a name and a phone number after
it, a one-character typo -- resolves to its town, or is no_route with a reason; never a wrong town.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sorter.controller.routing.gazetteer import load_gazetteer
from sorter.controller.routing.manifest import Manifest, ManifestRow
from sorter.controller.routing.router import Router

ROOT = Path(__file__).resolve().parents[1]
TOWNS_YAML = ROOT / "config/towns.yaml"

# (kind, address, town it must resolve to, or None: no_route, with a word the reason must have)
ADDRESSES = [
    ("full address", "浙江省台州市温岭市泽国镇横径村12号", "泽国镇"),
    ("no province or city", "泽国镇横径村12号", "泽国镇"),
    ("village only", "温岭市东门村5号", "太平街道"),
    ("village only, no city", "前瓦屿村18号", "大溪镇"),
    ("community", "浙江温岭迎辉社区3幢201室", "太平街道"),
    ("community by its committee's name", "温岭市锦屏居委会旁", "太平街道"),
    ("village named like another town's street", "温岭市城东村8号", "新河镇"),
    ("old town name", "温岭市牧屿镇牧屿村", "泽国镇"),
    ("old town name only", "台州温岭潘郎镇108号", "大溪镇"),
    ("house and room numbers", "温岭市松门镇松建村128号3单元502室", "松门镇"),
    ("name and phone appended", "温岭市横峰街道横峰村88号 张三 13800000000", "横峰街道"),
    ("spaces everywhere", "温岭市 泽国镇 横径村 12 号", "泽国镇"),
    ("town typo (镇 -> 真), village right", "温岭市泽国真横径村", "泽国镇"),
    ("town typo, no village", "温岭市泽国真人民路5号", "泽国镇"),
    ("village typo, town right", "温岭市泽国镇横经村12号", "泽国镇"),
    ("village typo, no town", ("温岭市横经村12号", "no known town")),
    ("typo that makes another town's village", ("温岭市泽国镇东门村3号", "but village 东门村 is in 太平街道")),
    ("name that contains a town's name", ("温岭市东门村5号 王大溪 13912345678", "is in 太平街道")),
    ("village two towns have", ("温岭市汇头林村", "ambiguous")),
    ("village two towns have, with its town", "温岭市箬横镇汇头林村", "箬横镇"),
    ("community of a zone no chute serves", ("温岭市东部新区港湾社区", "no known town")),
    ("county only", ("浙江省温岭市", "no known town")),
    ("two towns", ("温岭市泽国镇大溪镇", "ambiguous")),
    ("another county", ("浙江省杭州市西湖区文三路", "no known town")),
]


def expand(case):
    kind, a, *b = case
    if b:
        return kind, a, b[0], None
    return kind, a[0], None, a[1]


CASES = [expand(c) for c in ADDRESSES]


@pytest.fixture(scope="module")
def gazetteer():
    return load_gazetteer(TOWNS_YAML)


@pytest.mark.parametrize("kind, address, town, why", CASES, ids=[c[0] for c in CASES])
def test_address_kinds(gazetteer, kind, address, town, why):
    got, how = gazetteer.resolve(address)
    assert got == town, f"{kind}: {address} -> {got} ({how})"
    if why is not None:
        assert why in how


def villages_of_the_file() -> list[tuple[str, str, str]]:
    """(code, village as written, town) of every village line of the shipped file."""
    out, town = [], None
    for line in TOWNS_YAML.read_text(encoding="utf-8").splitlines():
        m = re.match(r"  - name: (\S+)", line)
        if m:
            town = m.group(1)
        m = re.match(r"      - (\S+)\s+# (\d{12}) ", line)
        if m:
            out.append((m.group(2), m.group(1), town))
    return out


def test_every_village_and_community_of_the_codes_is_there(gazetteer):
    rows = villages_of_the_file()
    assert len(rows) == 660 and len({c for c, _, _ in rows}) == 660
    for code, village, town in rows:
        assert code.startswith("331081") and len(code) == 12
        assert village in gazetteer.villages_of(town)
        assert village.endswith(("村", "社区"))
    assert len(gazetteer.towns) == 16 and {t for _, _, t in rows} == set(gazetteer.towns)
    header = TOWNS_YAML.read_text(encoding="utf-8").split("county:")[0]
    assert "2023-06-30" in header and "china-division 2.7.0" in header


def test_no_village_ever_resolves_to_a_wrong_town(gazetteer):
    rows = villages_of_the_file()
    shared = {v for v in {v for _, v, _ in rows} if len({t for _, w, t in rows if w == v}) > 1}
    for _, village, town in rows:
        alone, how = gazetteer.resolve(f"温岭市{village}18号 李四 13700000000")
        if village in shared:
            assert alone is None and "ambiguous" in how
        else:
            assert alone == town, (village, how)
        assert gazetteer.resolve(f"浙江省台州市温岭市{town}{village}18号")[0] == town
        for other in gazetteer.towns:
            if other != town:
                got, how = gazetteer.resolve(f"{other}{village}18号")
                assert got != other or village in gazetteer.villages_of(other), (other, village, how)


def test_a_parcel_advised_by_a_village_address_goes_to_its_towns_chute(example_config):
    cfg = example_config()
    with Manifest(cfg.routing.manifest) as m:
        m.upsert([("75000000000001", None, None, "温岭市前瓦屿村18号 王五 13600000000"),
                  ("75000000000002", None, None, "温岭市泽国镇东门村3号")])
    router = Router.from_config(cfg)
    try:
        d = router.decide([("code128", "75000000000001")])
        assert d.outcome == "sorted" and d.destination == "大溪镇", d
        assert d.chute == router.route(router.state, "X", None, ManifestRow("大溪镇", None, None, None, None,
                                                                              None, 0)).chute
        d = router.decide([("code128", "75000000000002")])
        assert d.outcome == "no_route" and "东门村" in d.reason, d
    finally:
        router.close()

