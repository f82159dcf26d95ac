"""Routing benchmark: a big manifest's import, the whole route decision, and the controller's memory,
each beside a bare SQLite baseline measured in the same run. Prints markdown tables.

    python bench/routing.py [--rows 5000000] [--decisions 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import table  # noqa: E402

TEMPLATES = ("75{:012d}", "YT{:013d}", "JT{:013d}", "SF{:013d}", "77{:011d}", "31{:011d}", "JD{:013d}", "1{:012d}")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_rows(n: int, towns: list[str]) -> list[tuple[str, str]]:
    ids = np.random.default_rng(7).permutation(n)
    k = len(TEMPLATES)
    return [(TEMPLATES[i % k].format(i // k), towns[i % len(towns)]) for i in ids.tolist()]


def child(args) -> None:
    """One controller-like process: a Router on the manifest, decisions, RSS; JSON on stdout."""
    from sorter.controller.config.load import load_config
    from sorter.controller.routing.router import Router
    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    base = rss_mb()
    router = Router(cfg.routing.routes, args.manifest, {c.id: c.alternate for c in cfg.line.chutes})
    n_rows = router.manifest.count()
    rng = random.Random(3)
    k = len(TEMPLATES)
    if n_rows:
        picks = [rng.randrange(n_rows) for _ in range(args.decisions)]
        wbs = [TEMPLATES[i % k].format(i // k) for i in picks]
    else:
        wbs = [TEMPLATES[i % k].format(i) for i in range(args.decisions)]
    reads = [[("code128", wb), ("ean13", "6901234567892"), ("qrcode", f"https://x.cn/q?no={wb}")] for wb in wbs]
    for r in reads[:2000]:
        router.decide(r)
    us = np.empty(len(reads))
    sorted_n = 0
    for i, r in enumerate(reads):
        t0 = time.perf_counter_ns()
        d = router.decide(r)
        us[i] = (time.perf_counter_ns() - t0) / 1e3
        sorted_n += d.outcome == "sorted"
    bare = sqlite3.connect(args.manifest)
    bus = np.empty(len(wbs))
    for i, wb in enumerate(wbs):
        t0 = time.perf_counter_ns()
        bare.execute("SELECT town FROM manifest WHERE waybill = ?", (wb,)).fetchone()
        bus[i] = (time.perf_counter_ns() - t0) / 1e3
    print(json.dumps({"rows": n_rows, "rss_mb": rss_mb(), "rss_before_mb": base, "sorted": sorted_n,
                      "p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
                      "bare_p50": float(np.percentile(bus, 50)), "bare_p99": float(np.percentile(bus, 99))}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--manifest")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from sorter.controller.config.load import load_config
    from sorter.controller.routing.manifest import Manifest
    cfg = load_config(ROOT / "config/wenling-line1.yaml")
    n = args.rows
    print(f"# routing benchmark ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {n:,} rows)")
    with tempfile.TemporaryDirectory(dir=ROOT / "var" if (ROOT / "var").is_dir() else None) as tmp:
        tmp = Path(tmp)
        rows = make_rows(n, list(cfg.sim.towns))
        csv_path = tmp / "advice.csv"
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            f.write("运单号,乡镇\n")
            f.writelines(f"{w},{t}\n" for w, t in rows)
        size_mb = csv_path.stat().st_size / 1e6

        m = Manifest(tmp / "manifest.db", cache_mb=256)
        c0 = time.process_time()
        rep = m.import_csv(csv_path)
        imp_cpu = time.process_time() - c0
        m.close()
        assert rep.imported == n and not rep.bad_count, rep.summary()

        bare = sqlite3.connect(tmp / "bare.db")
        bare.execute("CREATE TABLE manifest (waybill TEXT PRIMARY KEY, town TEXT) WITHOUT ROWID")
        t0, c0 = time.perf_counter(), time.process_time()
        with bare:
            bare.executemany("INSERT INTO manifest VALUES (?, ?)", rows)
        bare_s, bare_cpu = time.perf_counter() - t0, time.process_time() - c0
        bare.close()
        del rows

        # rows per CPU second too: on a shared (loaded) machine the wall-clock figure mostly
        # measures the other processes
        table(f"Manifest import: {n:,} rows ({size_mb:.0f} MB CSV)",
              ["what", "rows/s", "seconds", "rows/CPU-s", "CPU s"], [
            ["sorter manifest import (CSV parse + validation + upsert, WAL)", f"{rep.rows_per_s:,.0f}",
             f"{rep.seconds:.1f}", f"{n / imp_cpu:,.0f}", f"{imp_cpu:.1f}"],
            ["bare SQLite: executemany of the same rows (already in memory)", f"{n / bare_s:,.0f}", f"{bare_s:.1f}",
             f"{n / bare_cpu:,.0f}", f"{bare_cpu:.1f}"],
        ])

        def run_child(db: Path) -> dict:
            r = subprocess.run([sys.executable, __file__, "--child", "--manifest", str(db), "--decisions",
                                str(args.decisions)], capture_output=True, text=True, cwd=ROOT)
            if r.returncode:
                raise SystemExit(r.stderr)
            return json.loads(r.stdout)

        empty = tmp / "empty.db"
        Manifest(empty).close()
        full = run_child(tmp / "manifest.db")
        none = run_child(empty)
        table(f"Route decision ({args.decisions:,} parcels, 3 reads each, {n:,}-row manifest)",
              ["what", "µs p50", "µs p99", "controller RSS MB"], [
                  ["sorter: Router.decide (carrier, manifest lookup, rules)", f"{full['p50']:.1f}", f"{full['p99']:.1f}",
                   f"{full['rss_mb']:.0f}"],
                  ["sorter: same, empty manifest (all no_route)", f"{none['p50']:.1f}", f"{none['p99']:.1f}",
                   f"{none['rss_mb']:.0f}"],
                  ["bare SQLite: primary-key point lookup", f"{full['bare_p50']:.1f}", f"{full['bare_p99']:.1f}", "-"],
              ])
        print(f"\nRSS with the manifest minus without: {full['rss_mb'] - none['rss_mb']:+.0f} MB; "
              f"decisions sorted: {full['sorted']}/{args.decisions}")


if __name__ == "__main__":
    main()
