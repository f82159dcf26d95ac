"""What the simulated carriers pre-advise for each simulated parcel, and where it truly belongs.

Most parcels are advised with their town; a share (sim.p_sort_code) only with a sort code (三段码)
that the route table's sort-code rules send to the town's chute, and a share (sim.p_address) only
with a full address that names the town (or one of its villages) for the gazetteer to resolve.

The truth is the parcel's town: the chute the route table gives its carrier and town. Advice that
could not lead there (no sort-code rule for that chute, an address the gazetteer would not
resolve to the town) is given as the town instead, so the truth never depends on the router
being right about the advice.
"""

from __future__ import annotations

import numpy as np

from sorter.controller.config.line import Config
from sorter.controller.routing.routes import Facts
from sorter.controller.routing.router import RoutingState, load_routing_config

ROADS = ("人民路", "兴业路", "文化路", "工人路", "育英路", "商业街")
PROVINCE_CITY = ("浙江省台州市温岭市", "浙江省温岭市", "温岭市", "")


def routing_state(cfg: Config) -> RoutingState:
    """The routing files of a line config, loaded as the controller loads them."""
    return load_routing_config(cfg)


class SimAdvice:
    def __init__(self, cfg: Config, seed: int):
        self.cfg, self.seed = cfg, seed
        self.state = routing_state(cfg)
        self.table = self.state.table
        self.p_sort_code = float(getattr(cfg.sim, "p_sort_code", 0.0))
        self.p_address = float(getattr(cfg.sim, "p_address", 0.0))
        self._codes: dict[tuple[str, str], list[str]] = {}

    def expected_chute(self, p) -> str | None:
        """The chute a correctly routed parcel reaches (None: it is not sorted at all)."""
        chute, _ = self.table.chute_for(p.carrier, p.town)
        return chute

    def expected_chutes(self, p) -> tuple[str, ...]:
        """Every chute the parcel may rightly reach (a group spreads a town over several)."""
        chutes, _ = self.table.chutes_for(p.carrier, p.town)
        return chutes

    def kind(self, p) -> str:
        r = float(np.random.default_rng([self.seed, 3, p.index]).random())
        if r < self.p_sort_code:
            return "sort_code"
        if r < self.p_sort_code + self.p_address:
            return "address"
        return "town"

    def row(self, p) -> tuple[str, str | None, str | None, str | None]:
        """(waybill, town, sort_code, address): the manifest row the carrier sends."""
        kind = self.kind(p)
        rng = np.random.default_rng([self.seed, 4, p.index])
        if kind == "sort_code":
            code = self._sort_code(p, rng)
            if code is not None:
                return p.waybill, None, code, None
        elif kind == "address":
            addr = self._address(p, rng)
            if addr is not None:
                return p.waybill, None, None, addr
        return p.waybill, p.town, None, None

    def _sort_code(self, p, rng) -> str | None:
        want = self.expected_chute(p)
        for rule in self.table.rules:
            if rule.sort_code is None or rule.chutes != (want,) or rule.towns is not None or rule.services \
                    or rule.weight_kg or rule.intercept:
                continue
            if rule.carriers is not None and p.carrier not in rule.carriers:
                continue
            pat = rule.sort_code[0]
            segs = [_instantiate(s, rng) for s in pat.segments]
            while len(segs) < 3:
                segs.append(f"{int(rng.integers(1, 100)):02d}")
            code = f"{segs[0]}-{segs[1]} {' '.join(segs[2:])}"
            m, _ = self.table.match(Facts(p.carrier, None, tuple(code.replace(" ", "-").split("-"))))
            if m is not None and m.chutes == (want,):
                return code
        return None

    def _address(self, p, rng) -> str | None:
        gaz = self.state.gazetteer
        villages = gaz.villages_of(p.town)
        prefix = PROVINCE_CITY[int(rng.integers(len(PROVINCE_CITY)))]
        road = ROADS[int(rng.integers(len(ROADS)))]
        n = int(rng.integers(1, 300))
        if villages and rng.random() < 0.5:
            v = villages[int(rng.integers(len(villages)))]
            addr = f"{prefix}{p.town if rng.random() < 0.5 else ''}{v}{n}号"
        else:
            addr = f"{prefix}{p.town}{road}{n}号"
        town, _ = gaz.resolve(addr)
        return addr if town == p.town else None


def _instantiate(seg: str, rng) -> str:
    """A concrete sort-code segment for a glob segment (* -> two digits, ? -> a digit)."""
    if seg == "*":
        return f"{int(rng.integers(1, 100)):02d}"
    out = []
    for ch in seg:
        if ch == "*":
            out.append(str(int(rng.integers(0, 10))))
        elif ch == "?":
            out.append(str(int(rng.integers(0, 10))))
        elif ch in "[]!":
            return seg.replace("[", "").replace("]", "").replace("!", "")[:1] or "0"
        else:
            out.append(ch)
    return "".join(out)
