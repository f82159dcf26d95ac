"""Load a line's YAML file into a validated `Config`, with errors that point at the file line.

A technician editing a config on the line PC gets `line.yaml:42: line.diverters.3.position_mm:
Input should be less than or equal to 100000`, not a pydantic traceback.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sorter.controller.config.line import Config, verify_line


EXAMPLE_CONFIG = "wenling-line1.yaml"


def example_config(name: str = EXAMPLE_CONFIG) -> Path:
    """The path of a shipped example config (package `sorter.examples`): the default `--config`, so
    that `sorter sim` and `sorter check-config` work from any directory."""
    return Path(str(resources.files("sorter.examples") / name))


class ConfigError(Exception):
    """A config file that cannot be used; `problems` holds one `file:line: path: message` each."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid configuration\n" + "\n".join(f"  {p}" for p in problems))


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a commissioning bug)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node that exists along a key path."""
    node, line = root, None
    if node is not None:
        line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(part):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds validator names ("function-after[...]") to loc; they are not YAML keys
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file; a syntax error becomes a ConfigError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc}"]) from exc
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}: {problem}"]) from exc
    return data, root


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a line config. Relative paths become relative to the file."""
    path = Path(path).resolve()
    data, root = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, [f"{path}:1: the file must be a mapping with line:, io:, routing: ..."])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _path(err["loc"])
            dotted = ".".join(str(p) for p in loc) or "(top)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; every key is in config/README.md, or run `sorter config-docs`)"
            problems.append(f"{path}:{_line_of(root, loc)}: {dotted}: {msg}")
        raise ConfigError(path, problems) from None
    problems = verify_line(cfg)
    if problems:
        raise ConfigError(
            path,
            [f"{path}:{_line_of(root, tuple(int(p) if p.isdigit() else p for p in dotted.split('.')))}: {dotted}: {msg}"
             for dotted, msg in problems],
        )
    base = path.parent
    routing = cfg.routing.resolve(base)
    records = cfg.records.model_copy(update={"database": base / cfg.records.database})
    cameras = [c.resolved(base) for c in cfg.cameras]
    return cfg.model_copy(update={"routing": routing, "records": records, "cameras": cameras})
