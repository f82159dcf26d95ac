"""The routing decision for one parcel: its reads -> waybill -> carrier -> destination -> chute.

`Router.decide` runs in the timing process for every parcel, so it is plain code and one
SQLite primary-key lookup: tens of microseconds. What routing reads from files (the carriers'
formats, the gazetteer, the route table) is one immutable `RoutingState` that `reload` replaces
in one assignment; a decision takes the state once at its start, so it is routed by exactly one
version, which it reports.

Destination: the manifest's town (an alias is mapped to its town by the gazetteer), else the
town of its address (gazetteer, most specific match), else only its sort code (三段码), which
sort-code rules route. The manifest's carrier, when it names one, wins over the format's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sorter.controller.routing.carriers import CarrierTable, load_carriers, normalise
from sorter.controller.routing.gazetteer import Gazetteer, load_gazetteer
from sorter.controller.routing.manifest import WAYBILL_RE, Manifest, ManifestRow, parse_sort_code
from sorter.controller.routing.routes import Facts, RoutesError, RouteTable, load_routes
from sorter.controller.routing.routes.safety import FORCE_HINT, unsafe
from sorter.controller.routing.files import FileProblems, digest

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
    destination: str | None   # the town, or the sort code when only that is known
    reason: str               # human readable
    routing_version: str
    rule: str | None = None   # the rule that matched ("rule 6 (town=泽国镇)", "default", "intercept")
    sort_code: str | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RoutingState:
    """Everything routing reads from files, validated, with its version (content hash)."""
    version: str
    table: RouteTable
    carriers: CarrierTable
    gazetteer: Gazetteer
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    signature: tuple = field(default=(), compare=False)


def _signature(files: Sequence[Path]) -> tuple:
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(f), None))
    return tuple(out)


def load_routing(routes: str | Path, chute_ids: set[str], towns: str | Path | None = None,
                 carriers: str | Path | None = None, carrier_table: CarrierTable | None = None) -> RoutingState:
    """Load and validate the carriers file, the gazetteer and the route table together; raise
    RoutesError listing every problem of every file (`file:line: problem`)."""
    routes = Path(routes)
    files = [routes] + [Path(p) for p in (towns, carriers) if p is not None]
    signature = _signature(files)  # before reading: a change while we read is seen next time
    problems: list[str] = []
    warnings: list[str] = []
    extra = b""
    table_c = carrier_table or CarrierTable()
    if carriers is not None:
        try:
            table_c, overlaps, raw = load_carriers(carriers)
            warnings += overlaps
            extra += digest(raw).encode()
        except FileProblems as exc:
            problems += exc.problems
    gaz = None
    if towns is not None:
        try:
            gaz = load_gazetteer(towns)
            extra += digest(gaz.raw).encode()
        except FileProblems as exc:
            problems += exc.problems
    if problems:
        # the route table's own problems in the same pass (its towns unchecked without a gazetteer)
        try:
            load_routes(routes, chute_ids, set(table_c.codes), gaz, extra)
        except RoutesError as exc:
            problems += exc.problems
        raise RoutesError(problems)
    table = load_routes(routes, chute_ids, set(table_c.codes), gaz, extra)
    if gaz is None:
        gaz = Gazetteer.of_towns(sorted(table.towns))
    return RoutingState(table.version, table, table_c, gaz, tuple(files), tuple(warnings) + table.warnings,
                        signature)


def config_paths(cfg) -> tuple[Path, Path | None, Path | None]:
    """(routes, towns, carriers) of a line config. The loader resolves routes against the line
    file; towns and carriers not yet resolved (relative) are taken beside the routes file."""
    r = cfg.routing
    base = Path(r.routes).parent
    out = []
    for p in (getattr(r, "towns", None), getattr(r, "carriers", None)):
        out.append(None if p is None else (Path(p) if Path(p).is_absolute() else base / p))
    return Path(r.routes), out[0], out[1]


def load_routing_config(cfg) -> RoutingState:
    """The routing files of a line config, loaded and validated as the controller loads them."""
    routes, towns, carriers = config_paths(cfg)
    return load_routing(routes, {c.id for c in cfg.line.chutes}, towns, carriers)


def _always(_chute: str) -> bool:
    return True


class Router:
    """Decide chutes from reads, with a manifest (SQLite, read-only) and reloadable routing files.

    chutes: chute id -> its alternate chute id (or None); the keys are the chutes a route file
    may name. towns / carriers_path: the gazetteer and carriers files (optional: without them the
    route table's town names and the built-in carrier formats are used). max_rule_drop: the
    largest share of the rules in force a reload may lose (routing.reload_max_rule_drop).
    """

    def __init__(self, routes_path: str | Path, manifest_path: str | Path,
                 chutes: dict[str, str | None], carriers: CarrierTable | None = None,
                 towns: str | Path | None = None, carriers_path: str | Path | None = None,
                 max_rule_drop: float = 0.5, state: RoutingState | None = None):
        self.max_rule_drop = max_rule_drop
        # the problems of the last file refused (the table in force stays): shown by /api/routes
        # until a reload succeeds
        self.refused: tuple[str, ...] | None = None
        self.routes_path = Path(routes_path)
        self.towns_path = Path(towns) if towns is not None else None
        self.carriers_path = Path(carriers_path) if carriers_path is not None else None
        self.chutes = dict(chutes)
        self._carrier_table = carriers
        # a state loaded elsewhere (the service process, or its last good copy) is taken as it is
        self._state: RoutingState = state if state is not None else self._load()
        self._tried = self._state.signature
        self.manifest = Manifest(manifest_path, readonly=True)
        self._reload_lock = threading.Lock()
        self.sent: dict[str, int] = {}   # parcels sent per chute of a group (to balance it)

    def _load(self) -> RoutingState:
        return load_routing(self.routes_path, set(self.chutes), self.towns_path, self.carriers_path,
                            self._carrier_table)

    @classmethod
    def from_config(cls, cfg, state: RoutingState | None = None) -> "Router":
        """The one way the controller and the simulation build a Router from a line config
        (`state`: the tables already loaded elsewhere, so that no routing file is read)."""
        routes, towns, carriers = config_paths(cfg)
        return cls(routes, cfg.routing.manifest, {c.id: c.alternate for c in cfg.line.chutes},
                   towns=towns, carriers_path=carriers,
                   max_rule_drop=getattr(cfg.routing, "reload_max_rule_drop", 0.5), state=state)

    @property
    def version(self) -> str:
        return self._state.version

    @property
    def table(self) -> RouteTable:
        return self._state.table

    @property
    def state(self) -> RoutingState:
        return self._state

    @property
    def carriers(self) -> CarrierTable:
        return self._state.carriers

    @property
    def gazetteer(self) -> Gazetteer:
        return self._state.gazetteer

    def reload(self, force: bool = False) -> tuple[bool, str]:
        """Re-read the routing files. A bad file is refused (the old state stays in force) and
        the message says why; so is a valid one that would stop the line (no rules, no default,
        or far fewer rules than the table in force) unless `force` (a person decided it); a good
        one replaces the state in one step."""
        with self._reload_lock:
            old = self._state
            try:
                new = self._load()
            except RoutesError as exc:
                self._tried = _signature(old.files)
                self.refused = tuple(exc.problems)
                return False, f"route file refused, version {old.version} stays in force:\n" + \
                    "\n".join(exc.problems)
            self._tried = new.signature
            why = [] if force or new.version == old.version else \
                unsafe(new.table, old.table, self.max_rule_drop)
            if why:
                self.refused = tuple(why)
                return False, f"route file refused, version {old.version} stays in force:\n" + \
                    "\n".join(why) + f"\n({FORCE_HINT})"
            self.refused = None
            self._state = new
            forced = " (forced)" if force and unsafe(new.table, old.table, self.max_rule_drop) else ""
            if new.version == old.version:
                return True, f"routes unchanged (version {new.version})"
            return True, f"routes version {old.version} -> {new.version} ({len(new.table.rules)} rules){forced}"

    def install(self, state: RoutingState) -> str:
        """Swap in a state loaded elsewhere (e.g. by the service process, so that the timing
        process does not parse YAML on its hot loop)."""
        old, self._state, self._tried = self._state, state, state.signature
        self.refused = None
        return f"routes version {old.version} -> {state.version}"

    def reload_if_changed(self) -> tuple[bool, str] | None:
        """Reload when a routing file changed since the last attempt (one stat() per file);
        None when nothing changed. A refused file is not retried until it changes again."""
        if _signature(self._state.files) == self._tried:
            return None
        return self.reload()

    def waybills(self, reads: Sequence[tuple[str, str]], carriers: CarrierTable | None = None) -> dict[str, str | None]:
        """Distinct waybills among a parcel's reads, in read order: waybill -> carrier.

        Product codes and texts that are no waybill are dropped. A 2D code counts for the
        waybill numbers it contains. A 1D read that fits no carrier format but is in the
        manifest still counts (carrier None): a carrier the table does not know yet.
        """
        carriers = carriers or self._state.carriers
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
            elif WAYBILL_RE.fullmatch(t) and self.manifest.lookup_row(t) is not None:
                found[t] = None
        return found

    def decide(self, reads: Sequence[tuple[str, str]],
               available: Callable[[str], bool] = _always) -> RouteDecision:
        st = self._state  # one version for the whole decision
        version = st.version
        found = self.waybills(reads, st.carriers)
        if not found:
            return RouteDecision(NO_READ, None, None, None, None,
                                 f"no waybill among {len(reads)} reads", version)
        if len(found) > 1:
            listed = ", ".join(f"{w} ({c or '?'})" for w, c in found.items())
            return RouteDecision(MULTI_READ, None, None, None, None,
                                 f"{len(found)} different waybills: {listed}", version)
        (waybill, carrier), = found.items()
        row = self.manifest.lookup_row(waybill)
        if row is None:
            # the real-time lookup (service process, controller/routing/lookup.py) may have left a note:
            # it is never waited for here
            note = self.manifest.lookup_note(waybill)
            why = f"waybill {waybill} not in manifest"
            if note is not None:
                why += f"; real-time lookup {note[0]}" + (f": {note[1]}" if note[1] else "")
            return RouteDecision(NO_ROUTE, None, waybill, carrier, None, why, version)
        return self.route(st, waybill, carrier, row, available)

    def route(self, st: RoutingState, waybill: str, carrier: str | None, row: ManifestRow,
              available: Callable[[str], bool] = _always) -> RouteDecision:
        """The chute for a waybill whose advice is `row` (what decide does after the lookup;
        `sorter routes test` calls it with advice given on the command line)."""
        version = st.version
        if row.carrier:
            carrier = row.carrier  # the manifest wins
        gaz = st.gazetteer
        town = gaz.canonical(row.town) if row.town else None
        how = ""
        if town is None and row.town:
            town = row.town.strip()  # a town the gazetteer does not know: rules may still name it
        if town is None and row.address:
            town, how = gaz.resolve(row.address)
            if town is None and not row.sort_code:
                # the reason goes into the parcel's record, which any reader of the page sees: it
                # names the gazetteer's words only, never the address (a name, a phone number)
                return RouteDecision(NO_ROUTE, None, waybill, carrier, None,
                                     f"address does not resolve: {how}", version)
        segs = parse_sort_code(row.sort_code) if row.sort_code else None
        sort_code = "-".join(segs) if segs else None
        dest = town or sort_code
        facts = Facts(carrier, town, segs, row.service, row.weight_kg, bool(row.intercept))
        rule, why = st.table.match(facts)
        if how:
            why = f"{why}; {how}"
        if rule is None:
            return RouteDecision(NO_ROUTE, None, waybill, carrier, dest, why, version, None, sort_code)
        rname = rule.describe()
        label = f"{dest} -> " if dest else ""
        chutes = rule.chutes
        if len(chutes) > 1:
            # a group: the available chute that has had the fewest parcels
            sent = self.sent
            pick = None
            for c in chutes:
                if available(c) and (pick is None or sent.get(c, 0) < sent.get(pick, 0)):
                    pick = c
            if pick is not None:
                sent[pick] = sent.get(pick, 0) + 1
                return RouteDecision(SORTED, pick, waybill, carrier, dest,
                                     f"{label}{pick} of group {'/'.join(chutes)} by {why}", version, rname, sort_code)
            chute = "/".join(chutes)
            alt = rule.alternate or self.chutes.get(chutes[0])
        else:
            chute = chutes[0]
            if available(chute):
                return RouteDecision(SORTED, chute, waybill, carrier, dest, f"{label}{chute} by {why}", version,
                                     rname, sort_code)
            alt = rule.alternate or self.chutes.get(chute)
        if alt is not None and available(alt):
            return RouteDecision(SORTED, alt, waybill, carrier, dest,
                                 f"{label}{chute} by {why}; {chute} unavailable, alternate {alt}", version,
                                 rname, sort_code)
        detail = f"alternate {alt} unavailable too" if alt else "it has no alternate"
        return RouteDecision(CHUTE_UNAVAILABLE, None, waybill, carrier, dest,
                             f"{label}{chute} by {why}; {chute} unavailable and {detail}", version, rname, sort_code)

    def close(self) -> None:
        self.manifest.close()
