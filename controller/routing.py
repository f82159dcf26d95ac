"""The routing decision for one parcel: its reads -> waybill -> carrier -> town -> chute.

`Router.decide` runs in the timing process for every parcel, so it is plain code and one
SQLite primary-key lookup: tens of microseconds. The route table is an immutable object that
`reload` replaces in one assignment; a decision takes the table once at its start, so it is
routed by exactly one version, which it reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .carriers import CarrierTable, normalise
from .manifest import WAYBILL_RE, Manifest
from .routes import RoutesError, RouteTable, load_routes

SORTED, NO_READ, MULTI_READ, NO_ROUTE, CHUTE_UNAVAILABLE = (
    "sorted", "no_read", "multi_read", "no_route", "chute_unavailable")
OUTCOMES = (SORTED, NO_READ, MULTI_READ, NO_ROUTE, CHUTE_UNAVAILABLE)

# 2D symbologies whose content may be a URL or record holding the waybill
TWO_D = frozenset({"qrcode", "qr", "datamatrix", "pdf417", "aztec"})


@dataclass(frozen=True)
class RouteDecision:
    outcome: str              # one of OUTCOMES
    chute: str | None         # the chute to send it to (None unless outcome == "sorted")
    waybill: str | None
    carrier: str | None
    destination: str | None
    reason: str               # human readable
    routing_version: str


def _always(_chute: str) -> bool:
    return True


class Router:
    """Decide chutes from reads, with a manifest (SQLite, read-only) and a reloadable table.

    chutes: chute id -> its alternate chute id (or None); the keys are the chutes a route file
    may name.
    """

    def __init__(self, routes_path: str | Path, manifest_path: str | Path,
                 chutes: dict[str, str | None], carriers: CarrierTable | None = None):
        self.routes_path = Path(routes_path)
        self.chutes = dict(chutes)
        self.carriers = carriers or CarrierTable()
        self._table: RouteTable = load_routes(self.routes_path, set(self.chutes), set(self.carriers.codes))
        self.manifest = Manifest(manifest_path, readonly=True)
        self._reload_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> "Router":
        """The one way the controller and the simulation build a Router from a line config."""
        return cls(cfg.routing.routes, cfg.routing.manifest, {c.id: c.alternate for c in cfg.line.chutes})

    @property
    def version(self) -> str:
        return self._table.version

    @property
    def table(self) -> RouteTable:
        return self._table

    def reload(self) -> tuple[bool, str]:
        """Re-read the route file. A bad file is refused (the old table stays in force) and
        the message says why; a good one replaces the table in one step."""
        with self._reload_lock:
            old = self._table
            try:
                new = load_routes(self.routes_path, set(self.chutes), set(self.carriers.codes))
            except RoutesError as exc:
                return False, f"route file refused, version {old.version} stays in force:\n" + \
                    "\n".join(exc.problems)
            self._table = new
            if new.version == old.version:
                return True, f"routes unchanged (version {new.version})"
            return True, f"routes version {old.version} -> {new.version} ({len(new.rules)} rules)"

    def waybills(self, reads: Sequence[tuple[str, str]]) -> dict[str, str | None]:
        """Distinct waybills among a parcel's reads, in read order: waybill -> carrier.

        Product codes and texts that are no waybill are dropped. A 2D code counts for the
        waybill numbers it contains. A 1D read that fits no carrier format but is in the
        manifest still counts (carrier None): a carrier the table does not know yet.
        """
        carriers = self.carriers
        found: dict[str, str | None] = {}
        for symbology, text in reads:
            if not text or carriers.is_product_code(symbology, text):
                continue
            sym = (symbology or "").lower()
            if sym in TWO_D:
                for wb, code in carriers.find_waybills(text):
                    found.setdefault(wb, code)
                continue
            t = normalise(text)
            if t in found:
                continue
            code = carriers.identify(t)
            if code is not None:
                found[t] = code
            elif WAYBILL_RE.fullmatch(t) and self.manifest.lookup(t) is not None:
                found[t] = None
        return found

    def decide(self, reads: Sequence[tuple[str, str]],
               available: Callable[[str], bool] = _always) -> RouteDecision:
        table = self._table  # one version for the whole decision
        version = table.version
        found = self.waybills(reads)
        if not found:
            return RouteDecision(NO_READ, None, None, None, None,
                                 f"no waybill among {len(reads)} reads", version)
        if len(found) > 1:
            listed = ", ".join(f"{w} ({c or '?'})" for w, c in found.items())
            return RouteDecision(MULTI_READ, None, None, None, None,
                                 f"{len(found)} different waybills: {listed}", version)
        (waybill, carrier), = found.items()
        town = self.manifest.lookup(waybill)
        if town is None:
            return RouteDecision(NO_ROUTE, None, waybill, carrier, None,
                                 f"waybill {waybill} not in manifest", version)
        chute, why = table.chute_for(carrier, town)
        if chute is None:
            return RouteDecision(NO_ROUTE, None, waybill, carrier, town, why, version)
        if available(chute):
            return RouteDecision(SORTED, chute, waybill, carrier, town, f"{town} -> {chute} by {why}", version)
        alt = self.chutes.get(chute)
        if alt is not None and available(alt):
            return RouteDecision(SORTED, alt, waybill, carrier, town,
                                 f"{town} -> {chute} by {why}; {chute} unavailable, alternate {alt}", version)
        detail = f"alternate {alt} unavailable too" if alt else "it has no alternate"
        return RouteDecision(CHUTE_UNAVAILABLE, None, waybill, carrier, town,
                             f"{town} -> {chute} by {why}; {chute} unavailable and {detail}", version)

    def close(self) -> None:
        self.manifest.close()
