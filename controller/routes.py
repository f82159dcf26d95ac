"""The route table: destination town (and optionally carrier) -> chute, from a YAML file.

    rules:
      - {town: 泽国镇, chute: C06}
      - {town: 大溪镇, carrier: SF, chute: C20}   # carrier narrows a rule
      - {carrier: JD, chute: C21}                 # every JD parcel, whatever its town
    default: MANUAL                               # optional: everything else

The first rule that matches wins. The file is validated as a whole on load; every problem is
reported as `file:line: problem` so that a technician can fix it in one pass. The version is a
short content hash of the file's bytes, so every parcel record can say which table routed it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .carriers import CARRIER_NAMES
from .config_load import _Loader

RULE_KEYS = ("town", "carrier", "chute")
TOP_KEYS = ("rules", "default")


class RoutesError(Exception):
    """A route file that cannot be used; `problems` holds one `file:line: problem` each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid route table:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True)
class Rule:
    index: int            # 1-based position in rules:
    line: int             # 1-based file line
    chute: str
    town: str | None = None
    carrier: str | None = None

    def describe(self) -> str:
        parts = []
        if self.carrier is not None:
            parts.append(f"carrier={self.carrier}")
        if self.town is not None:
            parts.append(f"town={self.town}")
        return f"rule {self.index} ({', '.join(parts)})"

    def covers(self, other: "Rule") -> bool:
        """True if this rule matches every parcel that `other` matches."""
        return (self.town is None or self.town == other.town) and \
            (self.carrier is None or self.carrier == other.carrier)


@dataclass(frozen=True)
class RouteTable:
    path: str
    version: str
    rules: tuple[Rule, ...]
    default: str | None
    # town -> the rules that can match it (its own and the town-less ones), in order
    _by_town: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False, compare=False)
    _any_town: tuple[Rule, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def build(cls, path: str, version: str, rules: list[Rule], default: str | None) -> "RouteTable":
        any_town = tuple(r for r in rules if r.town is None)
        by_town: dict[str, tuple[Rule, ...]] = {}
        for town in dict.fromkeys(r.town for r in rules if r.town is not None):
            by_town[town] = tuple(r for r in rules if r.town is None or r.town == town)
        return cls(path, version, tuple(rules), default, by_town, any_town)

    def chute_for(self, carrier: str | None, town: str) -> tuple[str | None, str]:
        """(chute, which rule matched) for a parcel; (None, reason) if no rule and no default."""
        for r in self._by_town.get(town, self._any_town):
            if r.carrier is None or r.carrier == carrier:
                return r.chute, r.describe()
        if self.default is not None:
            return self.default, "default"
        return None, f"no rule for town {town}" + (f" (carrier {carrier})" if carrier else "") + \
            " and no default"

    @property
    def towns(self) -> set[str]:
        return set(self._by_town)


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def load_routes(path: str | Path, chute_ids: set[str],
                carriers: set[str] | None = None) -> RouteTable:
    """Read and validate a route file; raise RoutesError listing every problem."""
    path = Path(path)
    carriers = set(CARRIER_NAMES) if carriers is None else set(carriers)
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RoutesError([f"{where}: cannot read: {exc}"]) from exc
    version = hashlib.sha256(raw).hexdigest()[:12]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RoutesError([f"{where}:1: not UTF-8 text: {exc}"]) from exc
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc)
        raise RoutesError([f"{loc}: {problem}"]) from exc

    problems: list[str] = []

    def bad(node: yaml.Node | None, msg: str) -> None:
        problems.append(f"{where}:{_line(node)}: {msg}")

    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise RoutesError([f"{where}:{_line(root)}: the file must be a mapping with rules: and default:"])
    nodes: dict[Any, tuple[yaml.Node, yaml.Node]] = {k.value: (k, v) for k, v in root.value}
    for key, (knode, _) in nodes.items():
        if key not in TOP_KEYS:
            bad(knode, f"unknown key {key!r} (expected {', '.join(TOP_KEYS)})")

    default = data.get("default")
    if default is not None:
        dnode = nodes["default"][1]
        if not isinstance(default, str):
            bad(dnode, f"default must be a chute id, got {default!r}")
            default = None
        elif default not in chute_ids:
            bad(dnode, f"default: unknown chute {default!r}")

    rules: list[Rule] = []
    raw_rules = data.get("rules", [])
    rules_node = nodes.get("rules", (None, None))[1]
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        bad(rules_node, "rules must be a list of {town: ..., chute: ...}")
        raw_rules = []
    for i, item in enumerate(raw_rules):
        node = rules_node.value[i] if isinstance(rules_node, yaml.SequenceNode) else rules_node
        n = i + 1
        if not isinstance(item, dict):
            bad(node, f"rule {n}: must be a mapping like {{town: 泽国镇, chute: C06}}")
            continue
        ok = True
        for key in item:
            if key not in RULE_KEYS:
                bad(node, f"rule {n}: unknown key {key!r} (expected {', '.join(RULE_KEYS)})")
                ok = False
        chute, town, carrier = item.get("chute"), item.get("town"), item.get("carrier")
        if chute is None:
            bad(node, f"rule {n}: no chute")
            ok = False
        elif not isinstance(chute, str):
            bad(node, f"rule {n}: chute must be a chute id, got {chute!r}")
            ok = False
        elif chute not in chute_ids:
            bad(node, f"rule {n}: unknown chute {chute!r}")
            ok = False
        if town is not None and (not isinstance(town, str) or not town.strip()):
            bad(node, f"rule {n}: town must be a name, got {town!r}")
            ok = False
        if carrier is not None and (not isinstance(carrier, str) or carrier not in carriers):
            bad(node, f"rule {n}: unknown carrier {carrier!r} (known: {', '.join(sorted(carriers))})")
            ok = False
        if town is None and carrier is None:
            bad(node, f"rule {n}: needs town: or carrier: (use default: for everything else)")
            ok = False
        if not ok:
            continue
        rule = Rule(n, _line(node), chute, town.strip() if town else None, carrier)
        for earlier in rules:
            if earlier.covers(rule):
                if (earlier.town, earlier.carrier) == (rule.town, rule.carrier):
                    bad(node, f"rule {n}: duplicate of rule {earlier.index} (line {earlier.line})")
                else:
                    bad(node, f"rule {n}: can never match, {earlier.describe()} on line "
                              f"{earlier.line} takes all its parcels")
                break
        rules.append(rule)

    if problems:
        raise RoutesError(problems)
    return RouteTable.build(str(path), version, rules, default)
