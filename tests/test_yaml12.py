"""YAML that cannot change a number: the line config and the routing files are read as YAML 1.2,
and the forms YAML 1.1 reads as other numbers (025 as octal 21, 1_000, 1:30) are refused with
`file:line: key.path: problem`."""

from __future__ import annotations

import re

import pytest

from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.routing.routes import RoutesError, load_routes
from tests.conftest import CONFIG, copy_config_dir

CHUTES = {f"C{i:02d}" for i in range(1, 21)} | {"MANUAL"}


def line_file(tmp_path, edit) -> "Path":  # noqa: F821
    folder = copy_config_dir(tmp_path / "cfg")
    text = (CONFIG / "wenling-line1.yaml").read_text(encoding="utf-8")
    new = edit(text)
    assert new != text, "the edit did not apply"
    path = folder / "line.yaml"
    path.write_text(new, encoding="utf-8")
    return path


def problems_of(path) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    return ei.value.problems


def lineno(path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


@pytest.mark.parametrize("written, number", [("025", 25), ("010", 10), ("07", 7)])
def test_a_leading_zero_modbus_address_is_refused_not_read_as_octal(tmp_path, written, number):
    # YAML 1.1 (PyYAML's default) reads 025 as 21 and 010 as 8, silently
    path = line_file(tmp_path, lambda t: t.replace("C05_confirm: {table: discrete_input, address: 5}",
                                                   f"C05_confirm: {{table: discrete_input, address: {written}}}"))
    probs = problems_of(path)
    n = lineno(path, "C05_confirm: {")
    assert len(probs) == 1, probs
    assert probs[0].startswith(f"{path}:{n}: io.C05_confirm.address: {written} has a leading zero")
    assert f"write {number} for the number" in probs[0]


@pytest.mark.parametrize("written, key", [("1_000", "underscore"), ("1:30", "base-60")])
def test_yaml11_only_numbers_are_refused_with_key_path(tmp_path, written, key):
    path = line_file(tmp_path, lambda t: re.sub(r"(\n  belt_speed_mps: )[0-9.]+", rf"\g<1>{written}", t, count=1))
    probs = problems_of(path)
    n = lineno(path, "belt_speed_mps:")
    assert probs and probs[0].startswith(f"{path}:{n}: line.belt_speed_mps: {written}"), probs
    assert "YAML 1.1" in probs[0] and "quotes" in probs[0]


def test_every_ambiguous_number_is_reported_in_one_pass(tmp_path):
    def edit(t):
        t = t.replace("address: 5}", "address: 05}", 1)
        return t.replace("address: 6}", "address: 06}", 1)
    probs = problems_of(line_file(tmp_path, edit))
    assert len(probs) == 2 and "io.C05_confirm.address" in probs[0] and "io.C06_confirm.address" in probs[1]


def test_yes_no_on_off_are_text_and_booleans_only_where_a_boolean_is_meant(tmp_path):
    # YAML 1.1 would make the name False (a refused config) and keep latch a bool; 1.2 gives
    # the text "no" for a name and pydantic takes "off" for a boolean setting
    path = line_file(tmp_path, lambda t: re.sub(r"\n  name: [^\n]+", "\n  name: no", t, count=1))
    text = path.read_text(encoding="utf-8")
    if "\nsim:\n" in text:
        path.write_text(text.replace("\nsim:\n", "\nsim:\n  latch: off\n", 1), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.line.name == "no"
    assert cfg.sim.latch is False


def test_numbers_yaml_12_allows_are_read_as_written(tmp_path):
    path = line_file(tmp_path, lambda t: t.replace("address: 5}", "address: 0x5}", 1).replace(
        "address: 6}", "address: 0o6}", 1))
    cfg = load_config(path)
    assert cfg.io["C05_confirm"].address == 5 and cfg.io["C06_confirm"].address == 6


def test_a_quoted_leading_zero_is_text(tmp_path):
    path = line_file(tmp_path, lambda t: re.sub(r"\n  name: [^\n]+", '\n  name: "007"', t, count=1))
    assert load_config(path).line.name == "007"


def test_duplicate_key_still_refused(tmp_path):
    path = line_file(tmp_path, lambda t: t.replace("C05_confirm: {table: discrete_input, address: 5}",
                                                   "C05_confirm: {table: discrete_input, address: 5, address: 6}"))
    probs = problems_of(path)
    n = lineno(path, "C05_confirm: {")
    assert "duplicate key 'address'" in probs[0] and probs[0].startswith(f"{path}:{n}:")


# ---- route files -----------------------------------------------------------------------------
def route_problems(tmp_path, text) -> list[str]:
    p = tmp_path / "routes.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RoutesError) as ei:
        load_routes(p, CHUTES)
    return ei.value.problems


def test_route_file_numbers_yaml11_would_change(tmp_path):
    probs = route_problems(tmp_path, "rules:\n  - {town: 泽国镇, chute: C06}\n"
                                     "  - {town: 大溪镇, weight_kg: [1_000, null], chute: C07}\ndefault: MANUAL\n")
    assert len(probs) == 1 and probs[0].startswith(f"{tmp_path / 'routes.yaml'}:3: rules.1.weight_kg.0: 1_000")


def test_route_file_sort_code_with_leading_zero_is_not_made_a_number(tmp_path):
    # 1.1: 0571 -> octal 377 -> the pattern "377"; refused instead, and quoted it is the text
    probs = route_problems(tmp_path, "rules:\n  - {sort_code: 0571, chute: C06}\ndefault: MANUAL\n")
    assert probs[0].startswith(f"{tmp_path / 'routes.yaml'}:2: rules.0.sort_code: 0571 has a leading zero")
    p = tmp_path / "routes.yaml"
    p.write_text('rules:\n  - {sort_code: "0571", chute: C06}\ndefault: MANUAL\n', encoding="utf-8")
    t = load_routes(p, CHUTES)
    assert t.rules[0].sort_code[0].text == "0571"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a:\n" + "".join(" " * i + "- \n" for i in range(3000))])
def test_deeply_nested_route_file_is_a_clean_error(tmp_path, text):
    probs = route_problems(tmp_path, text)
    assert probs and probs[0].startswith(str(tmp_path / "routes.yaml"))


def test_deeply_nested_line_config_is_a_clean_error(tmp_path):
    path = tmp_path / "line.yaml"
    path.write_text("line: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    probs = problems_of(path)
    assert probs and probs[0].startswith(f"{path}:") and "deep" in probs[0]
