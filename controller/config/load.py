"""Load a line's YAML file into a validated `Config`, with errors that point at the file line.

A technician editing a config on the line PC gets `line.yaml:42: line.diverters.3.position_mm:
Input should be less than or equal to 100000`, not a pydantic traceback.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sorter.controller.config.line import Config, verify_line
from sorter.controller.config.raw_refs import unknown_signals
from sorter.controller.config.yaml12 import YamlProblem, load12_noting


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
    """Parse a YAML file as YAML 1.2 (controller/config/yaml12.py); a syntax error, a duplicate
    key, or a number YAML 1.1 would read otherwise becomes a ConfigError naming the line (and
    the key path)."""
    data, root, ambiguous = read_yaml_noting(path)
    if ambiguous:
        raise ConfigError(path, ambiguous)
    return data, root


def read_yaml_noting(path: Path) -> tuple[Any, yaml.Node | None, list[str]]:
    """read_yaml, with the numbers YAML 1.1 would read otherwise returned as problems beside the
    data (read as YAML 1.2 reads them), so that they are reported with the file's other mistakes."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"{path}: cannot read: {exc}"]) from exc
    try:
        data, root, ambiguous = load12_noting(text)
    except YamlProblem as exc:
        raise ConfigError(path, [_where(path, line, keys) + problem for line, keys, problem in exc.problems]) from None
    return data, root, [_where(path, line, keys) + problem for line, keys, problem in ambiguous]


def _where(path: Path, line: int | None, keys: tuple[Any, ...]) -> str:
    """`file:line: key.path: ` (the parts that are known)."""
    out = f"{path}:{line}: " if line is not None else f"{path}: "
    return out + (".".join(str(k) for k in keys) + ": " if keys else "")


def load_config(path: str | Path) -> Config:
    """Read, validate and resolve a line config. Relative paths of config files (routes, towns,
    carriers) become relative to the file, those of data (records, manifest, ...) to its data_dir."""
    path = Path(path).resolve()
    data, root, ambiguous = read_yaml_noting(path)
    if not isinstance(data, dict):
        raise ConfigError(path, ambiguous or [f"{path}:1: the file must be a mapping with line:, io:, routing: ..."])
    # a number YAML 1.1 reads otherwise is reported with every other mistake, in one pass; the
    # model's own complaint about the same key (1_000 is text to YAML 1.2) would only repeat it
    said = {p.split(": ", 2)[1] for p in ambiguous if p.count(": ") >= 2}
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = list(ambiguous)
        for err in exc.errors():
            loc = _path(err["loc"])
            if ".".join(str(p) for p in loc) in said:
                continue
            dotted = ".".join(str(p) for p in loc) or "(top)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; every key is in config/README.md, or run `sorter config-docs`)"
            problems.append(f"{path}:{_line_of(root, loc)}: {dotted}: {msg}")
        # the names it refers to, in the same pass (verify_line needs a valid config)
        for loc, msg in unknown_signals(data):
            dotted = ".".join(str(p) for p in loc)
            problem = f"{path}:{_line_of(root, loc)}: {dotted}: {msg}"
            if problem not in problems:
                problems.append(problem)
        raise ConfigError(path, problems) from None
    if ambiguous:
        # the line's checks across keys (overlapping addresses ...) would judge numbers the file
        # does not say clearly: only the names it refers to are checked with them
        raise ConfigError(path, ambiguous + [f"{path}:{_line_of(root, loc)}: {'.'.join(str(p) for p in loc)}: {msg}"
                                             for loc, msg in unknown_signals(data)])
    problems = verify_line(cfg)
    if problems:
        raise ConfigError(
            path,
            [f"{path}:{_line_of(root, tuple(int(p) if p.isdigit() else p for p in dotted.split('.')))}: {dotted}: {msg}"
             for dotted, msg in problems],
        )
    base = path.parent
    data = data_dir_of(cfg, base)
    routing = cfg.routing.resolve(base, data)
    records = cfg.records.model_copy(update={"database": data / cfg.records.database})
    cameras = [c.resolved(base, data) for c in cfg.cameras]
    auth = cfg.auth.resolved(base, records.database)
    return cfg.model_copy(update={"data_dir": data, "routing": routing, "records": records, "cameras": cameras,
                                  "auth": auth})


def data_dir_of(cfg: Config, base: Path) -> Path:
    """Where the line's data goes: `data_dir` (relative to the file's folder `base`), else systemd's
    $STATE_DIRECTORY (StateDirectory=sorter: /var/lib/sorter; the first, when it names several),
    else var/ beside the file. Never the config folder itself: /etc/sorter holds no data."""
    if cfg.data_dir is not None:
        return base / cfg.data_dir
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else base / "var"
