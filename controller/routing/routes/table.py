"""The route table as the router uses it: what routing knows of a parcel (:class:`Facts`), the rules
and their patterns, and the first-match lookup.

Immutable once built. :meth:`RouteTable.build` indexes the rules by town, so that matching a parcel
tries only the rules that can take its town (its own and the town-less ones), in table order: the
decision runs in the timing process for every parcel.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Facts(NamedTuple):
    """What routing knows about a parcel."""
    carrier: str | None = None
    town: str | None = None
    sort_code: tuple[str, ...] | None = None
    service: str | None = None
    weight_kg: float | None = None
    intercept: bool = False


@dataclass(frozen=True)
class SortCodePattern:
    text: str                                   # as written, e.g. 576-W3?-*
    segments: tuple[str, ...]                   # glob per segment; missing ones are *
    _rx: tuple[re.Pattern[str] | None, ...] = field(repr=False, compare=False, default=())

    @classmethod
    def parse(cls, text: str) -> "SortCodePattern":
        t = str(text).strip().upper()
        segs = tuple(s for s in re.split(r"[-\s]+", t) if s)
        if not segs or len(segs) > 4 or not all(re.fullmatch(r"[A-Z0-9*?\[\]!]{1,12}", s) for s in segs):
            raise ValueError(f"bad sort code pattern {text!r}: segments of letters, digits and * ? "
                             f"separated by - or spaces, e.g. 571-W3*-*")
        rx = tuple(None if s == "*" else re.compile(fnmatch.translate(s)) for s in segs)
        return cls(t, segs, rx)

    def matches(self, code: tuple[str, ...] | None) -> bool:
        if code is None:
            return False
        for i, rx in enumerate(self._rx):
            if rx is None:
                continue
            if i >= len(code) or rx.match(code[i]) is None:
                return False
        return True

    def covers(self, other: "SortCodePattern") -> bool:
        """True if every code `other` matches, this one matches too (exact for literal segments,
        conservative for glob against glob)."""
        for i, s in enumerate(self.segments):
            if s == "*":
                continue
            o = other.segments[i] if i < len(other.segments) else "*"
            if o == s:
                continue
            if any(ch in o for ch in "*?[") or not fnmatch.fnmatchcase(o, s):
                return False
        return True


@dataclass(frozen=True)
class Rule:
    index: int            # 1-based position in the table
    line: int             # 1-based file line
    chute: str            # the (first) chute
    town: str | None = None          # kept for the single-town case (older callers read it)
    carrier: str | None = None
    towns: frozenset[str] | None = None
    carriers: frozenset[str] | None = None
    sort_code: tuple[SortCodePattern, ...] | None = None
    services: frozenset[str] | None = None
    weight_kg: tuple[float | None, float | None] | None = None
    intercept: bool = False
    chutes: tuple[str, ...] = ()      # the chute, or the group
    alternate: str | None = None
    kind: str = "rule"               # rule | default | intercept

    def describe(self) -> str:
        if self.kind != "rule":
            return self.kind
        parts = []
        if self.intercept:
            parts.append("intercept")
        if self.carriers is not None:
            parts.append("carrier=" + "|".join(sorted(self.carriers)))
        if self.towns is not None:
            parts.append("town=" + "|".join(sorted(self.towns)))
        if self.sort_code is not None:
            parts.append("sort_code=" + "|".join(p.text for p in self.sort_code))
        if self.services is not None:
            parts.append("service=" + "|".join(sorted(self.services)))
        if self.weight_kg is not None:
            lo, hi = self.weight_kg
            parts.append(f"weight_kg={'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'}")
        return f"rule {self.index} ({', '.join(parts)})"

    def matches(self, f: Facts) -> bool:
        if self.intercept != f.intercept:
            return False
        if self.carriers is not None and f.carrier not in self.carriers:
            return False
        if self.towns is not None and f.town not in self.towns:
            return False
        if self.sort_code is not None and not any(p.matches(f.sort_code) for p in self.sort_code):
            return False
        if self.services is not None and f.service not in self.services:
            return False
        if self.weight_kg is not None:
            w = f.weight_kg
            lo, hi = self.weight_kg
            if w is None or (lo is not None and w < lo) or (hi is not None and w >= hi):
                return False
        return True

    def covers(self, other: "Rule") -> bool:
        """True if this rule matches every parcel that `other` matches."""
        if self.intercept != other.intercept:
            return False
        for mine, theirs in ((self.carriers, other.carriers), (self.towns, other.towns),
                             (self.services, other.services)):
            if mine is not None and (theirs is None or not theirs <= mine):
                return False
        if self.sort_code is not None:
            if other.sort_code is None or not all(any(p.covers(q) for p in self.sort_code) for q in other.sort_code):
                return False
        if self.weight_kg is not None:
            if other.weight_kg is None:
                return False
            lo, hi = self.weight_kg
            olo, ohi = other.weight_kg
            if lo is not None and (olo is None or olo < lo):
                return False
            if hi is not None and (ohi is None or ohi > hi):
                return False
        return True

    def as_dict(self) -> dict:
        d: dict[str, Any] = {"index": self.index, "line": self.line, "kind": self.kind}
        if self.carriers is not None:
            d["carrier"] = sorted(self.carriers)
        if self.towns is not None:
            d["town"] = sorted(self.towns)
        if self.sort_code is not None:
            d["sort_code"] = [p.text for p in self.sort_code]
        if self.services is not None:
            d["service"] = sorted(self.services)
        if self.weight_kg is not None:
            d["weight_kg"] = list(self.weight_kg)
        if self.intercept:
            d["intercept"] = True
        d["chutes"] = list(self.chutes)
        if self.alternate:
            d["alternate"] = self.alternate
        return d


@dataclass(frozen=True)
class RouteTable:
    path: str
    version: str
    rules: tuple[Rule, ...]
    default: str | None
    intercept_chute: str | None = None
    default_rule: Rule | None = None
    intercept_rule: Rule | None = None
    warnings: tuple[str, ...] = ()
    # town -> the ordinary rules that can match it (its own and the town-less ones), in order
    _by_town: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False, compare=False)
    _any_town: tuple[Rule, ...] = field(default=(), repr=False, compare=False)
    _intercept_rules: tuple[Rule, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def build(cls, path: str, version: str, rules: list[Rule], default: str | None,
              intercept: str | None = None, warnings: tuple[str, ...] = (),
              default_line: int = 0, intercept_line: int = 0) -> "RouteTable":
        normal = [r for r in rules if not r.intercept]
        any_town = tuple(r for r in normal if r.towns is None)
        by_town: dict[str, tuple[Rule, ...]] = {}
        for town in dict.fromkeys(t for r in normal if r.towns is not None for t in sorted(r.towns)):
            by_town[town] = tuple(r for r in normal if r.towns is None or town in r.towns)
        drule = Rule(0, default_line, default, chutes=(default,), kind="default") if default else None
        irule = Rule(0, intercept_line, intercept, chutes=(intercept,), intercept=True, kind="intercept") \
            if intercept else None
        return cls(path, version, tuple(rules), default, intercept, drule, irule, tuple(warnings),
                   by_town, any_town, tuple(r for r in rules if r.intercept))

    def match(self, f: Facts) -> tuple[Rule | None, str]:
        """(the rule that routes the parcel, or None with the reason)."""
        if f.intercept:
            for r in self._intercept_rules:
                if r.matches(f):
                    return r, r.describe()
            if self.intercept_rule is not None:
                return self.intercept_rule, "intercept"
            return None, "intercepted (拦截件) and the route table has no intercept chute"
        for r in self._by_town.get(f.town, self._any_town) if f.town is not None else self._any_town:
            if r.matches(f):
                return r, r.describe()
        if self.default_rule is not None:
            return self.default_rule, "default"
        what = f"town {f.town}" if f.town else (f"sort code {'-'.join(f.sort_code)}" if f.sort_code else "parcel")
        return None, f"no rule for {what}" + (f" (carrier {f.carrier})" if f.carrier else "") + " and no default"

    def chute_for(self, carrier: str | None, town: str, **facts) -> tuple[str | None, str]:
        """(chute, which rule matched) for a parcel; (None, reason) if no rule and no default.
        A group answers with its first chute (see chutes_for)."""
        rule, why = self.match(Facts(carrier=carrier, town=town, **facts))
        return (rule.chutes[0], why) if rule is not None else (None, why)

    def chutes_for(self, carrier: str | None, town: str | None, **facts) -> tuple[tuple[str, ...], str]:
        """(every chute the parcel may rightly go to: the group, or the one chute; reason)."""
        rule, why = self.match(Facts(carrier=carrier, town=town, **facts))
        return (rule.chutes, why) if rule is not None else ((), why)

    @property
    def towns(self) -> set[str]:
        return set(self._by_town)

    def as_dict(self) -> dict:
        return {"path": self.path, "version": self.version, "default": self.default,
                "intercept": self.intercept_chute, "rules": [r.as_dict() for r in self.rules],
                "warnings": list(self.warnings)}
