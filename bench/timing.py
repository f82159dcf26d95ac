"""Timing at full speed and idle: the whole system on the simulated line (real Modbus TCP, camera
workers, records), the diverters' fire timing as the simulated device saw the writes arrive, and the
CPU each process used, sampled from /proc over the measured window (utime + stime).

    python bench/timing.py                    # idle, 10,000 and 20,000 parcels/h
    python bench/timing.py --parcels 300      # shorter runs
    python bench/timing.py --idle-only        # the two idle rows only
    python bench/timing.py --poll-hz 1000,500 # the loaded rows at each input poll rate

The idle row is this run's baseline: what each process costs with nothing on the belt. Targets
(issue 11): fire timing p99 <= 1 ms and p99.9 <= 10 ms at 20,000 p/h; the timing process <= 25 %
of one core at 10,000 p/h and <= 10 % idle.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def processes(h) -> dict[str, int]:
    svc, sim = h.svc, h.sim
    out = {"timing": svc.timing_proc.pid, "sim line": sim.line_proc.pid, "sim cameras": sim.frames_proc.pid,
           "service": os.getpid()}
    for name, p in svc.camera_procs.items():
        out[f"camera {name}"] = p.pid
    return out


def measure(label: str, rate_pph: float, parcels: int, speed_mps: float, length: tuple[int, int],
            window_s: float | None = None, **overrides) -> dict:
    from sorter.controller.config.load import load_config
    from sorter.controller.harness import SimHarness
    from sorter.controller.routing.manifest import Manifest
    from tests.conftest import write_line_config

    with tempfile.TemporaryDirectory() as tmp:
        path = write_line_config(Path(tmp), overrides={"sim.rate_pph": max(rate_pph, 1000),
                                                       "line.belt_speed_mps": speed_mps,
                                                       "sim.length_mm": list(length), **overrides})
        cfg = load_config(path)
        Manifest(cfg.routing.manifest).close()
        h = SimHarness(cfg, parcels=parcels, seed=11)
        try:
            h.start()
            procs = processes(h)
            if rate_pph == 0:  # idle: the one parcel has gone, nothing else comes
                h.run_until_done(120)
                time.sleep(1.0)
            t0, c0 = time.monotonic(), {k: cpu_s(p) for k, p in procs.items()}
            if rate_pph == 0:
                time.sleep(window_s or 30)
                truth = h.truth()
            else:
                truth = h.run_until_done(parcels * 3600 / rate_pph + 120)
            wall = time.monotonic() - t0
            c1 = {k: cpu_s(p) for k, p in procs.items()}
            records = list(h.records)
            counters = dict((h.svc.timing_status or {}).get("counters") or {})
        finally:
            h.stop()
    fe = [r["fire_error_ms"] for r in records if r.get("fire_error_ms") is not None]
    truth_fe = truth.get("fire_error_ms") or {}
    return {"label": label, "wall": wall, "cpu": {k: (c1[k] - c0[k]) / wall for k in procs},
            "records": len(records), "inducted": truth["inducted"], "wrong": truth["wrong_chute"],
            "fe_truth": truth_fe, "fe_est": fe,
            "gc": (counters.get("gc_full_collections"), counters.get("gc_longest_pause_ms"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parcels", type=int, default=1000)
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--idle-only", action="store_true", help="only the idle rows (idle_poll_hz off and on)")
    ap.add_argument("--poll-hz", default="", help="comma-separated plc.poll_hz values to run the loaded rows at "
                                                  "(default: the example config's), e.g. 1000,500")
    args = ap.parse_args()
    polls = [float(x) for x in args.poll_hz.split(",") if x.strip()] or [None]
    runs = [measure("idle belt, polled at poll_hz (baseline)", 0, 1, 2.0, (150, 600), args.idle_s,
                    **{"plc.idle_poll_hz": None}),
            measure("idle belt, idle_poll_hz as configured", 0, 1, 2.0, (150, 600), args.idle_s),
            ]
    if not args.idle_only:
        for hz in polls:
            at = {"plc.poll_hz": hz} if hz else {}
            tag = f", polled at {hz:.0f} Hz" if hz else ""
            runs += [measure(f"10,000 p/h, 2.0 m/s, 150-600 mm{tag}", 10_000, args.parcels, 2.0, (150, 600), **at),
                     measure(f"20,000 p/h, 2.5 m/s, 150-300 mm{tag}", 20_000, args.parcels, 2.5, (150, 300), **at)]
    names = list(runs[0]["cpu"])
    table(f"CPU per process, share of one core (sampled from /proc over the run; {os.cpu_count()} cores)",
          ["run", "window s", *names],
          [[r["label"], f"{r['wall']:.0f}", *(f"{100 * r['cpu'].get(n, 0):.1f} %" for n in names)] for r in runs])
    rows = []
    for r in runs[2:]:
        t, fe = r["fe_truth"], r["fe_est"]
        rows.append([r["label"], r["inducted"], r["records"], r["wrong"],
                     *(f"{t[k]:.3f}" if k in t else "-" for k in ("p50", "p99", "p999", "max")),
                     f"{pct(fe, 99):.3f}" if fe else "-", len(fe),
                     "-" if r["gc"][0] is None else f"{r['gc'][0]} / {r['gc'][1]:.2f}"])
    if not rows:
        return
    table("Fire timing error, ms (truth: when the simulated device got the write, against the parcel's true "
          "position; estimated: the controller's own figure)",
          ["run", "inducted", "records", "wrong chute", "p50", "p99", "p99.9", "max", "estimated p99", "fires",
           "timing GC: full collections / longest pause ms"], rows)


if __name__ == "__main__":
    main()
