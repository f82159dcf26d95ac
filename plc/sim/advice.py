"""What the simulated carriers pre-advise for each simulated parcel, and where it truly belongs.

Both come from the simulation's own truth table (`sim.destinations` of the line config), written
by hand from what the centre intends, never from the route table: the simulated line is there to
check the routing code, so it must not ask that code what is right.

Most parcels are advised with their town; a share (sim.p_sort_code) only with a sort code (三段码)
the carriers print for the town, and a share (sim.p_address) only with an address in the town
(one of its villages, half of the time without the town's name). A town the table gives no sort
codes for is advised by town instead. Without a table, each diverter chute serves the town it is
named after, advised by town.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sorter.controller.config.line import Config
from sorter.plc.sim.waybills import CARRIER_CODES

ROADS = ("人民路", "兴业路", "文化路", "工人路", "育英路", "商业街")
PROVINCE_CITY = ("浙江省台州市温岭市", "浙江省温岭市", "温岭市", "")


@dataclass(frozen=True)
class Destination:
    """One row of the truth table, as the simulated line uses it."""
    town: str
    chutes: tuple[str, ...]
    alternates: frozenset[str]      # where its parcels rightly go when all its chutes are full
    sort_codes: tuple[str, ...]


class SimAdvice:
    """The carriers' advice rows and the truth, from the sim's truth table (see the module)."""

    def __init__(self, cfg: Config, seed: int):
        self.cfg, self.seed = cfg, seed
        sim = cfg.sim
        self.p_sort_code = float(sim.p_sort_code)
        self.p_address = float(sim.p_address)
        self._by: dict[tuple[str, str | None], Destination] = {}   # (town, carrier or None for any)
        self._villages: dict[str, list[str]] = {}
        self._stems: dict[str, list[str]] = {}
        line_alt = {c.id: c.alternate for c in cfg.line.chutes}
        entries = sim.destinations
        if not entries:
            entries = [_Entry(c.name, [c.id]) for c in cfg.line.chutes
                       if c.diverter and c.id != cfg.line.manual_chute]
        for i, d in enumerate(entries):
            alts = {d.alternate} if d.alternate else {line_alt.get(c) for c in d.chutes} - {None}
            dest = Destination(d.town, tuple(d.chutes), frozenset(alts), tuple(d.sort_codes))
            for c in d.carriers or [None]:
                if c is not None and c not in CARRIER_CODES:
                    raise ValueError(f"sim.destinations.{i}.carriers: the simulated line makes no {c} waybills "
                                     f"(it makes {', '.join(CARRIER_CODES)})")
                self._by.setdefault((d.town, c), dest)
            # the addresses of a town are the same whoever carries the parcel: gathered over its entries
            vs, stems = self._villages.setdefault(d.town, []), self._stems.setdefault(d.town, [])
            vs += [v for v in d.villages if v not in vs]
            stems += [a for a in d.addresses if a not in stems]
        # a village two towns have: the address must name the town too
        owners: dict[str, set[str]] = {}
        for town, vs in self._villages.items():
            for v in vs:
                owners.setdefault(v, set()).add(town)
        self._shared = {v for v, ts in owners.items() if len(ts) > 1}
        towns = list(sim.towns) or list(dict.fromkeys(t for t, _ in self._by))
        missing = [t for t in towns if (t, None) not in self._by]
        if missing:
            raise ValueError(f"sim.towns: no entry in sim.destinations for {', '.join(missing)} (every town the "
                             f"simulated parcels are for needs one without carriers:)")

    def destination(self, p) -> Destination:
        """The truth-table row of a parcel: its carrier's entry for its town, else the town's."""
        d = self._by.get((p.town, p.carrier)) or self._by.get((p.town, None))
        if d is None:
            raise KeyError(f"sim.destinations: no entry for town {p.town!r}")
        return d

    def expected_chute(self, p) -> str | None:
        """The (first) chute the parcel belongs in."""
        return self.destination(p).chutes[0]

    def expected_chutes(self, p) -> tuple[str, ...]:
        """Every chute the parcel may rightly reach (a group spreads a town over several)."""
        return self.destination(p).chutes

    def alternates(self, p) -> frozenset[str]:
        """Where the parcel may rightly go while every chute of its town is full."""
        return self.destination(p).alternates

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
            codes = self.destination(p).sort_codes
            if codes:
                return p.waybill, None, _printed(codes[int(rng.integers(len(codes)))], rng), None
        elif kind == "address":
            return p.waybill, None, None, self._address(p.town, rng)
        return p.waybill, p.town, None, None

    def _address(self, town: str, rng) -> str:
        prefix = PROVINCE_CITY[int(rng.integers(len(PROVINCE_CITY)))]
        n = int(rng.integers(1, 300))
        villages = self._villages.get(town, ())
        if villages and rng.random() < 0.5:
            v = villages[int(rng.integers(len(villages)))]
            named = v in self._shared or rng.random() < 0.5
            return f"{prefix}{town if named else ''}{v}{n}号"
        stems = self._stems.get(town)
        if stems:
            return f"{prefix}{stems[int(rng.integers(len(stems)))]}{n}号"
        return f"{prefix}{town}{ROADS[int(rng.integers(len(ROADS)))]}{n}号"


@dataclass(frozen=True)
class _Entry:
    """A truth-table row made from a chute's name (a line without sim.destinations)."""
    town: str
    chutes: list[str]
    alternate: str | None = None
    carriers: list[str] | None = None
    sort_codes: tuple[str, ...] = ()
    villages: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


def _printed(code: str, rng) -> str:
    """A sort code as printed on a label: the table's segments, a two-digit courier segment added
    up to three, written `576-W06 37` as the carriers do."""
    segs = code.split("-")
    while len(segs) < 3:
        segs.append(f"{int(rng.integers(1, 100)):02d}")
    return f"{segs[0]}-{segs[1]} {' '.join(segs[2:])}"
