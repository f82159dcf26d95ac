"""Towns, streets and villages of the county, with aliases: a manifest's town name or address ->
the town (乡镇/街道) a chute serves.

`canonical(name)` maps a town name or alias to the town (泽国 -> 泽国镇). `resolve(address)` finds
every known name in an address and takes the most specific: a village names its town; a longer
name beats a shorter one inside it (城南镇 over 城南); names of two different towns with nothing
to choose between them, or a village that exists in two towns, are ambiguous. Ambiguous or
unknown -> (None, reason): the parcel is `no_route` and the record says why; so is an address whose
town and village disagree (a typo, or a person's name that contains a town's name), and one whose
only town is in the name written beside its phone number (王大溪 13912345678). A reason names the
gazetteer's words only, never the address's others: it is kept in records any reader may see.
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
        town, how = self._resolve_text(address)
        if town is None:
            return town, how
        rest = without_contact(address, lambda w: w in self._canon or w in self._village)
        if rest is None:
            return town, how
        alone, _ = self._resolve_text(rest)
        if alone == town:
            return town, how
        # only the words beside the phone number (a recipient 王大溪 or 张泽国) named the town: the
        # reason names the town, never the words (they are personal data, and records are open)
        if alone is None:
            return None, (f"no known town or village in the address; only the name beside its phone "
                          f"number names {town} (taken as the recipient's, not the destination)")
        return None, f"the address names {alone}, the name beside its phone number {town}"

    def _resolve_text(self, address: str) -> tuple[str | None, str]:
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


# A phone number (a mobile, or a landline with its area code) and what people write beside it: a
# recipient's name (2-4 characters), or a label (收件人, 电话 ...). An address is written first, so
# these words are contact details, not places; a word that looks like a place is kept.
_PHONE = re.compile(r"(?:\+?86-?)?1[3-9][0-9](?:-?[0-9]{4}){2}|0[0-9]{2,3}-?[0-9]{7,8}")
_SEPARATORS = re.compile(r"[\s,，;；:：()（）/、]+")
_NAME = re.compile(r"[\u3400-\u9fff·]{2,4}")
_LABELS = frozenset({"收件人", "收货人", "联系人", "电话", "手机", "联系电话", "tel", "TEL", "Tel"})
_PLACE_ENDS = ("镇", "乡", "街道", "村", "社区", "居委会", "路", "街", "巷", "弄", "号", "市", "区", "县", "省", "室",
               "幢", "栋", "楼", "单元", "大厦", "小区", "苑", "园", "公司", "厂", "店", "站")
_BESIDE = 3   # contact words looked for on each side of a phone number


def without_contact(address: str, is_place=lambda _w: False) -> str | None:
    """The address without the phone number(s) in it and the names or labels written beside each;
    None when it has no phone number (nothing to take away). is_place(word): a word the gazetteer
    knows whole (大溪), kept."""
    if not _PHONE.search(address):
        return None

    def contact(word: str) -> bool:
        return word in _LABELS or (_NAME.fullmatch(word) is not None and not word.endswith(_PLACE_ENDS)
                                   and not is_place(word))

    words = [w for w in _SEPARATORS.split(address) if w]
    drop = set()
    for i, w in enumerate(words):
        m = _PHONE.search(w)
        if m is None:
            continue
        # 温岭市泽国镇横径村12号13800000000, 13800000000泽国镇横径村: the address glued to it stays
        kept = [part for part in (w[:m.start()], w[m.end():]) if part and not contact(part)]
        if kept:
            words[i] = " ".join(kept)
        else:
            drop.add(i)
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(words) and abs(j - i) <= _BESIDE and contact(words[j]):
                drop.add(j)
                j += step
    return " ".join(w for i, w in enumerate(words) if i not in drop)


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
