"""The long fault drills, outside CI: the whole system on the simulated line (real Modbus TCP, camera
workers, the timing process, SQLite records) while a supervisor or the line does what takes time to
go wrong. Each prints what was lost; the target is always the same: every parcel that entered the
belt has exactly one record, none in a wrong chute, nothing inducted while the line must not induct.

    python bench/drills.py                       # the three line drills, then a 120-minute soak
    python bench/drills.py estop pause full      # the line drills only (a few minutes)
    python bench/drills.py soak --minutes 20     # a shorter soak

- estop: e-stop pressed mid-wave (parcels on every part of the belt), held 3 s, released, reset,
  five times at 12,000 parcels/h;
- pause: pause and resume under load, 3 s each, eight times at 12,000 parcels/h;
- full: a chute-full storm: every chute's full signal toggled at random, 100 ms to 1 s, for 30 s;
- soak: 10,000 parcels/h for --minutes; RSS, open files per process and the database size at the
  start and the end, the fire timing and the timing process's CPU over the whole run.

The truth is the simulated line's own (plc/sim/physics.py), never the controller's.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402
from bench.timing import cpu_s, processes  # noqa: E402


def harness(tmp: Path, parcels: int, rate_pph: float, seed: int, api=None, keep_records: bool = True,
            **overrides):
    from sorter.controller.config.load import load_config
    from sorter.controller.harness import SimHarness
    from sorter.controller.routing.manifest import Manifest
    from tests.conftest import write_line_config

    cfg = load_config(write_line_config(tmp, overrides={"sim.rate_pph": rate_pph, **overrides}))
    Manifest(cfg.routing.manifest).close()
    return cfg, SimHarness(cfg, parcels=parcels, seed=seed, api=api, keep_records=keep_records)


class WallScreen:
    """What a line has open for months: the status page polling `/api/status` once a second and one
    event stream, so the soak runs the API's long-lived paths too."""

    def __init__(self, base: str):
        self.base, self.stop = base, threading.Event()
        self.polls = self.poll_errors = self.events = self.sse_errors = self.largest = 0
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._poll, self._sse)]
        for t in self.threads:
            t.start()

    def _poll(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.base + "/api/status", timeout=10) as r:
                    self.largest = max(self.largest, len(r.read()))
                self.polls += 1
            except OSError:
                self.poll_errors += 1

    def _sse(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.base + "/api/events", timeout=30) as r:
                    for line in r:
                        if self.stop.is_set():
                            return
                        if line.startswith(b"data:"):
                            self.events += 1
            except OSError:
                if not self.stop.is_set():
                    self.sse_errors += 1
                    self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(35)


def wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def tally(cfg, h, truth: dict) -> dict:
    """What the records and the physics say, side by side."""
    assert h.svc.writer.flush(30)
    with sqlite3.connect(cfg.records.database) as c:
        rows = c.execute("SELECT run_id, parcel_id, outcome FROM parcels").fetchall()
    keys = {(r, p) for r, p, _ in rows}
    outcomes: dict[str, int] = {}
    for _, _, o in rows:
        outcomes[o] = outcomes.get(o, 0) + 1
    return {"inducted": truth["inducted"], "records": len(rows), "duplicates": len(rows) - len(keys),
            "lost": max(0, truth["inducted"] - len(keys)), "wrong_chute": truth["wrong_chute"],
            "outcomes": outcomes}


def induct_while_off(truth: dict, spans: list[tuple[float, float]]) -> int:
    """Parcels that entered the belt inside a span when induction had to be off (grace: 50 ms for
    the PLC's scan and the write on its way)."""
    n = 0
    for p in truth["parcels"]:
        t = p["induct_mono"]
        if any(a + 0.05 < t < b for a, b in spans):
            n += 1
    return n


# ------------------------------------------------------------------------------ the drills
def run_drill(tmp: Path, seed: int, disturb) -> dict:
    """12,000 parcels/h; once 20 are recorded, `disturb(cfg, h)` does its worst and returns what it
    adds to the tally; then induction pauses and the belt empties."""
    cfg, h = harness(tmp, 10_000, 12_000, seed=seed)
    try:
        h.start()
        wait(lambda: len(h.records) >= 20, 120)
        extra = disturb(cfg, h)
        h.svc.pause()
        truth = h.run_until_done(120)
        t = tally(cfg, h, truth)
    finally:
        h.stop()
    return {**t, **{k: (v(truth) if callable(v) else v) for k, v in extra.items()}}


def estop_mid_wave(cfg, h) -> dict:
    spans = []
    for _ in range(5):
        a = time.monotonic()
        h.force("estop_ok", 0)
        time.sleep(3.0)
        h.force("estop_ok", None)
        ok = wait(lambda: h.svc.reset("drill")[0], 10)
        spans.append((a, time.monotonic()))
        assert ok, "the reset was refused after the e-stop cleared"
        time.sleep(4.0)
    return {"inducted while stopped": lambda truth: induct_while_off(truth, spans)}


def pause_under_load(cfg, h) -> dict:
    spans = []
    for _ in range(8):
        a = time.monotonic()
        h.svc.pause()
        time.sleep(3.0)
        spans.append((a, time.monotonic()))
        h.svc.resume()
        time.sleep(3.0)
    return {"inducted while paused": lambda truth: induct_while_off(truth, spans)}


def chute_full_storm(cfg, h) -> dict:
    rnd = random.Random(7)
    chutes = [c for c in cfg.line.chutes if c.full_signal]
    end = time.monotonic() + 30
    toggles = 0
    while time.monotonic() < end:
        c = rnd.choice(chutes)
        h.force(c.full_signal, rnd.choice([1, None]))
        toggles += 1
        time.sleep(rnd.uniform(0.1, 1.0))
    for c in chutes:
        h.force(c.full_signal, None)
    return {"full toggles": toggles}


DRILLS = {"estop": (31, estop_mid_wave), "pause": (32, pause_under_load), "full": (33, chute_full_storm)}


def proc_stats(pid: int) -> tuple[float, int]:
    """RSS in MB and open file descriptors of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def soak(tmp: Path, minutes: float) -> None:
    rate = 10_000
    parcels = int(rate * minutes / 60) + 100
    # the records are counted, not kept: the service's RSS is the service's, not the bench's copy
    cfg, h = harness(tmp, parcels, rate, seed=41, api=("127.0.0.1", 0), keep_records=False)
    db = Path(cfg.records.database)
    samples = []
    page = None
    try:
        h.start()
        page = WallScreen(f"http://127.0.0.1:{h.app.api.port}")
        procs = processes(h)
        wait(lambda: h.n_records >= 50, 120)
        t0, c0 = time.monotonic(), {k: cpu_s(p) for k, p in procs.items()}
        samples.append(("start", {k: proc_stats(p) for k, p in procs.items()}, db.stat().st_size))
        end = t0 + minutes * 60
        # A row every twelfth of the run, so a leak shows as a slope rather than two points.
        every, next_sample = max(60.0, minutes * 5), t0 + max(60.0, minutes * 5)
        while time.monotonic() < end:
            time.sleep(min(60.0, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            print(f"[soak] {(now - t0) / 60:.0f} min: {h.n_records} records", flush=True)
            if next_sample <= now < end - 30:
                samples.append((f"{(now - t0) / 60:.0f} min", {k: proc_stats(p) for k, p in procs.items()},
                                db.stat().st_size))
                next_sample += every
        wall = time.monotonic() - t0
        c1 = {k: cpu_s(p) for k, p in procs.items()}
        samples.append(("end", {k: proc_stats(p) for k, p in procs.items()}, db.stat().st_size))
        h.svc.pause()
        truth = h.run_until_done(120)
        t = tally(cfg, h, truth)
        same = all(procs[k] == p for k, p in processes(h).items() if k in procs)
        counters = dict((h.svc.timing_status or {}).get("counters") or {})
    finally:
        if page:
            page.close()
        h.stop()
    names = list(procs)
    table(f"Soak: {minutes:.0f} min at {rate:,} parcels/h (RSS MB / open files per process; database MB)",
          ["when", *names, "database MB"],
          [[w, *(f"{s[n][0]:.0f} / {s[n][1]}" for n in names), f"{size / 1e6:.1f}"] for w, s, size in samples])
    table("Soak: CPU per process over the run, share of one core", names,
          [[f"{100 * (c1[k] - c0[k]) / wall:.1f} %" for k in names]])
    fe = truth.get("fire_error_ms") or {}
    table("Soak: what was lost", ["inducted", "records", "duplicates", "lost", "wrong chute", "fire p50 / p99 / p99.9 / max ms",
                                  "same processes all run"],
          [[t["inducted"], t["records"], t["duplicates"], t["lost"], t["wrong_chute"],
            " / ".join(f"{fe[k]:.3f}" if k in fe else "-" for k in ("p50", "p99", "p999", "max")), same]])
    print(f"outcomes: {t['outcomes']}")
    print(f"timing process: slow-link spells {counters.get('slow_link_spells')}, link losses "
          f"{counters.get('link_losses')}, full GC collections {counters.get('gc_full_collections')}, "
          f"longest GC pause {counters.get('gc_longest_pause_ms')} ms")
    print(f"status page: {page.polls} polls of /api/status, {page.poll_errors} failed; "
          f"{page.events} SSE events, {page.sse_errors} SSE errors; largest status {page.largest / 1e3:.1f} KB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="*", default=["estop", "pause", "full", "soak"],
                    choices=["estop", "pause", "full", "soak"])
    ap.add_argument("--minutes", type=float, default=120, help="how long the soak runs (default 120)")
    args = ap.parse_args()
    rows = []
    for name, (seed, disturb) in DRILLS.items():
        if name in args.which:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_drill(Path(tmp), seed, disturb)
            extra = {k: v for k, v in r.items() if k not in ("inducted", "records", "duplicates", "lost",
                                                             "wrong_chute", "outcomes")}
            rows.append([name, r["inducted"], r["records"], r["duplicates"], r["lost"], r["wrong_chute"],
                         ", ".join(f"{k} {v}" for k, v in extra.items()),
                         ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))])
            print(f"[drill] {name}: {r}", flush=True)
    if rows:
        table("Line drills at 12,000 parcels/h (truth: the simulated line)",
              ["drill", "inducted", "records", "duplicates", "lost", "wrong chute", "and", "outcomes"], rows)
    if "soak" in args.which:
        with tempfile.TemporaryDirectory() as tmp:
            soak(Path(tmp), args.minutes)


if __name__ == "__main__":
    main()
