"""`sorter sim`: the whole system on the simulated line.

The simulated line (Modbus server + physics, and the camera frame server) runs in processes of its
own; the controller reaches it only through Modbus and camera frames, as it would real hardware.
With --parcels N it runs N parcels and prints one JSON object that compares what the controller
recorded with the simulation's truth.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

from sorter.controller.app import App, SimWorld, StartError
from sorter.controller.config.line import Config
from sorter.controller.service.service import Service

log = logging.getLogger("sorter.sim")


def apply_overrides(cfg: Config, belt_speed: float | None, length: tuple[float, float] | None,
                    rate: float | None) -> Config:
    line, sim = cfg.line, cfg.sim
    if belt_speed is not None:
        line = line.model_copy(update={"belt_speed_mps": belt_speed})
    upd = {}
    if length is not None:
        upd["length_mm"] = length
    if rate is not None:
        upd["rate_pph"] = rate
    sim = sim.model_copy(update=upd)
    return cfg.model_copy(update={"line": line, "sim": sim})


class Progress:
    """A one-line progress bar on stderr (stdout stays clean for --json)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled and total > 0
        self.t0 = time.monotonic()
        self.last = 0.0

    def show(self, done: int, outcomes: dict, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and not force):
            return
        self.last = now
        width = 30
        frac = min(1.0, done / self.total)
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done * 3600 / max(now - self.t0, 1e-6)
        top = " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()) if v)
        sys.stderr.write(f"\r[{bar}] {done}/{self.total} {rate:7.0f} p/h  {top}\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_sim(cfg: Config, parcels: int | None, seed: int, api_host: str, api_port: int,
            serve_api: bool, progress: bool, token: str | None = None) -> dict | None:
    """Run the simulated line (endless, or `parcels` of them) under the wiring; None when stopped
    by a signal or when endless."""
    done = threading.Event()
    counted = {"n": 0}

    def on_record(rec: dict) -> None:
        counted["n"] += 1
        if parcels is not None and counted["n"] >= parcels:
            done.set()

    sim = SimWorld(cfg, seed, parcels)
    app = App(sim.cfg, mode="sim", token=token, api=(api_host, api_port) if serve_api else None, sim=sim,
              record_hook=on_record)
    app.handle_signals()
    try:
        app.start()
        svc = app.svc
        app.wait_ready(timeout=60)
        if app.stop_requested.is_set():
            return None
        sim.go()
        bar = Progress(parcels or 0, progress)
        deadline = None
        while not done.wait(0.25):
            if app.stop_requested.is_set():
                bar.close()
                return None
            # the published snapshot's counts: the statistics' own snapshot computes percentiles
            bar.show(counted["n"], ((svc.status() or {}).get("counts") or {}).get("outcomes") or {})
            svc.sim_status = {"seed": seed, "parcels": parcels, "recorded": counted["n"]}
            if parcels is not None:
                if not sim.alive():
                    raise StartError("the simulated line died")
                deadline = deadline or _finish_deadline(sim.cfg, parcels)
                if time.monotonic() > deadline:
                    log.error("%d of %d parcels recorded by the deadline; reporting what there is",
                              counted["n"], parcels)
                    break
        bar.show(counted["n"], svc.stats.snapshot()["counts"]["outcomes"], force=True)
        bar.close()
        if parcels is None:
            return None
        svc.writer.flush(10)
        return {**summarise(svc, sim.truth(), parcels), "sim_cameras": sim.cameras_report()}
    finally:
        app.stop()


def _finish_deadline(cfg: Config, parcels: int) -> float:
    """When a finite run must have recorded every parcel: the plan's induction time, the belt's
    length and the timeouts, twice over (a run that waits past it has lost a record)."""
    plan_s = parcels * 3600 / cfg.sim.rate_pph
    belt_s = cfg.line.end_mm / (cfg.line.belt_speed_mps * 1000)
    return time.monotonic() + 2 * (plan_s + belt_s) + 60


def summarise(svc: Service, truth: dict, parcels: int) -> dict:
    snap = svc.stats.snapshot()
    recs = list(svc.store.recent(limit=max(parcels * 2, 10), since_wall=None))
    recs = [r for r in recs if r.get("run_id") == svc.run_id]
    outcomes = snap["counts"]["outcomes"]
    no_reason = sum(1 for r in recs if r["outcome"] != "sorted" and not r.get("reason"))
    # a record per parcel: the n-th induction the controller saw is the n-th parcel the line made;
    # counted by distinct parcel, so that a duplicate cannot hide a missing record
    unrecorded = max(0, truth["inducted"] - len({r["parcel_id"] for r in recs}))
    return {
        "parcels": truth["inducted"],
        "recorded": len(recs),
        "outcomes": outcomes,
        "expected_sorted": truth["expected_sorted"],
        "mis_sorted": truth["mis_sorted"],
        # of the mis-sorted: in a chute it was not meant for (unsafe) / a sortable parcel rejected (safe)
        "wrong_chute": truth.get("wrong_chute"),
        "rejected_sortable": truth.get("rejected_sortable"),
        "unrecorded": unrecorded,
        "without_reason": no_reason,
        "throughput_pph": snap["throughput_pph"],
        "read_rate": snap["read_rate"],
        "decision_ms": {k: snap["decision_ms"].get(k) for k in ("p50", "p99")},
        "fire_error_ms": truth["fire_error_ms"] or {"p50": None, "p99": None, "max": None, "n": 0},
        "fire_error_ms_estimated": {k: snap["fire_error_ms"].get(k) for k in ("p50", "p99", "max")},
        "mis_sorts": truth["mis_sorts"][:20],
        "sim_faults": truth["faults"],
        "held_by_watchdog": truth.get("held", 0),
        "counters": svc.timing_status.get("counters", {}),
        "timing_policy": svc.timing_hello.get("policy"),
        # per camera as its worker reports it (read rate over its last parcels, decode times ...)
        "cameras": {name: {k: h.snapshot(True).get(k) for k in (
            "frames", "dropped", "reads", "decode_ms_p50", "decode_ms_p99", "read_rate", "read_rate_parcels")}
            for name, h in svc.cameras.items()},
        "alarms": sorted(svc.alarms.active),
    }


def print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
