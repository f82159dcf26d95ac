"""`sorter` subcommands for the routing area (registered by controller/cli/main.py):

    sorter routes check --config FILE
    sorter routes test  --config FILE WAYBILL [--town T] [--address TEXT] [--sort-code CODE]
                        [--carrier C] [--service S] [--weight KG] [--intercept] [--json]
    sorter manifest import FILE... --config FILE [--format csv|json] [--progress]
    sorter manifest show WAYBILL --config FILE
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sorter.controller.cli.common import load_or_exit


def _state(cfg):
    from sorter.controller.routing.routes import RoutesError
    from sorter.controller.routing.router import load_routing_config
    try:
        return load_routing_config(cfg)
    except RoutesError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(1) from None


def cmd_check(args) -> int:
    from sorter.controller.cli.check import route_refusals
    cfg = load_or_exit(args.config)
    st = _state(cfg)
    t = st.table
    refused = route_refusals(cfg, st)
    if refused:
        # valid, but it would stop the line: a reload refuses it too
        sys.stderr.write("route table refused:\n" + "".join(f"  {p}\n" for p in refused))
        return 1
    print(f"{t.path}: OK, version {st.version}")
    print(f"  rules     {len(t.rules)}; default {t.default or '-'}; intercept {t.intercept_chute or '-'}")
    print(f"  towns     {len(st.gazetteer.towns)}" + (" (from the rules: no towns file)" if st.gazetteer.from_rules
                                                     else f" ({st.gazetteer.path})"))
    print(f"  carriers  {', '.join(st.carriers.order)}")
    named = {c for r in t.rules for c in r.chutes} | {t.default, t.intercept_chute}
    unused = [c.id for c in cfg.line.chutes if c.diverter and c.id not in named]
    if unused:
        print(f"  chutes no rule sends to: {', '.join(unused)}")
    for w in st.warnings:
        print(f"  note: {w}")
    return 0


def cmd_test(args) -> int:
    from sorter.controller.routing.carriers import normalise
    from sorter.controller.routing.manifest import ManifestRow, normalise_sort_code
    from sorter.controller.routing.router import NO_ROUTE, RouteDecision, Router
    cfg = load_or_exit(args.config)
    router = Router.from_config(cfg)
    try:
        waybill = normalise(args.waybill)
        st = router.state
        carrier = st.carriers.identify(waybill)
        row = router.manifest.lookup_row(waybill)
        source = "manifest"
        given = any(v is not None for v in (args.town, args.address, args.sort_code, args.service, args.weight)) \
            or args.intercept
        if given or args.carrier:
            base = row or ManifestRow(None, None, None, None, None, None, 0)
            sc = base.sort_code
            if args.sort_code is not None:
                sc = normalise_sort_code(args.sort_code)
                if sc is None:
                    sys.stderr.write(f"--sort-code {args.sort_code!r}: not a sort code (e.g. 571-W30 02)\n")
                    return 2
            row = ManifestRow(args.town if given else base.town, sc if given else None,
                              args.address if given else base.address, args.carrier or base.carrier,
                              args.service if args.service is not None else base.service,
                              args.weight if args.weight is not None else base.weight_kg,
                              int(args.intercept or bool(base.intercept)))
            if given:
                row = row._replace(town=args.town, sort_code=sc if args.sort_code is not None else None,
                                   address=args.address)
            source = "command line"
        if row is None or not (row.town or row.sort_code or row.address):
            d = RouteDecision(NO_ROUTE, None, waybill, carrier, None,
                              f"waybill {waybill} not in manifest (give --town, --address or --sort-code)",
                              router.version)
        else:
            d = router.route(st, waybill, carrier, row)
        out = d.as_dict() | {"advice": None if row is None else row._asdict(), "advice_from": source,
                             "carrier_from_format": carrier}
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            for k in ("waybill", "carrier", "destination", "sort_code", "outcome", "chute", "rule", "reason",
                      "routing_version", "advice_from"):
                print(f"{k:>16}: {out.get(k) if out.get(k) is not None else '-'}")
        return 0 if d.outcome == "sorted" else 1
    finally:
        router.close()


class _Bar:
    """A progress bar on stderr: bytes read, rows imported, rows/s."""

    def __init__(self, name: str, enabled: bool):
        self.name, self.enabled, self.t0, self.last = name, enabled, time.monotonic(), 0.0

    def __call__(self, done: int, total: int, rows: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        frac = done / total if total else 1.0
        n = int(frac * 30)
        rate = rows / max(now - self.t0, 1e-6)
        sys.stderr.write(f"\r{self.name} [{'#' * n}{'.' * (30 - n)}] {frac * 100:5.1f}% {rows:,} rows {rate:,.0f}/s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_import(args) -> int:
    from sorter.controller.routing.manifest import Manifest
    cfg = load_or_exit(args.config)
    m = Manifest(cfg.routing.manifest, cache_mb=args.cache_mb)
    worst = 0
    try:
        for f in args.files:
            fmt = args.format or ("json" if Path(f).suffix.lower() in (".json", ".jsonl", ".ndjson") else "csv")
            bar = _Bar(Path(f).name, args.progress or sys.stderr.isatty())
            rep = (m.import_json if fmt == "json" else m.import_csv)(f, progress=bar)
            if args.json:
                print(json.dumps(rep.as_dict(), ensure_ascii=False))
            else:
                print(rep.summary() + (f" in {rep.seconds:.1f} s ({rep.rows_per_s:,.0f} rows/s)" if not rep.error else ""))
                for line, problem in rep.bad_rows[10:args.show_bad]:
                    print(f"  {f}:{line}: {problem}")
            worst = max(worst, 2 if rep.error else (1 if rep.bad_count else 0))
        if not args.json:
            print(f"manifest {cfg.routing.manifest}: {m.count():,} waybills")
    finally:
        m.close()
    return worst


def cmd_show(args) -> int:
    from sorter.controller.routing.carriers import normalise
    from sorter.controller.routing.manifest import Manifest
    cfg = load_or_exit(args.config)
    m = Manifest(cfg.routing.manifest, readonly=True)
    try:
        row = m.lookup_row(normalise(args.waybill))
    finally:
        m.close()
    print(json.dumps(None if row is None else row._asdict(), ensure_ascii=False))
    return 0 if row is not None else 1


def register(sub: argparse._SubParsersAction, with_config) -> None:
    """Add this area's subcommands; `with_config(parser)` adds the common --config option."""
    rp = sub.add_parser("routes", help="check and try the route table")
    rsub = rp.add_subparsers(dest="routes_cmd", required=True)
    sp = with_config(rsub.add_parser("check", help="validate carriers, towns and the route table"))
    sp.set_defaults(fn=cmd_check)
    sp = with_config(rsub.add_parser("test", help="route one waybill and say why"))
    sp.add_argument("waybill")
    sp.add_argument("--town", help="advice: town (instead of the manifest's)")
    sp.add_argument("--address", help="advice: full address")
    sp.add_argument("--sort-code", help="advice: sort code (三段码), e.g. '571-W30 02'")
    sp.add_argument("--carrier", help="carrier code (as the manifest would name it)")
    sp.add_argument("--service", help="service class")
    sp.add_argument("--weight", type=float, help="weight in kg")
    sp.add_argument("--intercept", action="store_true", help="the carrier asked to stop it (拦截件)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_test)

    mp = sub.add_parser("manifest", help="carrier pre-advice: import, show")
    msub = mp.add_subparsers(dest="manifest_cmd", required=True)
    sp = with_config(msub.add_parser("import", help="import CSV (UTF-8 or GBK) or JSON advice files"))
    sp.add_argument("files", nargs="+")
    sp.add_argument("--format", choices=["csv", "json"], help="default: by the file suffix")
    sp.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    sp.add_argument("--json", action="store_true", help="one JSON report per file")
    sp.add_argument("--show-bad", type=int, default=50, help="bad rows to list per file (default %(default)s)")
    sp.add_argument("--cache-mb", type=int, default=256, help="SQLite page cache while importing")
    sp.set_defaults(fn=cmd_import)
    sp = with_config(msub.add_parser("show", help="the advice of one waybill"))
    sp.add_argument("waybill")
    sp.set_defaults(fn=cmd_show)
