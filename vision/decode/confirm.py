"""The confirmation rule: a 1-D read is confirmed when two different attempts decoded the same
text, and two confirmed reads of one symbology that disagree about one place are both dropped. A
1-D read that only one attempt made is reported as *weak* (``Code.weak``), unless a read of the same
symbology says something else about the same place: the line decides whether weak reads may sort.

At 1.5 px/module a blurred scan line can pass a check digit with the wrong digits (a parcel sent to
the wrong town); two different decodes agreeing on a wrong text are far rarer. :class:`_Collector`
holds one frame's codes, votes and pass errors; 2-D reads (Reed-Solomon protected) go straight in.

EAN-13/UPC-A have one weak check digit. :data:`EAN_RULE` says what confirms them: "two-attempts"
(any two different attempts, as for the other 1-D codes) or "two-engines" (ZBar and zxing-cpp must
both read it; the old rule). ``python bench/realphotos.py rules`` measures both on real, made and
rendered images; see there for why the default is what it is.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sorter.vision.decode.crops import _extent, _map_points, _polygon
from sorter.vision.decode.engines import _Raw, _text_of
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import DEFAULT_RULES, Code, ReadRules, gtin13, validate

EAN_RULES = ("two-attempts", "two-engines")
EAN_RULE = "two-engines"


class _Collector:
    def __init__(self, frame_hw: tuple[int, int], rules: ReadRules = DEFAULT_RULES):
        self.frame_hw = frame_hw
        self.rules = rules
        self.weak: dict[tuple[str, str], Code] = {}  # 1-D reads only one attempt made
        self.refused: list[Code] = []  # ITF reads the line's length/check rules refused
        self.scale = 1.0  # pixels of the pyramid level being read -> frame pixels
        self.codes: dict[tuple[str, str], Code] = {}
        self.errors: list[str] = []
        self.votes: dict[tuple[str, str], list] = {}  # 1-D reads -> [(raw, M to frame px, attempt)]
        self.banned: set[tuple[str, str]] = set()
        self.regions = 0
        self.regions_seen = 0  # candidate regions located, all levels
        self.both_engines = False  # ZBar and zxing-cpp both run
        self.unconfirmed = 0  # 1-D reads that no second attempt confirmed (dropped)
        self.conflicts = 0  # confirmed reads that disagreed about one place (both dropped)

    def code_of(self, raw: _Raw, M: np.ndarray | None = None, unscaled: bool = False) -> Code:
        """The read as it would be reported (polygon in frame px), without adding it (``unscaled``:
        ``M`` maps to frame px already)."""
        p = _map_points(raw.points, M)
        poly = _polygon(p if unscaled else p * self.scale, raw.symbology, self.frame_hw)
        return Code(raw.symbology, _text_of(raw) or "", poly)

    def confirmed(self, key: tuple[str, str]) -> bool:
        """Two different attempts decoded it.  EAN-13/UPC-A (one check digit, which two swapped
        digits of equal weight pass) need the two engines to agree when both run: two ZBar passes
        over the same blurred bars were measured agreeing on a wrong product code."""
        v = self.votes.get(key, [])
        if len(v) < 2:
            return False
        if key[0] in ("ean13", "upca") and self.both_engines and EAN_RULE == "two-engines":
            return len({"zxing" in a[2][1] for a in v}) == 2
        return True

    def accept(self, key: tuple[str, str]) -> int:
        """Report a 1-D read once two different attempts decoded it, unless a confirmed read of the
        same symbology says something else about the same place (then neither is reported)."""
        v = self.votes.get(key, [])
        if not self.confirmed(key) or key in self.banned:
            return 0
        if key in self.codes:
            return 1
        # reported with the polygon of the vote that spans the most: ZBar gives the ends of its scan
        # lines, often only one end on a thin symbol; zxing gives the symbol's corners
        code = max((self.code_of(x[0], x[1], unscaled=True) for x in v), key=_extent)
        if key[0] == "upce" and all(_extent(code) < 0.6 * x[3].length for x in v):
            # a UPC-E (51 modules) that covers little of its bar region is the half of an EAN-13
            # (95 modules) that zxing-cpp took for one: measured on rendered labels, confirmed twice
            self.banned.add(key)
            self.conflicts += 1
            return 0
        code = Code(key[0], key[1], code.polygon)
        for other, ov in self.votes.items():
            if other[0] == key[0] and other != key and self.confirmed(other) and other not in self.banned \
                    and any(_same_place(a, b) for a in v for b in ov):
                self.conflicts += 1
                self.banned.update((key, other))
                self.codes.pop(other, None)
                return 0
        self.codes[key] = code
        return 1

    def finish(self) -> None:
        self.unconfirmed += sum(1 for k in self.votes if not self.confirmed(k))

    def add_weak(self, code: Code) -> None:
        if validate(code.symbology, code.text, self.rules) and (code.symbology, code.text) not in self.codes:
            self.weak.setdefault((code.symbology, code.text), Code(code.symbology, code.text, code.polygon, weak=True))

    def replace_overlapping(self, code: Code) -> None:
        """``code`` is the better reading of its symbol: other texts of its symbology over it go."""
        for key, other in list(self.codes.items()):
            if key[0] == code.symbology and key[1] != code.text and _overlap(code, other):
                del self.codes[key]

    def results(self) -> list[Code]:
        """The confirmed codes, then the weak reads that no other read of their place contradicts."""
        for key, v in self.votes.items():
            if not self.confirmed(key) and key not in self.banned:
                best = max((self.code_of(x[0], x[1], unscaled=True) for x in v), key=_extent)
                self.add_weak(Code(key[0], key[1], best.polygon))
        strong_gtins = {(_family(c), _same_text(c)) for c in self.codes.values()}
        weak = [c for k, c in self.weak.items() if k not in self.codes and k not in self.banned
                and (_family(c), _same_text(c)) not in strong_gtins
                and not _part_of_another(c, list(self.codes.values()) + self.refused)]
        out = [c for c in self.codes.values() if not _part_of_another(c, list(self.codes.values()) + self.refused)]
        out = [c for c in out if not (c.symbology == "upce" and any(
            o.symbology in ("ean13", "upca") and _overlap(c, o) for o in out))]
        for c in weak:
            rivals = [o for o in out + weak if o is not c and _family(o) == _family(c) and _same_text(o) != _same_text(c)]
            if not any(_overlap(c, o) for o in rivals):
                out.append(c)
        return out

    def add(self, raws: list[_Raw], M: np.ndarray | None = None, dx: int = 0, dy: int = 0) -> int:
        n = 0
        for raw in raws:
            text = _text_of(raw)
            if text is None or not validate(raw.symbology, text, self.rules):
                continue
            key = (raw.symbology, text)
            n += 1
            if key in self.codes:
                continue
            poly = _polygon(_map_points(raw.points, M, dx, dy) * self.scale, raw.symbology, self.frame_hw)
            self.codes[key] = Code(raw.symbology, text, poly)
        return n

    def run(self, name: str, fn, *args, **kwargs) -> list[_Raw]:
        """Call one pass; an exception loses only that pass."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # pyzbar ValueError on odd QR codes, etc.
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            return []


def _same_text(code: Code) -> str:
    return gtin13(code.symbology, code.text)


def _family(code: Code) -> str:
    """EAN-13, UPC-A and UPC-E read one another's bars: one family when reads contradict."""
    return "ean" if code.symbology in ("ean13", "upca", "upce") else code.symbology


def _part_of_another(code: Code, codes) -> bool:
    """An ITF read whose digits are part of a longer ITF read over it: a scan that started or
    stopped inside the symbol (ITF has no start/stop pattern strong enough to prevent it; both
    engines were measured doing it on made ITF-14 codes). Also a UPC-A read as the EAN-13 "0" + its
    digits (zxing-cpp does) over the UPC-A read: one symbol, reported once."""
    if code.symbology == "itf":
        return any(o.symbology == "itf" and len(o.text) > len(code.text) and code.text in o.text and _overlap(code, o)
                   for o in codes)
    if code.symbology == "ean13" and code.text.startswith("0"):
        return any(o.symbology == "upca" and o.text == code.text[1:] and _overlap(code, o) for o in codes)
    return False


def _overlap(a: Code, b: Code) -> bool:
    """Two reported codes lie over one another: the centre of either within ~10 px of the other."""
    for x, y in ((a, b), (b, a)):
        if len(y.polygon) >= 3 and len(x.polygon) >= 1:
            cx, cy = np.asarray(x.polygon, np.float32).mean(axis=0)
            poly = np.asarray(y.polygon, np.float32).reshape(-1, 1, 2)
            if cv2.pointPolygonTest(poly, (float(cx), float(cy)), True) > -10:
                return True
    return False


def _same_place(a: tuple, b: tuple) -> bool:
    """Two votes (raw, M, attempt, region) from overlapping candidate regions: one symbol read two
    ways.  The regions, not the polygons, because a garbled read's polygon can be a point."""
    ra, rb = a[3], b[3]

    def inside(r: _Cand, x: float, y: float) -> bool:
        c, s = math.cos(r.theta), math.sin(r.theta)
        du, dv = (x - r.cx) * c + (y - r.cy) * s, -(x - r.cx) * s + (y - r.cy) * c
        return abs(du) <= r.length / 2 + 10 and abs(dv) <= r.height / 2 + 10

    return inside(ra, rb.cx, rb.cy) or inside(rb, ra.cx, ra.cy)
