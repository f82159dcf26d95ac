"""The config reference cannot drift: config/README.md is what the models generate, every key of every
config model has a description, the JSON Schema is sound, and the loader's unknown-key message
points at the reference that exists."""

from __future__ import annotations

import argparse
import inspect
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from sorter.controller.cli import config_docs
from sorter.controller.config.line import Config
from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.config.reference import REGENERATE, json_schema, markdown, sections

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "config" / "README.md"
SECTIONS = {"line", "plc", "io", "cameras", "routing", "records", "api", "sim", "site", "data_dir", "retention",
            "auth", "stats"}


def cli(*argv: str) -> int:
    """The config-docs area's subcommands on a parser of their own (as main.py registers them)."""
    p = argparse.ArgumentParser(prog="sorter")
    config_docs.register(p.add_subparsers(dest="cmd", required=True), None)
    args = p.parse_args(list(argv))
    return args.fn(args)


def models_in(annotation) -> list[type[BaseModel]]:
    """Every model class an annotation holds, however nested (optional, list, dict, union)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in models_in(a)]


def all_models(model: type[BaseModel] = Config, path: str = "", seen=None):
    """(key path, model) for Config and every model under it, walked from the annotations."""
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    yield path, model
    for name, f in model.model_fields.items():
        for sub in models_in(f.annotation):
            yield from all_models(sub, f"{path}.{name}" if path else name, seen)


def test_config_readme_is_what_the_models_generate():
    assert README.exists(), f"config/README.md is missing: run `{REGENERATE}`"
    assert README.read_text(encoding="utf-8") == markdown(), \
        f"config/README.md is out of date with the config models: run `{REGENERATE}`"


def test_the_reference_covers_every_section_and_key():
    text = markdown()
    assert text.startswith("<!-- Generated") and REGENERATE in text.splitlines()[0]
    walked = {m for _, m in all_models()}
    assert {s.model for s in sections()} == walked
    for path, model in all_models():
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{path or '(top)'}.{name} is not in the reference"
    for title in ("`line.diverters[]`", "`line.chutes[]`", "`io.<name>`", "`cameras[]`", "`plc.mailbox`"):
        assert f" {title}\n" in text
    # enums are shown as their values
    assert "`coil` \\| `discrete_input` \\| `input_register` \\| `holding_register` \\| `relay`" in text
    assert "`left` \\| `right`" in text


def test_every_config_key_has_a_description():
    """Written for the technician who commissions a line: every key says what it is."""
    missing = [f"{path + '.' if path else ''}{name}  ({model.__module__}.{model.__name__})"
               for path, model in all_models()
               for name, f in model.model_fields.items() if not (f.description or "").strip()]
    assert not missing, "config keys without a description:\n  " + "\n  ".join(missing)


def test_json_schema_is_json_with_the_top_level_sections(tmp_path):
    out = tmp_path / "line.schema.json"
    assert cli("config-schema", "--output", str(out)) == 0
    schema = json.loads(out.read_text(encoding="utf-8"))
    assert schema == json.loads(json.dumps(json_schema()))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["properties"]) == SECTIONS
    assert {"line", "io", "routing", "records"} <= set(schema["required"])
    defs = schema["$defs"]
    # every model refuses unknown keys, and every reference resolves
    assert all(d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object")
    refs = re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema))
    assert refs and all(r in defs for r in refs)
    assert defs["Signal"]["properties"]["table"]["enum"] == ["coil", "discrete_input", "input_register",
                                                             "holding_register", "relay"]


def test_config_docs_check_and_output(tmp_path, capsys):
    out = tmp_path / "README.md"
    out.write_text("stale\n", encoding="utf-8")
    assert cli("config-docs", "--check", "--output", str(out)) == 1
    assert "out of date" in capsys.readouterr().err
    assert cli("config-docs", "--output", str(out)) == 0
    assert cli("config-docs", "--check", "--output", str(out)) == 0
    assert out.read_text(encoding="utf-8") == markdown()
    capsys.readouterr()
    assert cli("config-docs") == 0
    assert capsys.readouterr().out == markdown()


def test_the_sorter_command_has_config_schema_and_config_docs():
    """Registered in controller/cli/main.py (`config_docs.register(sub, with_config)`)."""
    r = subprocess.run([sys.executable, "-m", "sorter", "config-docs", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "sorter", "config-schema"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["properties"]) == SECTIONS


@pytest.mark.parametrize("where", ["top", "line"])
def test_unknown_key_message_points_at_the_reference(tmp_path, where):
    text = (ROOT / "config" / "wenling-line1.yaml").read_text(encoding="utf-8")
    if where == "top":
        text += "\ncolour: blue\n"
    else:
        text = text.replace("  belt_speed_mps: 2.0\n", "  belt_speed_mps: 2.0\n  belt_sped_mps: 2.0\n", 1)
    path = tmp_path / "line.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    [problem] = [p for p in exc.value.problems if "unknown key" in p]
    assert ("colour" if where == "top" else "line.belt_sped_mps") in problem
    named = re.findall(r"config/README[\w.]*", problem)
    assert named, f"the message does not name the reference: {problem}"
    for name in named:
        assert (ROOT / name).is_file(), f"the unknown-key message points at {name}, which does not exist: {problem}"
