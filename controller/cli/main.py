"""The `sorter` command."""

from __future__ import annotations

import argparse
import os
import sys

from sorter import logs
from sorter.controller.cli.common import load_or_exit
from sorter.controller.config.load import example_config

DEFAULT_CONFIG = str(example_config())


def _length(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--length {text!r}: expected MIN-MAX in mm, e.g. 150-600") from None
    if not 0 < lo <= hi <= 5000:
        raise argparse.ArgumentTypeError(f"--length {text!r}: need 0 < MIN <= MAX <= 5000")
    return lo, hi


def cmd_check_config(args) -> int:
    from sorter.controller.cli.check import check_line_files
    cfg, problems = check_line_files(args.config)
    if problems:
        # every mistake of the line file and of the routing files it names, in one pass
        sys.stderr.write(f"{args.config}: invalid configuration\n" + "".join(f"  {p}\n" for p in problems))
        return 2
    line = cfg.line
    print(f"{args.config}: OK")
    print(f"  line      {line.name}")
    print(f"  belt      {line.belt_speed_mps} m/s, encoder {line.encoder_pulses_per_mm} pulses/mm, "
          f"scan zone {line.scan_zone.start_mm:.0f}-{line.scan_zone.end_mm:.0f} mm, end {line.end_mm:.0f} mm")
    print(f"  diverters {len(line.diverters)}: " + ", ".join(f"{d.name}@{d.position_mm:.0f}" for d in line.diverters))
    print(f"  chutes    {len(line.chutes)}: " + ", ".join(f"{c.id}={c.name}" for c in line.chutes))
    print("  cameras   " + (", ".join(f"{c.name} ({c.source}, {'calibrated' if c.calibration else 'not calibrated'})"
                                        for c in cfg.cameras) or "none"))
    print(f"  plc       {cfg.plc.mode} {cfg.plc.url}, {len(cfg.io)} signals, poll {cfg.plc.poll_hz:.0f} Hz")
    print(f"  routing   {cfg.routing.routes} / manifest {cfg.routing.manifest}")
    print(f"  records   {cfg.records.database}")
    print(f"  data      {cfg.data_dir} (records, manifest, no-read images, calibrations, last good routes)")
    return 0


def _api_args(cfg, args):
    host = args.host or cfg.api.host
    port = args.port if args.port is not None else cfg.api.port
    return host, port


def cmd_sim(args) -> int:
    from sorter.controller.cli.sim import apply_overrides, print_json, run_sim
    cfg = apply_overrides(load_or_exit(args.config), args.belt_speed, args.length, args.rate)
    if args.modbus_port is not None:
        cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"modbus_port": args.modbus_port})})
    host, port = _api_args(cfg, args)
    # a finite run serves the page too when asked for (--serve) or given a port, so it can be watched
    serve = args.parcels is None or args.serve or args.port is not None
    if serve:
        sys.stderr.write(f"status page: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/\n")
    from sorter.controller.app import StartError
    try:
        result = run_sim(cfg, args.parcels, args.seed, host, port, serve_api=serve,
                         progress=sys.stderr.isatty() or args.progress, token=os.environ.get("SORTER_API_TOKEN"))
    except StartError as exc:
        sys.stderr.write(f"sorter sim: {exc}\n")
        return 2
    if result is None:
        return 0
    if args.json:
        print_json(result)
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    # failure is what is unsafe or lost: a parcel in a wrong chute, or a parcel without a record
    # (a sortable parcel sent to reject is counted in mis_sorted, but is the safe side)
    unsafe = result.get("wrong_chute", result["mis_sorted"]) or 0
    return 0 if unsafe == 0 and result["unrecorded"] == 0 else 1


def cmd_run(args) -> int:
    from sorter.controller.config.load import ConfigError, load_config
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:  # drive nothing, but say why on the status page (and to systemd)
        from sorter.controller.cli.refused import serve_refused
        return serve_refused(args.config, exc, args.host, args.port)
    from sorter.controller.app import App
    from sorter.controller.cli.plc import apply_run_test_args
    cfg = apply_run_test_args(cfg, args)
    from sorter.controller.app import StartError
    try:
        App(cfg, mode="run", plc_url=args.plc, token=os.environ.get("SORTER_API_TOKEN"),
            api=_api_args(cfg, args)).serve()
    except StartError as exc:
        sys.stderr.write(f"sorter run: {exc}\n")
        return 2
    return 0


def cmd_decode(args) -> int:
    from sorter.controller.cli.decode import run
    return run(args.images, args.json)


def cmd_export(args) -> int:
    """Daily export per carrier, for billing: one CSV per carrier (or one for --carrier)."""
    import datetime as dt
    from pathlib import Path

    from sorter.controller.records.store import RecordStore
    cfg = load_or_exit(args.config)
    try:
        day = dt.date.fromisoformat(args.day) if args.day else dt.date.today() - dt.timedelta(days=1)
    except ValueError:
        sys.stderr.write(f"--day {args.day!r}: expected YYYY-MM-DD\n")
        return 2
    if not Path(cfg.records.database).exists():
        sys.stderr.write(f"{cfg.records.database}: no records database (has the line run?)\n")
        return 2
    store = RecordStore(cfg.records.database)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    carriers = [args.carrier] if args.carrier else sorted(
        {r[0] for r in store._conn.execute("SELECT DISTINCT carrier FROM parcels WHERE carrier IS NOT NULL")})
    for carrier in carriers:
        path = out_dir / f"{day.isoformat()}-{carrier}.csv"
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel on Chinese Windows
            n = store.export_csv(f, day, carrier)
        tmp.replace(path)
        print(f"{path}: {n} parcels")
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sorter", description="Sorting-station controller for shared distribution centres")
    p.add_argument("--log-level", default=os.environ.get("SORTER_LOG_LEVEL", "INFO"), type=str.upper,
                   choices=logs.LEVELS, help="of every process of the line (default %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp):
        sp.add_argument("--config", default=DEFAULT_CONFIG, help="the line's YAML file (default %(default)s)")
        return sp

    sp = with_config(sub.add_parser("check-config", help="validate a line config and print a summary"))
    sp.add_argument("file", nargs="?", help="config file (same as --config)")
    sp.set_defaults(fn=cmd_check_config)

    sp = with_config(sub.add_parser("sim", help="run the whole system on the simulated line"))
    sp.add_argument("--parcels", type=int, help="run N parcels, print a summary and stop")
    sp.add_argument("--rate", type=float, help="parcels per hour offered at the induct")
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sp.add_argument("--belt-speed", type=float, help="belt speed in m/s")
    sp.add_argument("--length", type=_length, help="parcel length range in mm, MIN-MAX")
    sp.add_argument("--host", help="API/status page address")
    sp.add_argument("--port", type=int, help="API/status page port (with --parcels: serve it during the run)")
    sp.add_argument("--serve", action="store_true", help="serve the status page during a --parcels run too "
                                                         "(on api.port)")
    sp.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    sp.add_argument("--modbus-port", type=int, help="the simulated line's Modbus TCP port (sim.modbus_port; "
                    "0 = any free port)")
    sp.set_defaults(fn=cmd_sim)

    sp = with_config(sub.add_parser("run", help="run the line with real hardware"))
    sp.add_argument("--plc", help="override the PLC connection: tcp://HOST:PORT or "
                                  "rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    from sorter.controller.cli.plc import add_run_test_args
    add_run_test_args(sp)
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("decode", help="decode barcodes in image files")
    sp.add_argument("images", nargs="+")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_decode)

    sp = with_config(sub.add_parser("export", help="daily CSV export of parcel records per carrier (billing)"))
    sp.add_argument("--day", help="YYYY-MM-DD (default: yesterday)")
    sp.add_argument("--carrier", help="only this carrier (default: one file per carrier)")
    sp.add_argument("--out", default="exports", help="output folder (default %(default)s)")
    sp.set_defaults(fn=cmd_export)

    from sorter.controller.cli import plc as cli_plc
    from sorter.controller.cli import routes as cli_routes
    from sorter.controller.cli import vision as cli_vision
    from sorter.controller.cli import config_docs as cli_config_docs
    from sorter.controller.cli import users as cli_users
    from sorter.controller.cli import install_service as cli_install_service
    for area in (cli_routes, cli_plc, cli_vision, cli_config_docs, cli_users, cli_install_service):
        area.register(sub, with_config)

    args = p.parse_args(argv)
    if getattr(args, "file", None):
        args.config = args.file
    logs.setup(args.log_level, "sorter")
    if args.cmd == "sim" and args.belt_speed is not None and not 0.1 <= args.belt_speed <= 5:
        p.error("--belt-speed must be between 0.1 and 5 m/s")
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
