"""The line configuration: one YAML file per line, validated by pydantic models.

Every number has bounds and every unknown key is refused, because a typo in a
commissioning file must stop the line before it mis-sorts, not after. Errors name
the file, the line and the key path (see ``sorter.controller.config.load``).
Paths inside the file are relative to the file itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sorter.controller.config.base import Strict
from sorter.controller.config.routing import RoutingConfig
from sorter.controller.config.plc import PlcConfig, Signal, SignalTable, verify_io
from sorter.controller.config.sim import SimConfig
from sorter.controller.config.vision import SYMBOLOGIES, CameraConfig, Symbology, verify_cameras

__all__ = ["Config", "Strict", "Signal", "SignalTable", "PlcConfig", "CameraConfig", "RoutingConfig",
           "SYMBOLOGIES", "Symbology", "verify_line"]



class InductConfig(Strict):
    position_mm: float = Field(default=0.0, ge=0, le=100_000)
    signal: str = Field(description="I/O signal of the induct photo-eye (true = beam blocked)")


class ScanZone(Strict):
    start_mm: float = Field(ge=0, le=100_000)
    end_mm: float = Field(ge=0, le=100_000)

    @model_validator(mode="after")
    def verify_order(self) -> "ScanZone":
        if self.end_mm <= self.start_mm:
            raise ValueError("end_mm must be beyond start_mm")
        return self


class DiverterConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    position_mm: float = Field(ge=0, le=100_000, description="where a parcel's centre is diverted")
    actuation_ms: float = Field(default=40, ge=0, le=1000, description="output on -> mechanism effective")
    lead_mm: float = Field(default=40, ge=0, le=2000, description="effective this far before the parcel's head")
    trail_mm: float = Field(default=40, ge=0, le=2000, description="held this far past the parcel's tail")
    max_on_ms: float = Field(default=2000, ge=10, le=10_000, description="an output is never on longer")
    outputs: dict[Literal["left", "right"], str] = Field(description="side -> I/O signal of its output")


class ChuteConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,16}$")
    name: str = Field(min_length=1, max_length=64, description="what the page shows, e.g. the town")
    diverter: str | None = Field(default=None, description="diverter that serves it; none for the end of the line")
    side: Literal["left", "right"] | None = None
    confirm_signal: str | None = Field(default=None, description="photo-eye that proves a parcel arrived")
    full_signal: str | None = Field(default=None, description="photo-eye that says the chute is full")
    confirm_timeout_ms: float = Field(default=1500, ge=50, le=30_000)
    alternate: str | None = Field(default=None, description="chute used while this one is full or disabled")


class LineConfig(Strict):
    name: str = Field(min_length=1, max_length=120)
    belt_speed_mps: float = Field(ge=0.1, le=5.0, description="nominal speed; the encoder measures the real one")
    encoder_signal: str = Field(description="I/O signal of the 32-bit encoder count")
    encoder_pulses_per_mm: float = Field(gt=0, le=1000)
    induct: InductConfig
    scan_zone: ScanZone
    decision_grace_ms: float = Field(default=40, ge=0, le=2000, description="wait after the scan zone for sources that do not report how far they have decoded")
    min_decision_lead_ms: float = Field(default=15, ge=1, le=2000, description="a fire closer than this is too_late")
    min_gap_mm: float = Field(default=40, ge=0, le=2000, description="a smaller gap to the parcel ahead cannot be sorted")
    min_length_mm: float = Field(default=50, ge=1, le=5000)
    max_length_mm: float = Field(default=1200, ge=1, le=5000)
    end_mm: float = Field(ge=0, le=200_000, description="end of the belt, where the reject chute is")
    reject_chute: str
    manual_chute: str | None = None
    diverters: list[DiverterConfig] = Field(min_length=0, max_length=200)
    chutes: list[ChuteConfig] = Field(min_length=1, max_length=400)


class RecordsConfig(Strict):
    database: Path


class ApiConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class Config(Strict):
    line: LineConfig
    plc: PlcConfig = PlcConfig()
    io: dict[str, Signal] = Field(description="signal name -> Modbus point")
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=16)
    routing: RoutingConfig
    records: RecordsConfig
    api: ApiConfig = ApiConfig()
    sim: SimConfig = SimConfig()

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
    return problems
