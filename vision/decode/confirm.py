"""The confirmation rule: a 1-D read is reported only when two different attempts decoded the same
text, and two confirmed reads of one symbology that disagree about one place are both dropped.

At 1.5 px/module a blurred scan line can pass a check digit with the wrong digits (a parcel sent to
the wrong town); two different decodes agreeing on a wrong text are far rarer. :class:`_Collector`
holds one frame's codes, votes and pass errors; 2-D reads (Reed-Solomon protected) go straight in.
"""

from __future__ import annotations

import math

import numpy as np

from sorter.vision.decode.crops import _extent, _map_points, _polygon
from sorter.vision.decode.engines import _Raw, _text_of
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import Code, validate


class _Collector:
    def __init__(self, frame_hw: tuple[int, int]):
        self.frame_hw = frame_hw
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
        if key[0] in ("ean13", "upca") and self.both_engines:
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

    def add(self, raws: list[_Raw], M: np.ndarray | None = None, dx: int = 0, dy: int = 0) -> int:
        n = 0
        for raw in raws:
            text = _text_of(raw)
            if text is None or not validate(raw.symbology, text):
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


def _same_place(a: tuple, b: tuple) -> bool:
    """Two votes (raw, M, attempt, region) from overlapping candidate regions: one symbol read two
    ways.  The regions, not the polygons, because a garbled read's polygon can be a point."""
    ra, rb = a[3], b[3]

    def inside(r: _Cand, x: float, y: float) -> bool:
        c, s = math.cos(r.theta), math.sin(r.theta)
        du, dv = (x - r.cx) * c + (y - r.cy) * s, -(x - r.cx) * s + (y - r.cy) * c
        return abs(du) <= r.length / 2 + 10 and abs(dv) <= r.height / 2 + 10

    return inside(ra, rb.cx, rb.cy) or inside(rb, ra.cx, ra.cy)
