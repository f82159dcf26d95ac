"""What `sorter check-config` checks: the line file and the files it names (route table, towns,
carriers), every problem in one pass, each as `file:line: [key.path: ]problem`.

A line file that does not validate still has its routing files looked for (from the raw YAML),
so that a missing routes file is reported with the line file's other mistakes, not after them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sorter.controller.config.load import ConfigError, load_config, read_yaml_noting


def _raw_routing_files(path: Path) -> list[str]:
    """Routing files a line file that did not validate names and that are not there."""
    try:
        data, _, _ = read_yaml_noting(path)
    except ConfigError:
        return []
    routing = data.get("routing") if isinstance(data, dict) else None
    if not isinstance(routing, dict):
        return []
    out = []
    for key in ("routes", "towns", "carriers"):
        value: Any = routing.get(key)
        if not isinstance(value, str) or not value:
            continue
        p = Path(value)
        where = p if p.is_absolute() else path.parent / p   # relative to the line file, as load_config has it
        if not where.exists():
            out.append(f"{path}: routing.{key}: {where}: no such file")
    return out


def check_line_files(config: str | Path):
    """(config or None, problems): the line file validated, then its routing files loaded as the
    controller loads them, and the route table's safety (no rules, no default)."""
    from sorter.controller.routing.router import load_routing_config
    from sorter.controller.routing.routes import RoutesError
    path = Path(config).resolve()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return None, list(exc.problems) + _raw_routing_files(path)
    cal = calibration_problems(cfg, path)
    try:
        st = load_routing_config(cfg)
    except RoutesError as exc:
        return cfg, list(exc.problems) + cal
    return cfg, route_refusals(cfg, st) + cal


def route_refusals(cfg, st) -> list[str]:
    """Why a reload would refuse the valid tables `st`: no rules, no default, or far fewer rules
    than the table the line last ran with (kept in its data folder, last-good-routes/; the line
    keeps a copy of each table it puts in force), as the running line would judge it."""
    from sorter.controller.routing import last_good
    from sorter.controller.routing.routes.safety import unsafe
    kept = last_good.load_kept(cfg)
    in_force = kept[0].table if kept is not None and kept[0].version != st.version else None
    out = unsafe(st.table, in_force, getattr(cfg.routing, "reload_max_rule_drop", 0.5))
    if in_force is not None and len(out) > len(unsafe(st.table)):
        out[-1] += f" (the table in force: the last one the line ran with, version {kept[0].version})"
    return out


def calibration_problems(cfg, path: Path) -> list[str]:
    """Each camera's calibration file (`sorter calibrate` writes it; the camera worker loads it at
    start) loaded as the worker loads it, and checked against the camera: made for it, a frame of
    the shape the camera is asked for, a sane latency and region of interest."""
    from sorter.vision.geometry import Calibration, CalibrationError
    out = []
    for i, cam in enumerate(cfg.cameras):
        if cam.calibration is None:
            continue
        where = f"{path}: cameras.{i}.calibration"
        p = Path(cam.calibration)
        if not p.exists():
            out.append(f"{where}: {p}: no such file")
            continue
        try:
            cal = Calibration.load(p)
        except CalibrationError as exc:
            out.append(f"{where}: {exc}")
            continue
        if cal.camera and cal.camera != cam.name:
            out.append(f"{where}: {p} was made for camera {cal.camera!r}, not {cam.name!r}")
        fw, fh = cal.frame_size
        w, h = cam.properties.width, cam.properties.height
        if w and h and fw and fh and abs(w / h - fw / fh) > 0.01:
            out.append(f"{where}: {p} is for {fw}x{fh} frames; the camera is asked for {w}x{h} (another "
                       "shape: calibrate again at this resolution)")
        lat = cal.meta.get("latency_ms")
        if lat is not None and (not isinstance(lat, (int, float)) or not 0 <= lat <= 5000):
            out.append(f"{where}: {p}: meta.latency_ms {lat!r} is not 0..5000 ms")
        roi = cal.meta.get("roi")
        if roi is not None:
            try:
                ok = 0 <= roi["x"] and 0 <= roi["y"] and roi["x"] + roi["w"] <= fw and roi["y"] + roi["h"] <= fh
            except (KeyError, TypeError):
                ok = False
            if not ok:
                out.append(f"{where}: {p}: meta.roi {roi!r} is not a region inside the {fw}x{fh} frame")
    return out
