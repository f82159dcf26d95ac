"""Waybill -> carrier recognition, and product codes (EAN/UPC) that are not waybills.

Each carrier has one or more formats (full-match regexes over the normalised text: stripped,
upper case). Numeric formats overlap between carriers (a 12-digit number may be an old SF
waybill or a ZTO one), so the table is checked in an explicit order: the first carrier whose
format matches wins. A carrier may hand over its own format, which replaces the default one.

China Post / EMS international-style numbers follow UPU S10 (2 letters, 8 digits, a mod-11
check digit, 2-letter country); a wrong check digit means the number is not EMS/China Post.
Service indicator E* is EMS, the other S10 indicators (C parcel, R registered, L, V, U, K...)
are China Post.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# carrier code -> human name (the page shows these)
CARRIER_NAMES: dict[str, str] = {
    "SF": "顺丰速运 SF Express",
    "ZTO": "中通快递 ZTO Express",
    "YTO": "圆通速递 YTO Express",
    "STO": "申通快递 STO Express",
    "YUNDA": "韵达速递 Yunda Express",
    "JT": "极兔速递 J&T Express",
    "EMS": "EMS 中国邮政速递",
    "CHINAPOST": "中国邮政 China Post",
    "JD": "京东物流 JD Logistics",
}

# Default formats, in precedence order: the first (carrier, regex) that fully matches the
# normalised text wins. Letter-prefixed formats cannot collide; among the digits-only ones the
# prefixes are mostly disjoint and the order settles the rest (a 12-digit number starting 5/6/7
# is ZTO, any other 12-digit number a legacy SF one).
DEFAULT_FORMATS: tuple[tuple[str, str], ...] = (
    ("SF", r"SF\d{12,13}"),                      # SF1234567890123
    ("YTO", r"YT\d{13}"),                        # YT7512345678901
    ("JT", r"JT\d{13}"),                         # JT0012345678901
    ("JD", r"JDV[A-F]\d{11}"),                   # JDVA12345678901
    ("JD", r"JDX\d{12}"),                        # JDX123456789012
    ("JD", r"JD\d{13}"),                         # JD0012345678901
    ("EMS", r"E[A-Z]\d{9}[A-Z]{2}"),             # EA123456785CN (S10, check digit verified)
    ("CHINAPOST", r"[A-DF-Z][A-Z]\d{9}[A-Z]{2}"),  # RR123456785CN, CP..., LK... (S10)
    ("EMS", r"1\d{12}"),                         # domestic EMS: 13 digits starting 1
    ("CHINAPOST", r"9[89]\d{11}"),               # domestic parcel: 13 digits starting 98/99
    ("STO", r"(?:77|88|66|55)\d{11}"),           # 13 digits starting 77/88/66/55
    ("YUNDA", r"(?:31|33|34|43|46)\d{11}"),      # 13 digits starting 31/33/34/43/46
    ("YUNDA", r"(?:31|33|34|43|46)\d{13}"),      # 15 digits, same prefixes
    ("ZTO", r"[57]\d{13,14}"),                   # 14/15 digits starting 7/5 (73.., 75.., 78..)
    ("ZTO", r"[5-7]\d{11}"),                     # older 12 digits starting 5/6/7
    ("SF", r"\d{12}"),                           # legacy SF: 12 digits, any other prefix
)
CARRIER_CODES: tuple[str, ...] = tuple(CARRIER_NAMES)
# Precedence among carriers (a number that fits several formats belongs to the first): the only
# overlap among the defaults is a 12-digit number starting 5/6/7, ZTO's, before legacy SF's.
DEFAULT_ORDER: tuple[str, ...] = ("YTO", "JT", "JD", "EMS", "CHINAPOST", "STO", "YUNDA", "ZTO", "SF")
S10_CARRIERS = ("EMS", "CHINAPOST")

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
S10_RE = re.compile(r"[A-Z]{2}(\d{8})(\d)[A-Z]{2}")

PRODUCT_SYMBOLOGIES = frozenset({"ean13", "ean8", "upca", "upce", "ean", "upc", "isbn13", "isbn10", "gtin"})

# a token inside free text (QR contents) that may be a waybill
_TOKEN_RE = re.compile(r"[A-Za-z0-9]{8,40}")


def s10_check_digit(digits8: str) -> int:
    """UPU S10 check digit over the 8 serial digits."""
    total = sum(int(d) * w for d, w in zip(digits8, S10_WEIGHTS))
    check = 11 - total % 11
    if check == 10:
        return 0
    if check == 11:
        return 5
    return check


def s10_valid(text: str) -> bool:
    m = S10_RE.fullmatch(text)
    return bool(m) and s10_check_digit(m.group(1)) == int(m.group(2))


def gtin_check_digit(body: str) -> int:
    """GS1 check digit for the digits before it (EAN-8/UPC-A/EAN-13/GTIN-14)."""
    total = 0
    for i, d in enumerate(reversed(body)):
        total += int(d) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def gtin_valid(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) in (8, 12, 13, 14) and \
        gtin_check_digit(text[:-1]) == int(text[-1])


def normalise(text: str) -> str:
    return text.strip().upper()


class CarrierTable:
    """Identify the carrier of a waybill number.

    The table is a list of formats grouped by carrier, checked carrier by carrier in `order`;
    the first format that fully matches wins.

    overrides: carrier code -> regex (or list of regexes) that replaces all of that carrier's
    default formats; a code that is not a default carrier adds a carrier. An override is taken
    as given: no S10 check digit is verified for it (give `formats=` with check "s10" for that).
    order: carrier codes, highest precedence first; carriers it does not name follow, new
    carriers first, then the defaults in DEFAULT_ORDER.
    formats: carrier code -> [(regex, check)] (check "s10" or None), the full spec as read
    from carriers.yaml; replaces the defaults of the carriers it names.
    names: carrier code -> display name.
    """

    def __init__(self, overrides: Mapping[str, str | Iterable[str]] | None = None,
                 order: Sequence[str] | None = None,
                 formats: Mapping[str, Sequence[tuple[str, str | None]]] | None = None,
                 names: Mapping[str, str] | None = None, use_defaults: bool = True):
        spec: dict[str, list[tuple[str, str | None]]] = {}
        if use_defaults:
            for code, pat in DEFAULT_FORMATS:
                check = "s10" if code in S10_CARRIERS and pat.endswith("[A-Z]{2}") else None
                spec.setdefault(code, []).append((pat, check))
        for code, pats in (formats or {}).items():
            spec[code] = [(p, c) for p, c in pats]
        for code, v in (overrides or {}).items():
            spec[code] = [(p, None) for p in ((v,) if isinstance(v, str) else tuple(v))]
        order = list(order or ())
        default_order = [c for c in DEFAULT_ORDER if c in spec]
        new = [c for c in spec if c not in DEFAULT_ORDER]
        final = [c for c in order if c in spec]
        final += [c for c in new + default_order if c not in final]
        checks = []
        for code in final:
            for pat, check in spec[code]:
                checks.append((code, re.compile(pat), check == "s10", pat))  # a bad regex fails here
        self._checks: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
            (code, rx, s10) for code, rx, s10, _ in checks)
        self._patterns = tuple((code, pat, s10) for code, _, s10, pat in checks)
        self._codes = tuple(final)
        self.names = {c: (names or {}).get(c) or CARRIER_NAMES.get(c, c) for c in final}

    @property
    def order(self) -> tuple[str, ...]:
        """Carrier codes in precedence order."""
        return self._codes

    @property
    def patterns(self) -> tuple[tuple[str, str, bool], ...]:
        """(carrier, regex, S10 check) in the order they are tried."""
        return self._patterns

    def overlaps(self, samples: int = 64, seed: int = 0) -> list[str]:
        """Formats of different carriers that some numbers fit both of (found by sampling
        numbers from each format): such a number goes to the carrier earlier in the order."""
        return list(_overlaps(tuple((c, rx.pattern, s10) for c, rx, s10 in self._checks), samples, seed))

    @property
    def codes(self) -> tuple[str, ...]:
        """Carrier codes this table can return."""
        return self._codes

    def identify(self, text: str) -> str | None:
        """Carrier code of a waybill number, or None if it fits no carrier."""
        t = normalise(text)
        if not 8 <= len(t) <= 40 or not t.isascii() or not t.isalnum():
            return None
        for code, rx, s10 in self._checks:
            if rx.fullmatch(t) is not None:
                if s10 and not s10_valid(t):
                    return None  # S10-shaped with a wrong check digit: a misread, not a waybill
                return code
        return None

    def is_product_code(self, symbology: str | None, text: str) -> bool:
        """True for EAN-13/EAN-8/UPC product codes, which are never waybills.

        A read from an EAN/UPC symbology is a product code whatever it says (a label printer
        never prints a waybill as EAN); a digits-only read of unknown symbology counts if it has
        a valid GS1 check digit, an EAN/UPC length and no carrier format fits it.
        """
        sym = (symbology or "").strip().lower().replace("-", "").replace("_", "")
        if sym in PRODUCT_SYMBOLOGIES:
            return True
        if sym:
            return False
        t = text.strip()
        return gtin_valid(t) and len(t) in (8, 12, 13) and self.identify(t) is None

    def find_waybills(self, text: str) -> list[tuple[str, str]]:
        """(waybill, carrier) for the whole text if it is a waybill, else for each token in it.

        Used for 2D codes (QR, DataMatrix, PDF417) whose content may be a URL or a record that
        contains the waybill number.
        """
        t = normalise(text)
        code = self.identify(t)
        if code is not None:
            return [(t, code)]
        found: dict[str, str] = {}
        for m in _TOKEN_RE.finditer(text):
            tok = m.group(0).upper()
            c = self.identify(tok)
            if c is not None:
                found.setdefault(tok, c)
        return list(found.items())


# ---- numbers that fit a format (to find overlaps between carriers' formats) -------------------
try:  # the stdlib's regex parser (re._parser since 3.11)
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
    from re import _constants as _sre_c  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    _sre_parse = _sre_c = None

_CATEGORY_CHARS = {"CATEGORY_DIGIT": "0123456789", "CATEGORY_WORD": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}


def sample_of(pattern: str, rng: random.Random) -> str | None:
    """A random string that the regex fully matches, for the simple patterns waybill formats
    use (literals, classes, \\d, repeats, alternation); None for anything else."""
    tree = _parsed(pattern)
    if tree is None:
        return None
    try:
        return _gen(tree, rng)
    except (_Unsupported, ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=256)
def _parsed(pattern: str):
    if _sre_parse is None:
        return None
    try:
        return _sre_parse.parse(pattern)
    except (re.error, ValueError):
        return None


@functools.lru_cache(maxsize=16)
def _overlaps(checks: tuple[tuple[str, str, bool], ...], samples: int, seed: int) -> tuple[str, ...]:
    """(cached: a reload of unchanged formats costs nothing)"""
    rng = random.Random(seed)
    compiled = [(c, re.compile(p), s10) for c, p, s10 in checks]
    out = []
    for j, (code_b, rx_b, _) in enumerate(compiled):
        found: dict[int, str] = {}
        for _ in range(samples):
            s = sample_of(rx_b.pattern, rng)
            if s is None:
                break
            for i in range(j):
                code_a, rx_a, s10_a = compiled[i]
                if code_a != code_b and i not in found and rx_a.fullmatch(s) and (not s10_a or s10_valid(s)):
                    found[i] = s
                    break
        for i, s in found.items():
            out.append(f"{code_b} format {rx_b.pattern!r} overlaps {compiled[i][0]} format "
                       f"{compiled[i][1].pattern!r} (e.g. {s}): such numbers are {compiled[i][0]}'s by the order")
    return tuple(out)


class _Unsupported(Exception):
    pass


def _gen(seq, rng: random.Random) -> str:
    out = []
    for op, av in seq:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(av))
        elif name == "IN":
            chars: list[str] = []
            for iop, iav in av:
                iname = str(iop)
                if iname == "LITERAL":
                    chars.append(chr(iav))
                elif iname == "RANGE":
                    chars.extend(chr(c) for c in range(iav[0], iav[1] + 1))
                elif iname == "CATEGORY":
                    chars.extend(_CATEGORY_CHARS.get(str(iav), ""))
                else:
                    raise _Unsupported(iname)
            if not chars:
                raise _Unsupported("empty class")
            out.append(rng.choice(chars))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi, sub = av
            hi = min(hi, lo + 4)
            for _ in range(rng.randint(lo, hi)):
                out.append(_gen(sub, rng))
        elif name == "SUBPATTERN":
            out.append(_gen(av[-1], rng))
        elif name == "BRANCH":
            out.append(_gen(rng.choice(av[1]), rng))
        elif name == "CATEGORY":
            out.append(rng.choice(_CATEGORY_CHARS.get(str(av), "0")))
        else:
            raise _Unsupported(name)
    return "".join(out)


# ---- carriers.yaml ----------------------------------------------------------------------------
CARRIER_FILE_KEYS = ("order", "carriers", "use_defaults")
CARRIER_KEYS = ("name", "formats")
FORMAT_KEYS = ("pattern", "check", "examples", "note")
CODE_RE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")


def load_carriers(path: str | Path) -> tuple[CarrierTable, list[str], bytes]:
    """Read carriers.yaml: (table, warnings, file bytes). Raises FileProblems with
    `file:line: problem` for every mistake (bad regex, unknown check, an example that does
    not come out as its own carrier, an unknown carrier in order ...)."""
    from sorter.controller.routing.files import FileProblems, line_of, mapping_nodes, parse_yaml, read_bytes
    path = Path(path)
    raw = read_bytes(path)
    data, root = parse_yaml(path, raw)
    problems: list[str] = []

    def bad(node, msg: str) -> None:
        problems.append(f"{path}:{line_of(node)}: {msg}")

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileProblems([f"{path}:{line_of(root)}: carriers file must be a mapping with order: and carriers:"])
    top = mapping_nodes(root)
    for key, (knode, _) in top.items():
        if key not in CARRIER_FILE_KEYS:
            bad(knode, f"unknown key {key!r} (expected {', '.join(CARRIER_FILE_KEYS)})")
    use_defaults = data.get("use_defaults", True)
    if not isinstance(use_defaults, bool):
        bad(top["use_defaults"][1], "use_defaults must be true or false")
        use_defaults = True
    formats: dict[str, list[tuple[str, str | None]]] = {}
    names: dict[str, str] = {}
    examples: list[tuple[str, str, object]] = []  # (carrier, example, node)
    carriers = data.get("carriers") or {}
    cnode = top.get("carriers", (None, None))[1]
    if not isinstance(carriers, dict):
        bad(cnode, "carriers must be a mapping: CODE: {name: ..., formats: [...]}")
        carriers = {}
    cnodes = mapping_nodes(cnode)
    for code, spec in carriers.items():
        knode, vnode = cnodes.get(code, (cnode, cnode))
        if not isinstance(code, str) or not CODE_RE.fullmatch(code):
            bad(knode, f"carrier code {code!r}: use 2-16 upper-case letters, digits or _ (e.g. ZTO, DBL)")
            continue
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            bad(vnode, f"{code}: must be a mapping {{name: ..., formats: [...]}}")
            continue
        snodes = mapping_nodes(vnode)
        for key in spec:
            if key not in CARRIER_KEYS:
                bad(snodes.get(key, (vnode,))[0], f"{code}: unknown key {key!r} (expected {', '.join(CARRIER_KEYS)})")
        if spec.get("name") is not None:
            names[code] = str(spec["name"])
        if "formats" not in spec:
            if code not in CARRIER_NAMES or not use_defaults:
                bad(knode, f"{code}: no formats (a new carrier needs formats:)")
            continue
        fmts = spec["formats"]
        fnode = snodes["formats"][1]
        if not isinstance(fmts, list) or not fmts:
            bad(fnode, f"{code}: formats must be a non-empty list of {{pattern: ...}}")
            continue
        out: list[tuple[str, str | None]] = []
        for item, inode in zip(fmts, (fnode.value if isinstance(fnode, yaml_seq()) else [fnode] * len(fmts))):
            if isinstance(item, str):
                item = {"pattern": item}
            if not isinstance(item, dict) or not isinstance(item.get("pattern"), str):
                bad(inode, f"{code}: a format needs pattern: (a regex over the whole number)")
                continue
            for key in item:
                if key not in FORMAT_KEYS:
                    bad(inode, f"{code}: unknown key {key!r} (expected {', '.join(FORMAT_KEYS)})")
            pat, check = item["pattern"], item.get("check")
            try:
                rx = re.compile(pat)
            except re.error as exc:
                bad(inode, f"{code}: bad pattern {pat!r}: {exc}")
                continue
            if rx.fullmatch(""):
                bad(inode, f"{code}: pattern {pat!r} matches an empty text")
                continue
            if check not in (None, "s10"):
                bad(inode, f"{code}: unknown check {check!r} (known: s10)")
                continue
            out.append((pat, check))
            exs = item.get("examples") or []
            if isinstance(exs, (str, int)):
                exs = [exs]
            for ex in exs:
                ex = normalise(str(ex))
                if not rx.fullmatch(ex):
                    bad(inode, f"{code}: example {ex} does not fit its pattern {pat!r}")
                elif check == "s10" and not s10_valid(ex):
                    bad(inode, f"{code}: example {ex} has a wrong S10 check digit "
                               f"(expected {s10_check_digit(ex[2:10])})")
                else:
                    examples.append((code, ex, inode))
        formats[code] = out
    order = data.get("order") or []
    onode = top.get("order", (None, None))[1]
    if not isinstance(order, list) or not all(isinstance(c, str) for c in order):
        bad(onode, "order must be a list of carrier codes, highest precedence first")
        order = []
    known = set(formats) | (set(CARRIER_NAMES) if use_defaults else set())
    seen: set[str] = set()
    for c in order:
        if c not in known:
            bad(onode, f"order: unknown carrier {c!r} (known: {', '.join(sorted(known))})")
        if c in seen:
            bad(onode, f"order: {c} listed twice")
        seen.add(c)
    if problems:
        raise FileProblems(problems, "invalid carriers file")
    table = CarrierTable(order=order, formats=formats, names=names, use_defaults=use_defaults)
    for code, ex, node in examples:
        got = table.identify(ex)
        if got != code:
            bad(node, f"{code}: example {ex} is identified as {got or 'no carrier'}: "
                      f"{'an earlier format in the order takes it' if got else 'check the pattern'}")
    if problems:
        raise FileProblems(problems, "invalid carriers file")
    return table, table.overlaps(), raw


def yaml_seq():
    import yaml
    return yaml.SequenceNode
