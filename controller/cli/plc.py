"""`sorter plc probe|watch|pulse`: commissioning commands for technicians (registered by
controller/cli/main.py), and the test modes of `sorter run` (--test-mode fixed:CHUTE | round-robin).

All take --config FILE and --plc URL (tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1)
to override the connection. They talk to the line through the same driver as the timing loop.
Do not run them while `sorter run` drives the same device: one connection, one owner.
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import sys
import time

from sorter.controller.cli.common import load_or_exit


def _cfg(args):
    cfg = load_or_exit(args.config)
    if args.plc:
        from sorter.controller.config.plc import parse_plc_url
        try:
            parse_plc_url(args.plc)
        except ValueError as exc:
            sys.stderr.write(f"--plc: {exc}\n")
            raise SystemExit(2) from None
    return cfg


def _run(coro) -> int:
    import logging
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        return loop.run_until_complete(coro)
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()


async def _connect(cfg, url):
    from sorter.plc.line_io import open_line_io
    io = open_line_io(cfg, url)
    if not await io.connect():
        sys.stderr.write(f"cannot connect to the line's I/O at {io.url}\n")
        return None
    return io


def _inputs_table(cfg, values: dict[str, int], outputs: dict[str, int | str]) -> str:
    rows = []
    for name, s in sorted(cfg.io.items(), key=lambda kv: (kv[1].table, kv[1].unit, kv[1].address)):
        v = values.get(name, outputs.get(name, ""))
        where = f"board {s.board} ch {s.address}" if s.table == "relay" else f"unit {s.unit} {s.table} {s.address}"
        rows.append(f"  {name:<20} {where:<34} {v}")
    return "\n".join(rows)


async def probe(args) -> int:
    """Connect and print every mapped input (and coil read-backs) live; --once prints one sample."""
    from sorter.plc.line_io import DeviceRefused, LinkDown
    cfg = _cfg(args)
    io = await _connect(cfg, args.plc)
    if io is None:
        return 1
    try:
        n = 0
        while True:
            t0 = time.monotonic()
            values = await io.read_inputs()
            rtt = (time.monotonic() - t0) * 1000
            outputs: dict[str, int | str] = {}
            for name, s in cfg.io.items():
                if s.table == "coil":
                    try:
                        outputs[name] = await io.read(name)
                    except (DeviceRefused, LinkDown) as exc:
                        outputs[name] = f"? ({type(exc).__name__})"
            head = f"{io.url}  ({len(values)} inputs in {rtt:.1f} ms)"
            text = head + "\n" + _inputs_table(cfg, values, outputs)
            if args.once:
                print(text)
                return 0
            sys.stdout.write("\033[H\033[J" + text + "\n" if sys.stdout.isatty() else text + "\n\n")
            sys.stdout.flush()
            n += 1
            await asyncio.sleep(args.interval)
    except (DeviceRefused, LinkDown) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        io.close()


async def watch(args) -> int:
    """Print every photo-eye (and other bit input) edge with its time and the encoder count."""
    from sorter.plc.line_io import DeviceRefused, LinkDown
    cfg = _cfg(args)
    io = await _connect(cfg, args.plc)
    if io is None:
        return 1
    enc = cfg.line.encoder_signal
    bits = [n for n, s in cfg.io.items() if s.table == "discrete_input"]
    t_start = time.monotonic()
    prev: dict[str, int] | None = None
    last_enc_print = 0.0
    edges = 0
    try:
        while args.seconds is None or time.monotonic() - t_start < args.seconds:
            values = await io.read_inputs()
            t = io.sample_mono.get("discrete_input", time.monotonic()) - t_start
            if prev is not None:
                for n in bits:
                    if values.get(n) != prev.get(n):
                        edges += 1
                        print(f"{t:10.4f} s  {n:<20} {'on ' if values[n] else 'off'}  encoder {values.get(enc, '')}")
            if t - last_enc_print >= args.encoder_every:
                last_enc_print = t
                print(f"{t:10.4f} s  {'encoder':<20}      count {values.get(enc, '')}")
            sys.stdout.flush()
            prev = values
            await asyncio.sleep(0.001)
    except (DeviceRefused, LinkDown) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        io.close()
    print(f"{edges} edges in {time.monotonic() - t_start:.1f} s")
    return 0


async def pulse(args) -> int:
    """Switch one diverter output on for --ms and off again; print what the device says."""
    from sorter.plc.line_io import DeviceRefused, LinkDown, NoAnswer
    cfg = _cfg(args)
    try:
        d = cfg.diverter(args.diverter)
    except KeyError:
        sys.stderr.write(f"no diverter {args.diverter!r}; the line has {', '.join(x.name for x in cfg.line.diverters)}\n")
        return 2
    side = args.side or next(iter(d.outputs))
    if side not in d.outputs:
        sys.stderr.write(f"{d.name} has no {side} output (it has {', '.join(d.outputs)})\n")
        return 2
    if args.ms > d.max_on_ms:
        sys.stderr.write(f"--ms {args.ms:.0f} is over {d.name}'s max_on_ms {d.max_on_ms:.0f}\n")
        return 2
    sig = d.outputs[side]
    io = await _connect(cfg, args.plc)
    if io is None:
        return 1
    rc = 0
    try:
        t0 = time.monotonic()
        await io.write(sig, True)
        t1 = time.monotonic()
        await asyncio.sleep(max(0.0, args.ms / 1000 - (t1 - t0)))
        t2 = time.monotonic()
        await io.write(sig, False)
        t3 = time.monotonic()
        print(f"{d.name} {side} ({sig}): on for {(t3 - t0) * 1000:.1f} ms "
              f"(write round trips {(t1 - t0) * 1000:.2f} ms / {(t3 - t2) * 1000:.2f} ms)")
        try:
            print(f"read back: {'ON' if await io.read(sig) else 'off'}")
        except NoAnswer as exc:
            print(f"read back: not possible ({exc})")
    except DeviceRefused as exc:
        sys.stderr.write(f"the device refused: {exc}\n")
        rc = 1
    except LinkDown as exc:
        sys.stderr.write(f"link: {exc}; the output's state is unknown — check it by hand\n")
        rc = 1
        try:
            await io.write(sig, False)
        except (LinkDown, DeviceRefused):
            pass
    finally:
        io.close()
    return rc


def register(sub: argparse._SubParsersAction, with_config) -> None:
    """Add this area's subcommands; `with_config(parser)` adds the common --config option."""
    p = sub.add_parser("plc", help="commission the line's I/O: probe, watch, pulse")
    psub = p.add_subparsers(dest="plc_cmd", required=True)
    url_help = "override the connection: tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1"

    sp = with_config(psub.add_parser("probe", help="connect and print every mapped input live"))
    sp.add_argument("--plc", help=url_help)
    sp.add_argument("--once", action="store_true", help="print one sample and exit")
    sp.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    sp.set_defaults(fn=lambda a: _run(probe(a)))

    sp = with_config(psub.add_parser("watch", help="print photo-eye edges and encoder counts with timestamps"))
    sp.add_argument("--plc", help=url_help)
    sp.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    sp.add_argument("--encoder-every", type=float, default=1.0, help="print the encoder count this often (s)")
    sp.set_defaults(fn=lambda a: _run(watch(a)))

    sp = with_config(psub.add_parser("pulse", help="fire one diverter output"))
    sp.add_argument("--plc", help=url_help)
    sp.add_argument("--diverter", required=True)
    sp.add_argument("--side", choices=["left", "right"])
    sp.add_argument("--ms", type=float, default=200, help="on time in ms (default %(default)s)")
    sp.set_defaults(fn=lambda a: _run(pulse(a)))


# ---------------------------------------------------------------- `sorter run` test modes
def add_run_test_args(parser: argparse.ArgumentParser) -> None:
    """For controller/cli/main.py's `run` parser."""
    parser.add_argument("--test-mode", metavar="fixed:CHUTE|round-robin",
                        help="commissioning: send every parcel to CHUTE, or to each chute in turn, whatever its reads")


def apply_run_test_args(cfg, args):
    """The config with --test-mode applied (plc.test_mode / plc.test_chute); exits 2 on a bad value."""
    mode = getattr(args, "test_mode", None)
    if not mode:
        return cfg
    if mode in ("round-robin", "round_robin"):
        upd = {"test_mode": "round_robin"}
    elif mode.startswith("fixed:"):
        chute = mode.split(":", 1)[1]
        if chute not in {c.id for c in cfg.line.chutes}:
            sys.stderr.write(f"--test-mode: no chute {chute!r}\n")
            raise SystemExit(2)
        upd = {"test_mode": "fixed", "test_chute": chute}
    else:
        sys.stderr.write("--test-mode: expected fixed:CHUTE or round-robin\n")
        raise SystemExit(2)
    return cfg.model_copy(update={"plc": cfg.plc.model_copy(update=upd)})
