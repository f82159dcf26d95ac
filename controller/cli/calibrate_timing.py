"""Diverter timing: is each diverter where the config says, judged by its chute's confirm eye.

The timing process notes, for every parcel confirmed in the chute it was sent to, the time from
when its head passed the diverter *as planned* (from the configured ``position_mm``) to the confirm
photo-eye seeing it (``tracker.confirm_offsets``, in ``/api/status`` as ``line.confirm_offsets``).
That is the chute's slide time plus the diverter's placement error over the belt speed: a diverter
configured 30 mm too far downstream is planned 15 ms late at 2 m/s, so its offsets come out 15 ms
shorter than its neighbours'.

The reference slide is ``--slide-ms`` when the technician knows it (chutes alike), else the median
over all the diverters measured (the learned value of the line: one misplaced diverter does not
move it; with fewer than three diverters a reference must be given). A diverter whose median is
off the reference by more than ``tolerance_mm`` at belt speed gets a proposed ``position_mm``;
``--accept`` writes the proposals into the line file (only the numbers change; the file is replaced
atomically and the previous one kept as a dated backup).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

MIN_CONFIRMS = 3


@dataclass
class Proposal:
    diverter: str
    n: int
    median_ms: float
    error_mm: float  # + = the config has it further downstream than it is
    position_mm: float  # configured now
    proposed_mm: float | None  # None: within tolerance (or too few confirms)
    note: str = ""

    def to_json(self) -> dict:
        return {"diverter": self.diverter, "confirms": self.n, "median_ms": self.median_ms,
                "error_mm": round(self.error_mm, 1), "position_mm": self.position_mm,
                "proposed_mm": None if self.proposed_mm is None else round(self.proposed_mm, 1), "note": self.note}


class TimingError(Exception):
    pass


def propose(offsets: dict[str, dict], diverters, speed_mps: float, slide_ms: float | None = None,
            tolerance_mm: float = 5.0, min_confirms: int = MIN_CONFIRMS) -> tuple[float, list[Proposal]]:
    """(reference ms, a proposal per configured diverter) from ``confirm_offsets``."""
    usable = {k: v for k, v in offsets.items() if v.get("n", 0) >= min_confirms}
    if slide_ms is None:
        if len(usable) < 3:
            raise TimingError(f"{len(usable)} diverter(s) with {min_confirms}+ confirms: the line's reference needs "
                              "three; send more test parcels, or give --slide-ms")
        slide_ms = statistics.median(v["median_ms"] for v in usable.values())
    mm_per_ms = speed_mps  # m/s = mm/ms
    out = []
    for d in diverters:
        got = offsets.get(d.name)
        if not got or got.get("n", 0) < min_confirms:
            out.append(Proposal(d.name, (got or {}).get("n", 0), (got or {}).get("median_ms", float("nan")), 0.0,
                                d.position_mm, None, f"fewer than {min_confirms} confirms"))
            continue
        err = (slide_ms - got["median_ms"]) * mm_per_ms
        prop = d.position_mm - err if abs(err) > tolerance_mm else None
        out.append(Proposal(d.name, got["n"], got["median_ms"], err, d.position_mm, prop,
                            "" if prop is not None else f"within {tolerance_mm:g} mm"))
    return slide_ms, out


def write_positions(config: Path, changes: dict[str, float]) -> Path | None:
    """Set ``line.diverters[name].position_mm`` in the YAML file, changing only those numbers (the
    comments and layout stay), atomically with a dated backup. Returns the backup's path."""
    import yaml

    from sorter.controller.config.load import read_yaml
    from sorter.vision.geometry import atomic_write_text

    text = config.read_text(encoding="utf-8")
    _, root = read_yaml(config)
    spans = []

    def get(node, key):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v
        return None

    divs = get(get(root, "line"), "diverters")
    if not isinstance(divs, yaml.SequenceNode):
        raise TimingError(f"{config}: no line.diverters list")
    left = dict(changes)
    for item in divs.value:
        name = get(item, "name")
        pos = get(item, "position_mm")
        if name is None or pos is None or name.value not in left:
            continue
        spans.append((pos.start_mark.index, pos.end_mark.index, f"{left.pop(name.value):.0f}"))
    if left:
        raise TimingError(f"{config}: no diverter {', '.join(sorted(left))} with a position_mm")
    for a, b, new in sorted(spans, reverse=True):
        text = text[:a] + new + text[b:]
    return atomic_write_text(config, text)
