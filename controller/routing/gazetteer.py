"""Towns, streets and villages of the county, with aliases: a manifest's town name or address ->
the town (乡镇/街道) a chute serves.

`canonical(name)` maps a town name or alias to the town (泽国 -> 泽国镇). `resolve(address)` finds
every known name in an address and takes the most specific: a village names its town; a longer
name beats a shorter one inside it (城南镇 over 城南); names of two different towns with nothing
to choose between them, or a village that exists in two towns, are ambiguous. Ambiguous or
unknown -> (None, reason): the parcel is `no_route` and the record says why; so is an address whose
town and village disagree (a typo, or a person's name that contains a town's name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sorter.controller.routing.files import (FileProblems, item_nodes, line_of, mapping_nodes, parse_yaml, read_bytes)

TOP_KEYS = ("county", "towns")
TOWN_KEYS = ("name", "aliases", "villages", "note")
CACHE_MAX = 20_000


@dataclass
class Gazetteer:
    path: str = ""
    county: str = ""
    towns: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)  # name -> (aliases, villages)
    raw: bytes = b""
    from_rules: bool = False   # built from the route table's town names (no towns file)

    def __post_init__(self) -> None:
        self._canon: dict[str, str] = {}
        self._village: dict[str, list[str]] = {}
        for town, (aliases, villages) in self.towns.items():
            self._canon[town] = town
            for a in aliases:
                self._canon[a] = town
            for v in villages:
                self._village.setdefault(v, []).append(town)
                if v.endswith("社区"):   # its committee's official name, as some addresses still write it
                    self._village.setdefault(v[:-2] + "居委会", []).append(town)
        names = sorted(set(self._canon) | set(self._village), key=len, reverse=True)
        self._rx = re.compile("|".join(re.escape(n) for n in names)) if names else None
        self._cache: dict[str, tuple[str | None, str]] = {}

    @classmethod
    def of_towns(cls, names) -> "Gazetteer":
        """A gazetteer of bare town names (what the route table names), without a towns file."""
        return cls(towns={n: ((), ()) for n in names}, from_rules=True)

    def canonical(self, name: str | None) -> str | None:
        """The town for a town name or alias; None if unknown."""
        if not name:
            return None
        return self._canon.get(name) or self._canon.get(name.strip())

    def villages_of(self, town: str) -> tuple[str, ...]:
        return self.towns.get(town, ((), ()))[1]

    def resolve(self, address: str) -> tuple[str | None, str]:
        """(town, how) for an address, or (None, why not)."""
        hit = self._cache.get(address)
        if hit is not None:
            return hit
        out = self._resolve(address)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[address] = out
        return out

    def _resolve(self, address: str) -> tuple[str | None, str]:
        if self._rx is None:
            return None, "no towns known (no gazetteer)"
        text = "".join(address.split())
        towns_named: dict[str, str] = {}     # town -> the name that named it
        village_towns: dict[str, list[str]] = {}
        for m in self._rx.finditer(text):    # leftmost-longest: 城南镇 is found, not 城南 inside it
            name = m.group(0)
            if name in self._village:
                village_towns[name] = self._village[name]
            if name in self._canon:
                t = self._canon[name]
                if towns_named.get(t) != t:   # keep the full name when both are there
                    towns_named[t] = name
        if village_towns:
            cands: set[str] | None = None
            for v, ts in village_towns.items():
                cands = set(ts) if cands is None else cands & set(ts)
            cands = cands or set()
            if towns_named and cands:
                narrowed = cands & set(towns_named)
                if not narrowed:
                    # a typo, a person's name or an old address: which of the two is right is a guess
                    return None, (f"address names {', '.join(towns_named.values())} but village "
                                  f"{', '.join(village_towns)} is in {' and '.join(sorted(cands))}")
                cands = narrowed
            if len(cands) == 1:
                town = next(iter(cands))
                v = next(v for v, ts in village_towns.items() if town in ts)
                return town, f"address names village {v} of {town}"
            if not cands:
                return None, (f"ambiguous address: villages {', '.join(village_towns)} belong to different towns")
            return None, (f"ambiguous address: village {', '.join(village_towns)} is in "
                          f"{' and '.join(sorted(cands))}")
        if len(towns_named) > 1:
            # a town's full name beats another town's short alias (泽国镇大溪路: 泽国镇, not 大溪)
            full = {t: n for t, n in towns_named.items() if n == t}
            if len(full) == 1:
                (town, name), = full.items()
                others = ", ".join(n for t, n in towns_named.items() if t != town)
                return town, f"address names {town} (and {others}, taken as a street name)"
        if len(towns_named) == 1:
            (town, name), = towns_named.items()
            return town, f"address names {name}" + ("" if name == town else f" ({town})")
        if towns_named:
            return None, f"ambiguous address: it names {' and '.join(towns_named)}"
        return None, "no known town or village in the address"


def load_gazetteer(path: str | Path) -> Gazetteer:
    """Read towns.yaml; FileProblems with `file:line: problem` for every mistake."""
    path = Path(path)
    raw = read_bytes(path)
    data, root = parse_yaml(path, raw)
    problems: list[str] = []

    def bad(node, msg: str) -> None:
        problems.append(f"{path}:{line_of(node)}: {msg}")

    if not isinstance(data, dict):
        raise FileProblems([f"{path}:{line_of(root)}: the towns file must be a mapping with towns:"])
    top = mapping_nodes(root)
    for key, (knode, _) in top.items():
        if key not in TOP_KEYS:
            bad(knode, f"unknown key {key!r} (expected {', '.join(TOP_KEYS)})")
    towns_raw = data.get("towns")
    tnode = top.get("towns", (root, root))[1]
    if not isinstance(towns_raw, list) or not towns_raw:
        bad(tnode, "towns must be a list of {name: ..., aliases: [...], villages: [...]}")
        towns_raw = []
    towns: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    owner: dict[str, tuple[str, int]] = {}   # town name or alias -> (town, line)
    for item, node in zip(towns_raw, item_nodes(tnode, len(towns_raw))):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            bad(node, "a town needs name: (e.g. {name: 泽国镇, aliases: [泽国], villages: [横径村]})")
            continue
        for key in item:
            if key not in TOWN_KEYS:
                bad(node, f"unknown key {key!r} (expected {', '.join(TOWN_KEYS)})")
        name = item["name"].strip()
        lists = []
        for key in ("aliases", "villages"):
            v = item.get(key) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                bad(node, f"{name}: {key} must be a list of names")
                v = []
            lists.append(tuple(dict.fromkeys(x.strip() for x in v)))
        aliases, villages = lists
        if name in towns:
            bad(node, f"town {name} listed twice (first on line {owner[name][1]})")
            continue
        for n in (name, *aliases):
            if n in owner and owner[n][0] != name:
                bad(node, f"{n!r} already names {owner[n][0]} (line {owner[n][1]}): an alias must name one town")
            owner.setdefault(n, (name, line_of(node)))
        for v in villages:
            if v in owner:
                bad(node, f"village {v} of {name} has the name of the town {owner[v][0]}")
        towns[name] = (aliases, villages)
    if problems:
        raise FileProblems(problems, "invalid towns file")
    return Gazetteer(str(path), str(data.get("county") or ""), towns, raw)
