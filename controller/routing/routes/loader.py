"""Loading a route table: YAML (``rules: [...]``) or CSV (one rule a line) into a
:class:`RouteTable`, every mistake reported as ``file:line: problem``.

Everything is validated before the table is used (unknown chutes, carriers or towns, duplicate
rules, rules an earlier rule makes unreachable, bad patterns), and all the problems are raised at
once in :class:`RoutesError`, so that a file is fixed in one pass. The table's version is the
content hash of its file and the other routing files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import yaml

from sorter.controller.routing.carriers import CARRIER_NAMES
from sorter.controller.routing.files import (FileProblems, decode_text, item_nodes, line_of, mapping_nodes, parse_yaml, read_bytes)
from sorter.controller.routing.routes.table import Rule, RouteTable, SortCodePattern


CONDITIONS = ("carrier", "town", "sort_code", "service", "weight_kg", "intercept")
ACTIONS = ("chute", "chutes", "alternate")
RULE_KEYS = CONDITIONS + ACTIONS + ("note",)
TOP_KEYS = ("rules", "default", "intercept")
CSV_COLUMNS = ("kind",) + CONDITIONS + ("chute", "alternate", "note")
RULE_KEYS_SHOWN = ("town", "carrier", "chute")   # the ones an error message suggests first


class RoutesError(FileProblems):
    """A route table that cannot be used; `problems` holds one `file:line: problem` each."""

    def __init__(self, problems: list[str]):
        super().__init__(problems, "invalid route table")


def _line(node: yaml.Node | None) -> int:
    return line_of(node)


def _names(value: Any) -> list[str] | None:
    """A name or a list of names (YAML list, or 'a|b' in a CSV cell) -> list; None if bad."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split("|")]
    elif isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        parts = [str(v).strip() for v in value]
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [str(value)]
    else:
        return None
    return parts if parts and all(parts) else None


def _weight(value: Any) -> tuple[float | None, float | None] | None:
    """[min, max] (YAML) or 'min-max' (CSV; either side may be empty) -> (min, max)."""
    if isinstance(value, str):
        lo_s, sep, hi_s = value.partition("-")
        if not sep:
            return None
        value = [lo_s.strip() or None, hi_s.strip() or None]
    if not isinstance(value, list) or len(value) != 2:
        return None
    out = []
    for v in value:
        if v is None:
            out.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if not 0 <= f <= 100_000:
            return None
        out.append(f)
    lo, hi = out
    if lo is None and hi is None or (lo is not None and hi is not None and lo >= hi):
        return None
    return lo, hi


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        t = value.strip().lower()
        if t in ("1", "true", "yes", "y", "是"):
            return True
        if t in ("", "0", "false", "no", "n", "否"):
            return False
    return None


def _yaml_items(path: Path, raw: bytes) -> tuple[list[tuple[int, Any]], dict[str, tuple[int, Any]], list[str]]:
    """(rule items with their lines, top-level values with their lines, problems) of a YAML table."""
    data, root = parse_yaml(path, raw)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutesError([f"{path}:{_line(root)}: the file must be a mapping with rules: and default:"])
    problems: list[str] = []
    nodes = mapping_nodes(root)
    top: dict[str, tuple[int, Any]] = {}
    for key, (knode, vnode) in nodes.items():
        if key not in TOP_KEYS:
            problems.append(f"{path}:{_line(knode)}: unknown key {key!r} (expected {', '.join(TOP_KEYS)})")
        else:
            top[key] = (_line(vnode), data[key])
    raw_rules = data.get("rules") or []
    rules_node = nodes.get("rules", (None, None))[1]
    if not isinstance(raw_rules, list):
        problems.append(f"{path}:{_line(rules_node)}: rules must be a list of {{town: ..., chute: ...}}")
        raw_rules = []
    items = [(_line(n), item) for item, n in zip(raw_rules, item_nodes(rules_node, len(raw_rules)))]
    return items, top, problems


def _csv_items(path: Path, raw: bytes) -> tuple[list[tuple[int, Any]], dict[str, tuple[int, Any]], list[str]]:
    """The same from a CSV table: a header of CSV_COLUMNS names, one rule a line; a line with
    kind=default or kind=intercept gives the default / intercept chute."""
    text, _ = decode_text(raw)
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    items: list[tuple[int, Any]] = []
    top: dict[str, tuple[int, Any]] = {}
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row) or row[0].strip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            for h in header:
                if h not in CSV_COLUMNS:
                    problems.append(f"{path}:{line}: unknown column {h!r} (expected {', '.join(CSV_COLUMNS)})")
            if "chute" not in header:
                problems.append(f"{path}:{line}: the header needs a chute column")
            continue
        rec = {h: c.strip() for h, c in zip(header, row) if h in CSV_COLUMNS and c.strip()}
        if len(row) > len(header):
            problems.append(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
            continue
        kind = rec.pop("kind", "rule").lower()
        rec.pop("note", None)
        if kind in ("default", "intercept"):
            extra = set(rec) - {"chute"}
            if extra:
                problems.append(f"{path}:{line}: a {kind} line gives only chute, not {', '.join(sorted(extra))}")
            if kind in top:
                problems.append(f"{path}:{line}: a second {kind} line (first on line {top[kind][0]})")
            top[kind] = (line, rec.get("chute"))
            continue
        if kind != "rule":
            problems.append(f"{path}:{line}: kind must be rule, default or intercept, got {kind!r}")
            continue
        if "chute" in rec and "|" in rec["chute"]:
            rec["chutes"] = rec.pop("chute")
        if "intercept" in rec:
            rec["intercept"] = _truthy(rec["intercept"]) if _truthy(rec["intercept"]) is not None else rec["intercept"]
            if rec["intercept"] is False:
                del rec["intercept"]
        items.append((line, rec))
    if header is None:
        problems.append(f"{path}:1: empty route table (no header line)")
    return items, top, problems


def load_routes(path: str | Path, chute_ids: set[str], carriers: set[str] | None = None,
                towns=None, extra_bytes: bytes = b"") -> RouteTable:
    """Read and validate a route table (YAML, or CSV by its .csv suffix); raise RoutesError
    listing every problem. towns: a Gazetteer whose names (and aliases) the rules' towns must
    be, or None to accept any town. extra_bytes: the other routing files' content, hashed into
    the version."""
    path = Path(path)
    carriers = set(CARRIER_NAMES) if carriers is None else set(carriers)
    where = str(path)
    try:
        raw = read_bytes(path)
    except FileProblems as exc:
        raise RoutesError(exc.problems) from None
    version = hashlib.sha256(raw + extra_bytes).hexdigest()[:12]
    try:
        if path.suffix.lower() == ".csv":
            items, top, problems = _csv_items(path, raw)
        else:
            items, top, problems = _yaml_items(path, raw)
    except FileProblems as exc:
        raise RoutesError(exc.problems) from None

    def bad(line: int, msg: str) -> None:
        problems.append(f"{where}:{line}: {msg}")

    def chute_ok(line: int, what: str, c: Any, role: str = "chute") -> bool:
        if not isinstance(c, str):
            bad(line, f"{what}: {role} must be a chute id, got {c!r}")
            return False
        if c not in chute_ids:
            bad(line, f"{what}: unknown {'' if role == 'chute' else role + ' '}chute {c!r}")
            return False
        return True

    default = intercept = None
    for key in ("default", "intercept"):
        if key in top and top[key][1] is not None:
            line, value = top[key]
            if chute_ok(line, key, value):
                if key == "default":
                    default = value
                else:
                    intercept = value

    rules: list[Rule] = []
    warnings: list[str] = []
    for n, (line, item) in enumerate(items, 1):
        if not isinstance(item, dict):
            bad(line, f"rule {n}: must be a mapping like {{town: 泽国镇, chute: C06}}")
            continue
        ok = True
        for key in item:
            if key not in RULE_KEYS:
                bad(line, f"rule {n}: unknown key {key!r} (expected {', '.join(RULE_KEYS_SHOWN)}, "
                          f"{', '.join(k for k in RULE_KEYS if k not in RULE_KEYS_SHOWN)})")
                ok = False
        spec: dict[str, Any] = {}
        # conditions
        if item.get("carrier") is not None:
            cs = _names(item["carrier"])
            if cs is None or any(c not in carriers for c in cs):
                bad(line, f"rule {n}: unknown carrier {item['carrier']!r} (known: {', '.join(sorted(carriers))})")
                ok = False
            else:
                spec["carriers"] = frozenset(cs)
        if item.get("town") is not None:
            ts = _names(item["town"])
            if ts is None:
                bad(line, f"rule {n}: town must be a name or a list of names, got {item['town']!r}")
                ok = False
            else:
                canon = []
                for t in ts:
                    c = towns.canonical(t) if towns is not None else t
                    if c is None:
                        bad(line, f"rule {n}: unknown town {t!r} (not in {towns.path or 'the gazetteer'})")
                        ok = False
                    else:
                        canon.append(c)
                if len(set(canon)) != len(canon):
                    bad(line, f"rule {n}: a town is listed twice")
                    ok = False
                spec["towns"] = frozenset(canon)
        if item.get("sort_code") is not None:
            pats = _names(item["sort_code"])
            try:
                if pats is None:
                    raise ValueError(f"bad sort code pattern {item['sort_code']!r}")
                spec["sort_code"] = tuple(SortCodePattern.parse(p) for p in pats)
            except ValueError as exc:
                bad(line, f"rule {n}: {exc}")
                ok = False
        if item.get("service") is not None:
            ss = _names(item["service"])
            if ss is None:
                bad(line, f"rule {n}: service must be a name or a list, got {item['service']!r}")
                ok = False
            else:
                spec["services"] = frozenset(ss)
        if item.get("weight_kg") is not None:
            w = _weight(item["weight_kg"])
            if w is None:
                bad(line, f"rule {n}: weight_kg must be [min, max] in kg (min <= weight < max; null for open), "
                          f"got {item['weight_kg']!r}")
                ok = False
            else:
                spec["weight_kg"] = w
        if "intercept" in item:
            if item["intercept"] is not True:
                bad(line, f"rule {n}: intercept: true is the only value (intercepted parcels never match "
                          f"ordinary rules)")
                ok = False
            else:
                spec["intercept"] = True
        # actions
        chutes: list[str] = []
        if item.get("chute") is not None and item.get("chutes") is not None:
            bad(line, f"rule {n}: give chute: or chutes: (a group), not both")
            ok = False
        elif item.get("chute") is not None:
            if chute_ok(line, f"rule {n}", item["chute"]):
                chutes = [item["chute"]]
            else:
                ok = False
        elif item.get("chutes") is not None:
            cs = _names(item["chutes"])
            if cs is None or len(cs) < 2:
                bad(line, f"rule {n}: chutes must list two or more chutes (a group), got {item['chutes']!r}")
                ok = False
            else:
                for c in cs:
                    ok = chute_ok(line, f"rule {n}", c, "group") and ok
                if len(set(cs)) != len(cs):
                    bad(line, f"rule {n}: a chute is listed twice in the group")
                    ok = False
                chutes = cs
        else:
            bad(line, f"rule {n}: no chute")
            ok = False
        alt = item.get("alternate")
        if alt is not None:
            if not chute_ok(line, f"rule {n}", alt, "alternate"):
                ok = False
            elif alt in chutes:
                bad(line, f"rule {n}: the alternate {alt} is one of the rule's own chutes")
                ok = False
        if not any(k in spec for k in ("carriers", "towns", "sort_code", "services", "weight_kg", "intercept")):
            if ok:
                bad(line, f"rule {n}: needs town: or carrier: (or sort_code, service, weight_kg, intercept; "
                          f"use default: for everything else)")
            ok = False
        if not ok:
            continue
        towns_set = spec.get("towns")
        carriers_set = spec.get("carriers")
        rule = Rule(n, line, chutes[0],
                    town=next(iter(towns_set)) if towns_set is not None and len(towns_set) == 1 else None,
                    carrier=next(iter(carriers_set)) if carriers_set is not None and len(carriers_set) == 1 else None,
                    towns=towns_set, carriers=carriers_set, sort_code=spec.get("sort_code"),
                    services=spec.get("services"), weight_kg=spec.get("weight_kg"),
                    intercept=spec.get("intercept", False), chutes=tuple(chutes), alternate=alt)
        for earlier in rules:
            if earlier.covers(rule):
                if rule.covers(earlier):
                    bad(line, f"rule {n}: duplicate of rule {earlier.index} (line {earlier.line})")
                else:
                    bad(line, f"rule {n}: can never match, {earlier.describe()} on line {earlier.line} "
                              f"takes all its parcels")
                break
        rules.append(rule)

    if any(r.intercept for r in rules) and intercept is None:
        warnings.append(f"{where}: intercept rules but no intercept: chute; other intercepted parcels go to reject")
    if problems:
        raise RoutesError(problems)
    return RouteTable.build(where, version, rules, default, intercept, tuple(warnings),
                            top.get("default", (0, None))[0], top.get("intercept", (0, None))[0])
