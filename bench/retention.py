"""Retention vs the record writer: how long a record takes to be committed (submit -> flush) while
the nightly purge deletes old rows, against the same writer with no purge (the baseline, same run).

    .venv/bin/python bench/retention.py [--old 200000] [--batch 500] [--pause-ms 50]

The writer submits one record every 20 ms (3x a line at 60,000 parcels/h) and waits for each to be
committed; the purge deletes `--old` records of 500 days ago in batches of `--batch` rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402
from sorter.controller.config.retention import RetentionConfig  # noqa: E402
from sorter.controller.records.retention import DAY_S, Retention  # noqa: E402
from sorter.controller.records.store import RecordStore, RecordWriter  # noqa: E402


def record(pid: int, ended: float) -> dict:
    return {"run_id": "bench", "parcel_id": pid, "induct_wall": ended - 3, "decided_wall": ended - 2,
            "ended_wall": ended, "length_mm": 300.0, "reads": [{"camera": "top", "symbology": "code128",
                                                                   "text": f"SF{pid:012d}"}],
            "waybill": f"SF{pid:012d}", "carrier": "SF", "destination": "泽国镇", "chute": "C06",
            "actual_chute": "C06", "outcome": "sorted", "reason": "", "routing_version": "v1",
            "fire_error_ms": 0.3, "decision_ms": 2.0}


def writer_latencies(db: Path, first_pid: int, until: threading.Event, min_s: float) -> list[float]:
    w = RecordWriter(db)
    out, pid, t_end = [], first_pid, time.monotonic() + min_s
    try:
        while not until.is_set() or time.monotonic() < t_end:
            t0 = time.perf_counter()
            w.submit(record(pid, time.time()))
            w.flush(timeout=60)
            out.append((time.perf_counter() - t0) * 1000)
            pid += 1
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - t0)))
    finally:
        w.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--pause-ms", type=float, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "records.db"
        old = time.time() - 500 * DAY_S
        with RecordStore(db) as store:
            for start in range(0, args.old, 10_000):
                store.write_many([record(i, old + i) for i in range(start, min(args.old, start + 10_000))])
        done = threading.Event()
        done.set()
        base = writer_latencies(db, 10_000_000, done, 10.0)  # the baseline: no purge

        done.clear()
        result: dict = {}

        def purge():
            t0 = time.monotonic()
            result["deleted"] = Retention(db, None, RetentionConfig(records_days=400, batch_rows=args.batch,
                                                                    pause_ms=args.pause_ms)).purge()
            result["seconds"] = time.monotonic() - t0
            done.set()

        th = threading.Thread(target=purge)
        th.start()
        during = writer_latencies(db, 20_000_000, done, 0.0)
        th.join()
    rows = [[name, len(v), f"{pct(v, 50):.1f}", f"{pct(v, 99):.1f}", f"{max(v):.1f}"]
            for name, v in (("writer alone (baseline)", base), ("writer during the purge", during))]
    table(f"record commit latency, ms (purge of {result['deleted']['parcels']:,} rows in batches of {args.batch}, "
          f"{args.pause_ms:.0f} ms apart: {result['seconds']:.1f} s, "
          f"{result['deleted']['parcels'] / result['seconds']:,.0f} rows/s)",
          ["writer", "records", "p50", "p99", "max"], rows)


if __name__ == "__main__":
    main()
