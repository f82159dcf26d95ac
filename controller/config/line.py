"""The line configuration: one YAML file per line, validated by pydantic models.

Every number has bounds and every unknown key is refused, because a typo in a
commissioning file must stop the line before it mis-sorts, not after. Errors name
the file, the line and the key path (see ``sorter.controller.config.load``).
Paths of config files inside it are relative to the file itself, paths of data to its data_dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sorter.controller.config.base import Strict
from sorter.controller.config.auth import AuthConfig
from sorter.controller.config.routing import RoutingConfig
from sorter.controller.config.plc import PlcConfig, Signal, SignalTable, verify_io
from sorter.controller.config.retention import RetentionConfig
from sorter.controller.config.sim import SimConfig
from sorter.controller.config.stats import StatsConfig
from sorter.controller.config.site import SiteConfig
from sorter.controller.config.vision import SYMBOLOGIES, CameraConfig, Symbology, verify_cameras

__all__ = ["Config", "Strict", "Signal", "SignalTable", "PlcConfig", "CameraConfig", "RoutingConfig",
           "SYMBOLOGIES", "Symbology", "verify_line"]



class InductConfig(Strict):
    """The induct photo-eye at the start of the belt: each blocked stretch of it is one parcel (its
    head edge gives the parcel its id and position, its tail edge its length)."""

    position_mm: float = Field(default=0.0, ge=0, le=100_000,
                               description="belt position of the induct photo-eye in mm. Every position in the "
                                           "file (scan zone, diverters, cameras, end) is on the same axis, so with "
                                           "0 they are all distances from the induct photo-eye")
    signal: str = Field(description="`io:` signal of the induct photo-eye (discrete_input or coil; true = beam "
                                    "blocked), e.g. pe_induct")


class ScanZone(Strict):
    """The stretch of belt the cameras (and code readers) see."""

    start_mm: float = Field(ge=0, le=100_000, description="belt position where the scan zone begins, mm (not "
                                                          "before the induct photo-eye)")
    end_mm: float = Field(ge=0, le=100_000, description="belt position where it ends, mm (beyond start_mm, before "
                                                        "the first diverter). A parcel is decided once its tail has "
                                                        "passed it and every camera has decoded what it saw (or at "
                                                        "the last safe moment); cameras[].position_mm lie in the zone")

    @model_validator(mode="after")
    def verify_order(self) -> "ScanZone":
        if self.end_mm <= self.start_mm:
            raise ValueError("end_mm must be beyond start_mm")
        return self


class DiverterConfig(Strict):
    """One diverter (pusher, swing arm, pop-up wheels …): it sends a parcel into the chute on its left or
    its right. Its output is on from `lead_mm` before the parcel's head reaches `position_mm` until
    `trail_mm` after its tail has passed, switched `actuation_ms` early, and never longer than
    `max_on_ms`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$",
                      description="diverter name, as `line.chutes[].diverter` and `sorter plc pulse --diverter` "
                                  "give it, e.g. D1 (letters, digits, _ and -, up to 16)")
    position_mm: float = Field(ge=0, le=100_000,
                               description="belt position of the diverter's working line, mm: where a parcel's "
                                           "centre is diverted (past the scan zone, before end_mm)")
    actuation_ms: float = Field(default=40, ge=0, le=1000,
                                description="output on -> mechanism effective, ms: the output is switched on (and "
                                            "off) this much early. Measure it on the mechanism, e.g. on a slow-motion "
                                            "video while `sorter plc pulse` fires it; 0 = instant")
    lead_mm: float = Field(default=40, ge=0, le=2000,
                           description="the mechanism is effective this far before the parcel's head arrives, mm. "
                                       "With trail_mm it is the timing margin: at 2 m/s, 40 mm is 20 ms")
    trail_mm: float = Field(default=40, ge=0, le=2000,
                            description="the mechanism is held this far past the parcel's tail, mm")
    max_on_ms: float = Field(default=2000, ge=10, le=10_000,
                             description="an output is never on longer, ms: a window that would need longer (a long "
                                         "parcel, or parcels back to back held as one) is refused (the parcel goes "
                                         "to reject as too_late), and an output on this long is switched off")
    outputs: dict[Literal["left", "right"], str] = Field(
        description="side -> `io:` signal (coil or relay) of the output that sends a parcel to that side, e.g. "
                    "{left: D1_left, right: D1_right}; at least one side")


class ChuteConfig(Strict):
    """One chute: an outlet of the belt, at one side of one diverter, or the reject chute at the end."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$",
                    description="chute id, as the route table, the records, the page and `sorter run --test-mode "
                                "fixed:ID` name it, e.g. C05 (letters, digits, _ and -, up to 16)")
    name: str = Field(min_length=1, max_length=64, description="what the page shows, e.g. the town")
    diverter: str | None = Field(default=None,
                                 description="name of the diverter (line.diverters[].name) that serves it; none "
                                             "only for the reject chute at the end of the line")
    side: Literal["left", "right"] | None = Field(default=None,
                                                  description="which side of that diverter the chute is on (the "
                                                              "diverter needs an output for that side); none for "
                                                              "the reject chute")
    confirm_signal: str | None = Field(default=None,
                                       description="photo-eye that proves a parcel arrived (`io:` discrete_input or "
                                                   "coil); none = a parcel sent here ends `unconfirmed`, not `sorted`")
    full_signal: str | None = Field(default=None,
                                    description="photo-eye that says the chute is full (`io:` input, true = full): "
                                                "while it is, parcels go to the alternate, else to reject as "
                                                "chute_unavailable; none = never full")
    confirm_timeout_ms: float = Field(default=1500, ge=50, le=30_000,
                                      description="how long the confirm photo-eye may take to see a parcel, ms, from "
                                                  "when its centre passes the diverter (the reject chute: when its "
                                                  "head reaches end_mm); later, the parcel is `lost`")
    confirm_delay_ms: float | None = Field(default=None, ge=0, le=30_000,
                                           description="the usual time from a parcel's centre passing the diverter "
                                                       "to the confirm photo-eye seeing it, ms; none = "
                                                       "line.confirm_delay_ms (it is then learned from the confirms)")
    alternate: str | None = Field(default=None,
                                  description="chute id used while this one is full or disabled, e.g. MANUAL (a "
                                              "route rule's own alternate comes first); none = such parcels go to "
                                              "reject (chute_unavailable)")


class LineConfig(Strict):
    """The belt: its speed and encoder, the induct photo-eye, the scan zone, the diverters and the
    chutes. Positions are belt millimetres on one axis (usually from the induct photo-eye)."""

    name: str = Field(min_length=1, max_length=120, description="name of the line, shown on the status page")
    belt_speed_mps: float = Field(ge=0.1, le=5.0,
                                  description="nominal speed, m/s; the encoder measures the real one (the nominal "
                                              "speed is used until it has, and for the real-time lookup's time "
                                              "budget)")
    encoder_signal: str = Field(description="`io:` signal of the 32-bit encoder count (input_register or "
                                            "holding_register, words: 2)")
    encoder_pulses_per_mm: float = Field(gt=0, le=1000,
                                         description="encoder counts per mm of belt travel, as the counter counts "
                                                     "them (after any x4 quadrature). Measure: the count change over "
                                                     "a known length of belt, divided by it. 10 = 20,000 counts/s at "
                                                     "2 m/s")
    induct: InductConfig = Field(description="the induct photo-eye")
    scan_zone: ScanZone = Field(description="the stretch of belt under the cameras")
    decision_grace_ms: float = Field(default=40, ge=0, le=2000,
                                     description="wait after the scan zone for sources that do not report how far "
                                                 "they have decoded (code readers), ms; cameras are waited for exactly")
    confirm_delay_ms: float | None = Field(default=None, ge=0, le=30_000,
                                           description="the usual time from a parcel's centre passing its diverter "
                                                       "to its chute's confirm photo-eye, ms: with it, the first "
                                                       "confirms of a run go to the parcel due closest, not the "
                                                       "oldest waiting (a parcel taken off the belt ahead must not "
                                                       "take the confirm of the one behind it); none = learned from "
                                                       "the first confirm of each chute")
    min_decision_lead_ms: float = Field(default=15, ge=1, le=2000,
                                        description="a fire closer than this is too_late: a diverter that would have "
                                                    "to switch sooner than this after the decision is not used, ms")
    min_gap_mm: float = Field(default=40, ge=0, le=2000,
                              description="a smaller gap to the parcel ahead cannot be sorted (gap_too_small), mm, "
                                          "measured at the induct photo-eye from the tail ahead to this head")
    min_length_mm: float = Field(default=50, ge=1, le=5000,
                                 description="a shorter blocking of the induct photo-eye is a flicker, not a parcel "
                                             "(no record), mm; also the length assumed when none is known")
    max_length_mm: float = Field(default=1200, ge=1, le=5000,
                                 description="a longer one is parcels touching or a jam: gap_too_small (to reject), "
                                             "mm")
    end_mm: float = Field(ge=0, le=200_000,
                          description="end of the belt, where the reject chute is, mm (beyond every diverter)")
    reject_chute: str = Field(description="id of the chute at the end of the line (in line.chutes, no diverter): "
                                          "every parcel that is not cleanly sorted ends there, its record says why")
    manual_chute: str | None = Field(default=None,
                                     description="id of the manual-handling chute, if any (must be in line.chutes). "
                                                 "It sends nothing there by itself: the route table's default: / "
                                                 "intercept: and the chutes' alternate: do")
    diverters: list[DiverterConfig] = Field(min_length=0, max_length=200,
                                            description="the diverters along the belt")
    chutes: list[ChuteConfig] = Field(min_length=1, max_length=400,
                                      description="every chute: one per diverter side in use, and the reject chute")


class RecordsConfig(Strict):
    """Where the parcel records are kept: one durable record per parcel."""

    database: Path = Field(description="SQLite file of the parcel records, relative to data_dir (created with "
                                       "its folder if missing)")


class BodyLimitsConfig(Strict):
    """Bytes a request body may have, by kind of endpoint: a larger one is answered 413 before it is
    read, so no client can make the controller buffer megabytes it never needed."""

    default_kb: int = Field(default=64, ge=1, le=65536,
                            description="every endpoint that takes a body except the advice upload: control "
                                        "requests, the routes test, keying, login (KB)")
    manifest_mb: int = Field(default=64, ge=1, le=4096,
                             description="the advice upload, POST /api/manifest: a carrier's CSV or JSON rows (MB)")


class ApiConfig(Strict):
    """The status page and the HTTP API (`sorter run --host/--port` override it)."""

    host: str = Field(default="127.0.0.1",
                      description="address to listen on: 127.0.0.1 = this PC only, 0.0.0.0 = every network "
                                  "interface (the centre's LAN)")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0 = any free port (logged)")
    body_limits: BodyLimitsConfig = Field(default=BodyLimitsConfig(),
                                          description="request body size limits by kind of endpoint (413 above)")


class Config(Strict):
    """One line's configuration file. Unknown keys are refused, and paths are relative to the file."""

    line: LineConfig = Field(description="the belt: geometry, timing margins, diverters and chutes")
    plc: PlcConfig = Field(default=PlcConfig(),
                           description="the link to the PLC or remote-I/O module and the fail-safe signals; "
                                       "omitted: direct I/O over Modbus TCP at 127.0.0.1:1502 (the simulated line)")
    io: dict[str, Signal] = Field(description="signal name -> Modbus point: the I/O map. The names are yours (e.g. "
                                              "pe_induct, D1_left); every signal named elsewhere in the file must be "
                                              "here, in a table that suits its use, and no two may share a point")
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=16,
                                        description="the cameras and code readers over the scan zone (none: every "
                                                    "parcel is a no_read)")
    data_dir: Path | None = Field(default=None, description="the folder of everything the line writes: records, "
                                  "manifest, no-read images, calibrations, last good route tables; relative: to "
                                  "this file's folder. Unset: $STATE_DIRECTORY under systemd (/var/lib/sorter), "
                                  "else var/ beside this file. Relative data paths below are relative to it; "
                                  "config files (routes, towns, carriers) to this file's folder")
    routing: RoutingConfig = Field(description="the routing files: route table, manifest, towns, carriers")
    records: RecordsConfig = Field(description="the parcel records")
    retention: RetentionConfig = Field(default=RetentionConfig(), description="how long old rows are kept")
    api: ApiConfig = Field(default=ApiConfig(), description="the status page and HTTP API")
    auth: AuthConfig = Field(default=AuthConfig(), description="users, roles and logins of the page and API")
    stats: StatsConfig = Field(default=StatsConfig(), description="the shifts of the totals and charts")
    sim: SimConfig = Field(default=SimConfig(), description="read by `sorter sim` only: the simulated line that "
                                                            "stands in for the hardware")
    site: SiteConfig | None = Field(default=None, description="this line as one of a site's lines: central "
                                                              "PostgreSQL records, MQTT, carrier uploads (off when "
                                                              "omitted)")

    # convenience lookups -------------------------------------------------
    def chute(self, chute_id: str) -> ChuteConfig:
        for c in self.line.chutes:
            if c.id == chute_id:
                return c
        raise KeyError(chute_id)

    def diverter(self, name: str) -> DiverterConfig:
        for d in self.line.diverters:
            if d.name == name:
                return d
        raise KeyError(name)


def verify_line(cfg: Config) -> list[tuple[str, str]]:
    """Cross-field checks: everything a name refers to exists and the geometry is sane.

    Returns (key path, problem) pairs so that the loader can point at the YAML line.
    """
    line, io = cfg.line, cfg.io
    problems: list[tuple[str, str]] = []

    def need_signal(where: str, name: str | None, tables: tuple[str, ...]) -> None:
        if name is None:
            return
        sig = io.get(name)
        if sig is None:
            problems.append((where, f"signal {name!r} is not in io"))
        elif sig.table not in tables:
            problems.append((where, f"signal {name!r} is a {sig.table}, expected {' or '.join(tables)}"))

    bits_in = ("discrete_input", "coil")
    need_signal("line.induct.signal", line.induct.signal, bits_in)
    need_signal("line.encoder_signal", line.encoder_signal, ("input_register", "holding_register"))
    if line.encoder_signal in io and io[line.encoder_signal].words != 2:
        problems.append(("line.encoder_signal", "the encoder count must be 32-bit (words: 2)"))

    names = [d.name for d in line.diverters]
    for dup in {n for n in names if names.count(n) > 1}:
        problems.append(("line.diverters", f"diverter {dup!r} is defined twice"))
    ids = [c.id for c in line.chutes]
    for dup in {n for n in ids if ids.count(n) > 1}:
        problems.append(("line.chutes", f"chute {dup!r} is defined twice"))

    for i, d in enumerate(line.diverters):
        if d.position_mm <= line.scan_zone.end_mm:
            problems.append((f"line.diverters.{i}", f"{d.name} at {d.position_mm} mm is not past the scan zone"))
        if d.position_mm >= line.end_mm:
            problems.append((f"line.diverters.{i}", f"{d.name} is beyond the end of the line"))
        if not d.outputs:
            problems.append((f"line.diverters.{i}", f"{d.name} has no outputs"))
        for side, sig in d.outputs.items():
            need_signal(f"line.diverters.{i}.outputs.{side}", sig, ("coil", "relay"))

    served: dict[tuple[str, str], str] = {}
    for i, c in enumerate(line.chutes):
        where = f"line.chutes.{i}"
        if c.diverter is not None:
            if c.diverter not in names:
                problems.append((f"{where}.diverter", f"no diverter named {c.diverter!r}"))
            else:
                d = line.diverters[names.index(c.diverter)]
                if c.side is None or c.side not in d.outputs:
                    problems.append((f"{where}.side", f"{c.diverter} has no {c.side!r} output"))
                key = (c.diverter, c.side or "")
                if key in served:
                    problems.append((where, f"{c.diverter} {c.side} already serves {served[key]}"))
                served[key] = c.id
        elif c.id != line.reject_chute:
            problems.append((where, f"chute {c.id} has no diverter and is not the reject chute"))
        need_signal(f"{where}.confirm_signal", c.confirm_signal, bits_in)
        need_signal(f"{where}.full_signal", c.full_signal, bits_in)
        if c.alternate is not None and c.alternate not in ids:
            problems.append((f"{where}.alternate", f"no chute {c.alternate!r}"))
        if c.alternate == c.id:
            problems.append((f"{where}.alternate", "a chute cannot be its own alternate"))

    if line.reject_chute not in ids:
        problems.append(("line.reject_chute", f"no chute {line.reject_chute!r}"))
    if line.manual_chute is not None and line.manual_chute not in ids:
        problems.append(("line.manual_chute", f"no chute {line.manual_chute!r}"))
    if line.scan_zone.start_mm < line.induct.position_mm:
        problems.append(("line.scan_zone", "the scan zone starts before the induct photo-eye"))
    if line.min_length_mm > line.max_length_mm:
        problems.append(("line.min_length_mm", "larger than max_length_mm"))
    problems += verify_cameras(cfg)
    problems += verify_io(cfg)
    problems += verify_sim(cfg)
    return problems


def verify_sim(cfg: Config) -> list[tuple[str, str]]:
    """The simulation's truth table (sim.destinations) against the line: every chute it names
    exists and is not the reject chute, no town is given twice for the same carriers, no sort code
    stands for two towns, and every town the parcels are for has a chute for every carrier."""
    sim, line = cfg.sim, cfg.line
    ids = {c.id for c in line.chutes}
    problems: list[tuple[str, str]] = []
    seen: dict[tuple[str, str | None], int] = {}    # (town, carrier or None) -> entry
    codes: dict[str, tuple[int, str, frozenset[str] | None]] = {}
    for i, d in enumerate(sim.destinations):
        where = f"sim.destinations.{i}"
        for j, c in enumerate(d.chutes):
            if c not in ids:
                problems.append((f"{where}.chutes.{j}", f"{d.town}: no chute {c!r} in line.chutes"))
            elif c == line.reject_chute:
                problems.append((f"{where}.chutes.{j}", f"{d.town}: the reject chute {c} is where nothing "
                                 f"sortable belongs; name the chute the town's parcels are sorted to"))
        if len(set(d.chutes)) != len(d.chutes):
            problems.append((f"{where}.chutes", f"{d.town}: a chute is listed twice"))
        if d.alternate is not None and d.alternate not in ids:
            problems.append((f"{where}.alternate", f"{d.town}: no chute {d.alternate!r} in line.chutes"))
        for c in d.carriers or [None]:
            first = seen.setdefault((d.town, c), i)
            if first != i:
                who = f" for carrier {c}" if c else ""
                problems.append((where, f"{d.town}{who} is already given by sim.destinations.{first}: one entry "
                                 f"per town and carrier"))
        carriers = frozenset(d.carriers) if d.carriers else None
        for j, code in enumerate(d.sort_codes):
            other = codes.get(code)
            if other is None:
                codes[code] = (i, d.town, carriers)
            elif other[1] != d.town and (other[2] is None or carriers is None or other[2] & carriers):
                problems.append((f"{where}.sort_codes.{j}", f"sort code {code} of {d.town} is already "
                                 f"{other[1]}'s (sim.destinations.{other[0]}): a code names one town"))
    general = {t for t, c in seen if c is None}
    named = {c.name for c in line.chutes if c.diverter and c.id != line.manual_chute}
    towns: dict[str, str] = {}     # the towns the parcels are for -> where the config names them
    for i, t in enumerate(sim.towns):
        towns.setdefault(t, f"sim.towns.{i}")
    if not sim.towns:
        for i, d in enumerate(sim.destinations):
            towns.setdefault(d.town, f"sim.destinations.{i}")
    for town, where in towns.items():
        if sim.destinations and town not in general:
            problems.append((where, f"{town} has no entry in sim.destinations for every carrier (one without "
                             f"carriers:): add {{town: {town}, chutes: [...]}}"))
        elif not sim.destinations and town not in named:
            problems.append((where, f"{town}: no sim.destinations (the truth table) and no chute is named after "
                             f"it; add sim.destinations (see config/wenling-line1.yaml)"))
    return problems
