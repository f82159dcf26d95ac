import hashlib
from pathlib import Path

import pytest

from sorter.controller.config.load import load_config
from sorter.controller.routing.routes import RoutesError, load_routes

ROOT = Path(__file__).resolve().parents[1]
CHUTES = {f"C{i:02d}" for i in range(1, 21)} | {"MANUAL", "REJECT"}


def write(tmp_path, text, name="routes.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def problems(tmp_path, text, chutes=CHUTES):
    p = write(tmp_path, text)
    with pytest.raises(RoutesError) as ei:
        load_routes(p, chutes)
    return ei.value.problems, str(p)


def test_example_routes_every_wenling_town():
    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    ids = {c.id for c in cfg.line.chutes}
    table = load_routes(cfg.routing.routes, ids)
    towns = cfg.sim.towns
    assert len(towns) == 16
    by_name = {c.name: c.id for c in cfg.line.chutes}
    for town in towns:
        chute, why = table.chute_for(None, town)
        assert chute == by_name[town], town          # the chute named after the town
        assert why.startswith("rule ") and f"town={town}" in why
    assert table.chute_for(None, "泽国镇") == ("C06", "rule 6 (town=泽国镇)")
    assert table.chute_for("SF", "杭州市") == ("MANUAL", "default")
    raw = Path(cfg.routing.routes).read_bytes()
    assert table.version == hashlib.sha256(raw).hexdigest()[:12]


def test_carrier_narrows_rule(tmp_path):
    p = write(tmp_path, """\
rules:
  - {town: 大溪镇, carrier: SF, chute: C20}
  - {carrier: JD, chute: C19}
  - {town: 大溪镇, chute: C07}
""")
    t = load_routes(p, CHUTES)
    assert t.chute_for("SF", "大溪镇") == ("C20", "rule 1 (carrier=SF, town=大溪镇)")
    assert t.chute_for("ZTO", "大溪镇") == ("C07", "rule 3 (town=大溪镇)")
    assert t.chute_for(None, "大溪镇") == ("C07", "rule 3 (town=大溪镇)")
    assert t.chute_for("JD", "大溪镇") == ("C19", "rule 2 (carrier=JD)")
    assert t.chute_for("JD", "松门镇") == ("C19", "rule 2 (carrier=JD)")
    chute, why = t.chute_for("ZTO", "松门镇")      # no default
    assert chute is None and "no default" in why


def test_unknown_chute_with_line(tmp_path):
    probs, f = problems(tmp_path, "rules:\n  - {town: 泽国镇, chute: C06}\n  - {town: 大溪镇, chute: C99}\ndefault: NOPE\n")
    assert f"{f}:3: rule 2: unknown chute 'C99'" in probs
    assert f"{f}:4: default: unknown chute 'NOPE'" in probs


def test_duplicate_rule_and_unreachable(tmp_path):
    probs, f = problems(tmp_path, """\
rules:
  - {town: 泽国镇, chute: C06}
  - {town: 大溪镇, chute: C07}
  - {town: 泽国镇, chute: C08}
  - {town: 泽国镇, carrier: SF, chute: C09}
  - {carrier: JD, chute: C10}
  - {carrier: JD, town: 松门镇, chute: C11}
default: MANUAL
""")
    assert probs[0].startswith(f"{f}:4: rule 3: duplicate of rule 1 (line 2)")
    assert probs[1].startswith(f"{f}:5: rule 4: can never match") and "rule 1" in probs[1]
    assert probs[2].startswith(f"{f}:7: rule 6: can never match") and "carrier=JD" in probs[2]
    assert len(probs) == 3


def test_duplicate_yaml_key(tmp_path):
    probs, f = problems(tmp_path, "rules:\n  - {town: 泽国镇, chute: C06}\ndefault: MANUAL\ndefault: C01\n")
    assert len(probs) == 1 and probs[0].startswith(f"{f}:4: ") and "duplicate key 'default'" in probs[0]
    probs, f = problems(tmp_path, "rules:\n  - {town: 泽国镇, chute: C06, town: 大溪镇}\n")
    assert probs[0].startswith(f"{f}:2: ") and "duplicate key 'town'" in probs[0]


def test_yaml_syntax_error(tmp_path):
    probs, f = problems(tmp_path, "rules:\n  - {town: 泽国镇, chute: C06}\n  - {town: 大溪镇, chute: C07\ndefault: MANUAL\n")
    assert len(probs) == 1
    line = int(probs[0].split(":")[1])
    assert probs[0].startswith(f"{f}:") and line in (3, 4)


def test_unknown_keys_and_types(tmp_path):
    probs, f = problems(tmp_path, """\
rules:
  - {town: 泽国镇, chute: C06, chtue: C07}
  - {town: 大溪镇}
  - {chute: C08}
  - {town: 松门镇, carrier: DHL, chute: C08}
  - 箬横镇
  - {town: 新河镇, chute: 10}
defualt: MANUAL
""")
    assert any(p.startswith(f"{f}:2: rule 1: unknown key 'chtue' (expected town, carrier, chute, ") for p in probs)
    assert f"{f}:3: rule 2: no chute" in probs
    assert any(p.startswith(f"{f}:4: rule 3: needs town: or carrier:") for p in probs)
    assert any(p.startswith(f"{f}:5: rule 4: unknown carrier 'DHL'") for p in probs)
    assert any(p.startswith(f"{f}:6: rule 5: must be a mapping") for p in probs)
    assert any(p.startswith(f"{f}:7: rule 6: chute must be a chute id") for p in probs)
    assert any(p.startswith(f"{f}:8: unknown key 'defualt'") for p in probs)


def test_not_a_mapping_and_missing_file(tmp_path):
    probs, f = problems(tmp_path, "- {town: 泽国镇, chute: C06}\n")
    assert probs[0].startswith(f"{f}:1: ")
    with pytest.raises(RoutesError) as ei:
        load_routes(tmp_path / "nope.yaml", CHUTES)
    assert "cannot read" in ei.value.problems[0]


def test_default_only_and_version_changes(tmp_path):
    p = write(tmp_path, "default: MANUAL\n")
    t1 = load_routes(p, CHUTES)
    assert t1.chute_for(None, "泽国镇") == ("MANUAL", "default")
    p.write_text("default: MANUAL  # comment\n", encoding="utf-8")
    t2 = load_routes(p, CHUTES)
    assert len(t1.version) == 12 and t1.version != t2.version
