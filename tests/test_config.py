"""Config files: every shipped example loads; bad files are refused with file, line and key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sorter.controller.config.load import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config").glob("*line*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_loads(path):
    cfg = load_config(path)
    assert cfg.line.chutes and cfg.line.reject_chute
    assert cfg.routing.routes.is_file(), "the routes file named by the config must exist"
    assert cfg.routing.routes.is_absolute()


def test_wenling_example_has_every_town_a_manual_and_a_reject_chute():
    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    names = {c.name for c in cfg.line.chutes}
    for town in ["太平街道", "城东街道", "城西街道", "城北街道", "横峰街道", "泽国镇", "大溪镇", "松门镇", "箬横镇",
                 "新河镇", "石塘镇", "滨海镇", "温峤镇", "城南镇", "石桥头镇", "坞根镇"]:
        assert town in names
    assert cfg.line.belt_speed_mps == 2.0
    assert cfg.line.manual_chute == "MANUAL" and cfg.line.reject_chute == "REJECT"


def edited(tmp_path, old: str, new: str) -> Path:
    src = (ROOT / "config/wenling-line1.yaml").read_text(encoding="utf-8")
    assert old in src, old
    dst = tmp_path / "line.yaml"
    dst.write_text(src.replace(old, new, 1), encoding="utf-8")
    for name in ("wenling-routes.yaml", "towns.yaml", "carriers.yaml"):
        (tmp_path / name).write_text((ROOT / "config" / name).read_text(encoding="utf-8"), encoding="utf-8")
    return dst


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_unknown_key_is_refused_with_its_line(tmp_path):
    p = edited(tmp_path, "  belt_speed_mps: 2.0", "  belt_sped_mps: 2.0")
    msgs = problems(p)
    assert any(f"line.yaml:{line_of(p, 'belt_sped_mps')}: line.belt_sped_mps: unknown key" in m for m in msgs), msgs
    assert any("line.belt_speed_mps: Field required" in m for m in msgs), msgs


def test_number_out_of_bounds_names_the_diverter(tmp_path):
    p = edited(tmp_path, "{name: D3, position_mm: 4800, actuation_ms: 40", "{name: D3, position_mm: 4800, actuation_ms: 4000")
    msgs = problems(p)
    assert any(f":{line_of(p, 'actuation_ms: 4000')}: line.diverters.2.actuation_ms: Input should be less than or equal to 1000" in m
               for m in msgs), msgs


def test_a_chute_pointing_at_a_missing_signal_is_refused(tmp_path):
    p = edited(tmp_path, "confirm_signal: C05_confirm", "confirm_signal: C05_confrim")
    msgs = problems(p)
    assert any("line.chutes.4.confirm_signal: signal 'C05_confrim' is not in io" in m for m in msgs), msgs
    assert any(f":{line_of(p, 'C05_confrim')}:" in m for m in msgs), msgs


def test_two_signals_on_one_coil_are_refused(tmp_path):
    p = edited(tmp_path, "D2_left: {table: coil, address: 2}", "D2_left: {table: coil, address: 1}")
    assert any("overlaps" in m and "coil 1" in m for m in problems(p))


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = edited(tmp_path, "  min_gap_mm: 40", "  min_gap_mm: [40")
    msgs = problems(p)
    assert len(msgs) == 1 and "line.yaml:" in msgs[0]


def test_duplicate_key_is_refused(tmp_path):
    p = edited(tmp_path, "  min_gap_mm: 40", "  min_gap_mm: 40\n  min_gap_mm: 80")
    assert any("duplicate key 'min_gap_mm'" in m for m in problems(p))


def test_a_diverter_inside_the_scan_zone_is_refused(tmp_path):
    p = edited(tmp_path, "{name: D1, position_mm: 3200", "{name: D1, position_mm: 1000")
    assert any("line.diverters.0: D1 at 1000.0 mm is not past the scan zone" in m for m in problems(p))


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "sorter", "check-config", str(ROOT / "config/wenling-line1.yaml")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "泽国镇" in ok.stdout and "D9@9600" in ok.stdout
    bad = edited(tmp_path, "  belt_speed_mps: 2.0", "  belt_speed_mps: 9.0")
    r = subprocess.run([sys.executable, "-m", "sorter", "check-config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert f"line.yaml:{line_of(bad, 'belt_speed_mps')}: line.belt_speed_mps" in r.stderr
