"""Manifest import speed: `sorter manifest import` (the real import, with validation) beside a bare
`csv.reader` + `executemany` into a WITHOUT ROWID table, both on the same generated CSV in the same
run, and the route decision's latency on the manifest that import built. Prints markdown tables.

    python bench/manifest.py                 # 5,000,000 rows (waybill, town, carrier), ~5 minutes
    python bench/manifest.py --rows 500000   # a quick run

Targets (issue 12): >= 200,000 rows/s with validation on 5,000,000 rows; decision p99 <= 50 µs.
Compare with the baseline of the same run: these machines are shared and noisy (rows per CPU second
is printed too, which the other processes on the machine disturb less).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
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

# waybill shapes of the carriers a county centre sees, as plc/sim/waybills.py makes them (prefix,
# digits after it), with the carrier code a manifest names; the share of rows is the market share
SHAPES: list[tuple[str, str, int, float]] = [
    ("ZTO", "75", 12, 0.12), ("ZTO", "78", 12, 0.09), ("YTO", "YT", 13, 0.16), ("YUNDA", "31", 11, 0.08),
    ("YUNDA", "43", 13, 0.06), ("JT", "JT", 13, 0.12), ("STO", "77", 11, 0.12), ("SF", "SF", 13, 0.08),
    ("EMS", "1", 12, 0.07), ("CHINAPOST", "98", 11, 0.05), ("JD", "JDX", 12, 0.05),
]


def make_rows(n: int, towns: list[str], seed: int = 7) -> list[tuple[str, str, str]]:
    """n distinct (waybill, town, carrier) rows in random order. Serials are a multiplicative
    permutation of the row number, so they look random and never repeat within a shape."""
    rng = np.random.default_rng(seed)
    share = np.array([s[3] for s in SHAPES])
    shape_of = rng.choice(len(SHAPES), size=n, p=share / share.sum())
    town_of = rng.integers(0, len(towns), size=n)
    rows: list[tuple[str, str, str]] = []
    for k, (carrier, prefix, digits, _) in enumerate(SHAPES):
        idx = np.flatnonzero(shape_of == k)
        mod = 10 ** digits
        serial = (np.arange(len(idx), dtype=np.uint64) * np.uint64(7_919_003) + np.uint64(104_729)) % np.uint64(mod)
        fmt = f"{prefix}{{:0{digits}d}}"
        rows.extend((fmt.format(s), towns[t], carrier) for s, t in zip(serial.tolist(), town_of[idx].tolist()))
    order = rng.permutation(n)
    return [rows[i] for i in order.tolist()]


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("运单号,乡镇,快递公司\n")
        f.writelines(f"{w},{t},{c}\n" for w, t, c in rows)


def line_config(tmp: Path) -> Path:
    """The example line with its manifest and records in `tmp` (the routing files copied beside)."""
    for name in ("wenling-routes.yaml", "towns.yaml", "carriers.yaml"):
        (tmp / name).write_bytes((ROOT / "config" / name).read_bytes())
    text = (ROOT / "config/wenling-line1.yaml").read_text(encoding="utf-8")
    text = text.replace("manifest: ../var/manifest.db", "manifest: manifest.db")
    text = text.replace("database: ../var/records.db", "database: records.db")
    cfg = tmp / "line.yaml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bare_import(csv_path: Path, db_path: Path) -> tuple[int, float, float]:
    """The baseline: csv.reader + executemany into a WITHOUT ROWID table, no validation."""
    t0, c0 = time.perf_counter(), time.process_time()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE manifest (waybill TEXT PRIMARY KEY, town TEXT, carrier TEXT) WITHOUT ROWID")
    with open(csv_path, encoding="utf-8", newline="") as f, db:
        reader = csv.reader(f)
        next(reader)
        db.executemany("INSERT INTO manifest VALUES (?, ?, ?)", reader)
    n = db.execute("SELECT count(*) FROM manifest").fetchone()[0]
    db.close()
    return n, time.perf_counter() - t0, time.process_time() - c0


def sorter_import(cfg: Path, csv_path: Path) -> tuple[dict, float, float]:
    """`sorter manifest import --json` as a user runs it; (its report, wall s, CPU s)."""
    t0, c0 = time.perf_counter(), children_cpu()
    r = subprocess.run([sys.executable, "-m", "sorter", "manifest", "import", "--config", str(cfg), "--json",
                        str(csv_path)], capture_output=True, text=True, cwd=ROOT)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if r.returncode:
        raise SystemExit(f"sorter manifest import failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall, cpu


def decisions(cfg_path: Path, rows: list[tuple[str, str, str]], n: int) -> dict:
    """Route decisions for waybills of the manifest (two reads a parcel: the waybill and a product
    EAN-13), and a bare primary-key lookup of the same waybills; µs percentiles."""
    from sorter.controller.config.load import load_config
    from sorter.controller.routing.router import Router
    cfg = load_config(cfg_path)
    router = Router(cfg.routing.routes, cfg.routing.manifest, {c.id: c.alternate for c in cfg.line.chutes})
    rng = np.random.default_rng(3)
    picks = [rows[i] for i in rng.integers(0, len(rows), n).tolist()]
    for wb, _, _ in picks[:2000]:
        router.decide([("code128", wb), ("ean13", "6901234567892")])
    us = np.empty(n)
    sorted_n = right = 0
    for i, (wb, town, _) in enumerate(picks):
        reads = [("code128", wb), ("ean13", "6901234567892")]
        t0 = time.perf_counter_ns()
        d = router.decide(reads)
        us[i] = (time.perf_counter_ns() - t0) / 1e3
        sorted_n += d.outcome == "sorted"
        right += d.destination == town
    bare = sqlite3.connect(cfg.routing.manifest)
    bus = np.empty(n)
    for i, (wb, _, _) in enumerate(picks):
        t0 = time.perf_counter_ns()
        bare.execute("SELECT town FROM manifest WHERE waybill = ?", (wb,)).fetchone()
        bus[i] = (time.perf_counter_ns() - t0) / 1e3
    bare.close()
    return {"p50": pct(us, 50), "p99": pct(us, 99), "bare_p50": pct(bus, 50), "bare_p99": pct(bus, 99),
            "sorted": sorted_n, "right_town": right}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--keep", help="keep the CSV and databases in this folder")
    args = ap.parse_args()
    from sorter.controller.config.load import load_config
    towns = list(load_config(ROOT / "config/wenling-line1.yaml").sim.towns)
    n = args.rows
    print(f"# manifest import benchmark ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, {n:,} rows)")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        for old in ("manifest.db", "manifest.db-wal", "manifest.db-shm", "bare.db", "bare.db-wal", "bare.db-shm"):
            (tmp / old).unlink(missing_ok=True)
        t0 = time.perf_counter()
        rows = make_rows(n, towns)
        csv_path = tmp / "advice.csv"
        write_csv(csv_path, rows)
        gen_s = time.perf_counter() - t0
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {size_mb:.0f} MB CSV in {gen_s:.1f} s")
        cfg = line_config(tmp)

        bare_n, bare_s, bare_cpu = bare_import(csv_path, tmp / "bare.db")
        rep, wall, cpu = sorter_import(cfg, csv_path)
        assert bare_n == n, bare_n
        assert rep["imported"] == n and not rep["bad"] and not rep["error"], rep
        table(f"Manifest import: {n:,} rows (waybill, town, carrier), {size_mb:.0f} MB UTF-8 CSV",
              ["what", "rows/s", "seconds", "rows/CPU-s", "CPU s"], [
                  ["bare: csv.reader + executemany, WITHOUT ROWID (baseline)", f"{n / bare_s:,.0f}", f"{bare_s:.1f}",
                   f"{n / bare_cpu:,.0f}", f"{bare_cpu:.1f}"],
                  ["sorter manifest import (validation, upsert, WAL): its report", f"{n / rep['seconds']:,.0f}",
                   f"{rep['seconds']:.1f}", "", ""],
                  ["sorter manifest import: the whole command", f"{n / wall:,.0f}", f"{wall:.1f}",
                   f"{n / cpu:,.0f}", f"{cpu:.1f}"],
              ])
        d = decisions(cfg, rows, args.decisions)
        table(f"Route decision: {args.decisions:,} parcels, waybill + EAN-13 read, {n:,}-row manifest",
              ["what", "µs p50", "µs p99", "sorted", "town as advised"], [
                  ["Router.decide (carrier, manifest lookup, rules)", f"{d['p50']:.1f}", f"{d['p99']:.1f}",
                   f"{d['sorted']:,}", f"{d['right_town']:,}"],
                  ["bare SQLite: primary-key point lookup", f"{d['bare_p50']:.1f}", f"{d['bare_p99']:.1f}", "-", "-"],
              ])
        ok_import = n / rep["seconds"] >= 200_000
        print(f"\ntargets: import >= 200,000 rows/s with validation: {'met' if ok_import else 'NOT met'}; "
              f"decision p99 <= 50 µs: {'met' if d['p99'] <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
