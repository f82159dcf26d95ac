"""Benchmarks: each prints a table with a baseline measured in the same run (compare ratios, not
absolute numbers: these machines are shared and noisy).

    python bench/run.py                 # all
    python bench/run.py decode routing  # some
    python bench/run.py realphotos      # real images per family (../shared/realphotos), made codes
    python bench/run.py sim --parcels 1200 --rate 12000
    python bench/run.py manifest --rows 500000   # manifest import vs bare csv+executemany (bench/manifest.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402


def bench_decode(n: int) -> None:
    """Our decoder vs raw pyzbar on the simulated line's camera frames (one core)."""
    import cv2
    from pyzbar import pyzbar

    from sorter.vision.decode import decode
    from sorter.vision.labels import LabelSpec, render_frame, render_label
    from sorter.plc.sim.waybills import CARRIER_CODES, make_ean13, make_waybill

    cv2.setNumThreads(1)
    frames, truth = [], []
    for k in range(n):
        rng = np.random.default_rng(k)
        wb = make_waybill(CARRIER_CODES[k % len(CARRIER_CODES)], rng)
        spec = LabelSpec(waybill=wb, qr_text=f"{wb}|温岭" if k % 2 else None, ean13=make_ean13(rng) if k % 3 else None)
        frames.append(render_frame(render_label(spec, rng), rng))
        truth.append(wb)
    rows = []
    for name, fn in (("sorter decode (any angle)", lambda f: [c.text for c in decode(f)]),
                     ("raw pyzbar, full frame", lambda f: [s.data.decode("latin-1") for s in pyzbar.decode(f)])):
        ms, hits = [], 0
        for f, wb in zip(frames, truth):
            t0 = time.perf_counter()
            try:
                texts = fn(f)
            except Exception:  # noqa: BLE001 - raw pyzbar raises on some QR codes
                texts = []
            ms.append((time.perf_counter() - t0) * 1000)
            hits += wb in texts
        rows.append([name, n, f"{100 * hits / n:.1f}%", f"{pct(ms, 50):.1f}", f"{pct(ms, 99):.1f}", f"{max(ms):.1f}"])
    table("Decode: 1024x768 frames, one label at a random rotation", ["decoder", "frames", "waybill read", "ms p50", "ms p99", "ms max"], rows)


def bench_routing(n_rows: int, n_lookups: int) -> None:
    """Whole route decision (carrier, manifest lookup, rules) vs a bare SQLite primary-key lookup."""
    from sorter.controller.config.load import load_config
    from sorter.controller.routing.manifest import Manifest
    from sorter.controller.routing.router import Router
    from sorter.plc.sim.waybills import CARRIER_CODES, make_waybill

    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    towns = cfg.sim.towns
    rng = np.random.default_rng(7)
    rows = [(make_waybill(CARRIER_CODES[i % len(CARRIER_CODES)], rng), towns[i % len(towns)]) for i in range(n_rows)]
    with tempfile.TemporaryDirectory() as tmp:
        m = Manifest(Path(tmp) / "m.db")
        t0 = time.perf_counter()
        m.upsert(rows)
        import_s = time.perf_counter() - t0
        m.close()
        bare = sqlite3.connect(Path(tmp) / "bare.db")
        bare.execute("CREATE TABLE t (waybill TEXT PRIMARY KEY, town TEXT) WITHOUT ROWID")
        t0 = time.perf_counter()
        with bare:
            bare.executemany("INSERT INTO t VALUES (?, ?)", rows)
        bare_import_s = time.perf_counter() - t0
        router = Router(cfg.routing.routes, Path(tmp) / "m.db", {c.id: c.alternate for c in cfg.line.chutes})
        sample = [rows[int(i)] for i in rng.integers(0, n_rows, n_lookups)]
        ms_route, ms_bare = [], []
        for wb, _ in sample:
            reads = [("code128", wb), ("ean13", "6901234567892")]
            t0 = time.perf_counter()
            router.decide(reads)
            ms_route.append((time.perf_counter() - t0) * 1e6)
            t0 = time.perf_counter()
            bare.execute("SELECT town FROM t WHERE waybill = ?", (wb,)).fetchone()
            ms_bare.append((time.perf_counter() - t0) * 1e6)
    table(f"Routing: {n_rows:,}-row manifest", ["what", "rows/s import", "µs p50", "µs p99"], [
        ["sorter: manifest upsert + route decision", f"{n_rows / import_s:,.0f}", f"{pct(ms_route, 50):.1f}", f"{pct(ms_route, 99):.1f}"],
        ["bare SQLite: executemany + PK lookup", f"{n_rows / bare_import_s:,.0f}", f"{pct(ms_bare, 50):.1f}", f"{pct(ms_bare, 99):.1f}"],
    ])


def bench_tracking(n: int) -> None:
    """The real timing loop's cost per 1 kHz poll, driving a shift against the line physics on a
    virtual clock (tests/virtual_line.py): how much faster than the belt the loop's logic runs."""
    from sorter.plc.sim.parcels import ParcelPlan
    from tests.conftest import load_line_config
    from tests.virtual_line import VirtualLine

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_line_config(Path(tmp), sim__rate_pph=12000)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        run = VirtualLine(cfg, ParcelPlan(cfg, 1), n).run()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    shift_s = run.line.now_s
    fe = run.fire_errors_ms()
    table(f"Tracking: {n} parcels at 12,000 p/h, the real timing loop on a virtual clock, 1 kHz polls",
          ["shift (s)", "CPU (s)", "speed-up", "mis-sorted", "fire err p50 ms", "p99", "max"],
          [[f"{shift_s:.0f}", f"{cpu:.1f}", f"{shift_s / wall:.1f}x", len(run.mis_sorts()),
            f"{pct(fe, 50):.3f}" if fe else "-", f"{pct(fe, 99):.3f}" if fe else "-",
            f"{max(fe, key=abs):.3f}" if fe else "-"]])


def bench_sim(parcels: int, rate: float) -> None:
    """The whole system on the simulated line: real Modbus TCP, camera workers, records."""
    with tempfile.TemporaryDirectory() as tmp:
        from tests.test_sim_e2e import sim_config
        cfg = sim_config(Path(tmp))
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "sorter", "sim", "--config", str(cfg), "--parcels", str(parcels),
                            "--rate", str(rate), "--seed", "1", "--json"], cwd=ROOT, capture_output=True, text=True)
        wall = time.monotonic() - t0
    if r.returncode not in (0, 1) or not r.stdout.strip():
        print(r.stderr[-2000:])
        return
    res = json.loads(r.stdout)
    o = res["outcomes"]
    table(f"sorter sim --parcels {parcels} --rate {rate:.0f} (run {wall:.0f} s)",
          ["parcels", "sorted", "expected", "mis-sorted", "unrecorded", "p/h", "decision ms p50/p99",
           "fire error ms p50/p99/max (truth)", "estimated p50/p99/max", "timing policy"],
          [[res["parcels"], o["sorted"], res["expected_sorted"], res["mis_sorted"], res["unrecorded"],
            res["throughput_pph"], f'{res["decision_ms"]["p50"]:.1f}/{res["decision_ms"]["p99"]:.1f}',
            "/".join(f'{res["fire_error_ms"][k]:.2f}' for k in ("p50", "p99", "max")),
            "/".join(f'{res["fire_error_ms_estimated"][k]:.2f}' for k in ("p50", "p99", "max")),
            res.get("timing_policy")]])
    print("\noutcomes: " + ", ".join(f"{k} {v}" for k, v in o.items() if v))


ALL = ["decode", "routing", "tracking", "sim", "vision", "realphotos", "plc", "manifest"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="*", default=ALL)
    ap.add_argument("--parcels", type=int, default=600)
    ap.add_argument("--rate", type=float, default=12000)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rows", type=int, default=500_000)
    args = ap.parse_args()
    print(f"# sorter benchmarks  ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')})")
    if "decode" in args.which:
        bench_decode(args.frames)
    if "routing" in args.which:
        bench_routing(args.rows, 20_000)
    if "tracking" in args.which:
        bench_tracking(300)
    if "sim" in args.which:
        bench_sim(args.parcels, args.rate)
    # each area's own benchmark script (bench/<area>.py), run as it is
    for area in ("vision", "realphotos", "routing", "plc", "manifest"):
        script = ROOT / "bench" / f"{area}.py"
        # the manifest import on --rows (bench/manifest.py alone: 5,000,000)
        extra = ["--rows", str(args.rows)] if area == "manifest" else []
        if area in args.which and script.exists() or (args.which == ALL and script.exists()):
            subprocess.run([sys.executable, str(script), *extra], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
