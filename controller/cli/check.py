"""What `sorter check-config` checks: the line file and the files it names (route table, towns,
carriers), every problem in one pass, each as `file:line: [key.path: ]problem`.

A line file that does not validate still has its routing files looked for (from the raw YAML),
so that a missing routes file is reported with the line file's other mistakes, not after them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sorter.controller.config.load import ConfigError, load_config, read_yaml


def _raw_routing_files(path: Path) -> list[str]:
    """Routing files a line file that did not validate names and that are not there."""
    try:
        data, _ = read_yaml(path)
    except ConfigError:
        return []
    routing = data.get("routing") if isinstance(data, dict) else None
    if not isinstance(routing, dict):
        return []
    out = []
    for key in ("routes", "towns", "carriers"):
        value: Any = routing.get(key)
        if not isinstance(value, str) or not value:
            continue
        p = Path(value)
        where = p if p.is_absolute() else path.parent / p   # relative to the line file, as load_config has it
        if not where.exists():
            out.append(f"{path}: routing.{key}: {where}: no such file")
    return out


def check_line_files(config: str | Path):
    """(config or None, problems): the line file validated, then its routing files loaded as the
    controller loads them, and the route table's safety (no rules, no default)."""
    from sorter.controller.routing.router import load_routing_config
    from sorter.controller.routing.routes import RoutesError
    from sorter.controller.routing.routes.safety import unsafe
    path = Path(config).resolve()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return None, list(exc.problems) + _raw_routing_files(path)
    try:
        st = load_routing_config(cfg)
    except RoutesError as exc:
        return cfg, list(exc.problems)
    return cfg, unsafe(st.table)
