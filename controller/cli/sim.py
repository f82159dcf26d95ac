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

from sorter.controller.config.line import Config
from sorter.controller.service.service import CTX, Service, child
from sorter.plc.sim.belt_frames import calibrate_sim_cameras
from sorter.plc.sim.frames import frames_main
from sorter.plc.sim.line import sim_line_main

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
    cfg = calibrate_sim_cameras(cfg)  # free-running sim cameras: their calibration, for the workers
    plan_kwargs = {"rate_pph": cfg.sim.rate_pph, "length_mm": tuple(cfg.sim.length_mm),
                   "belt_speed_mps": cfg.line.belt_speed_mps}
    line_conn, line_child = CTX.Pipe()
    line_proc = CTX.Process(target=child, name="sorter-sim-line", daemon=True,
                            args=(sim_line_main, cfg, seed, parcels, line_child, plan_kwargs))
    line_proc.start()
    frames_conn, frames_child = CTX.Pipe()
    frames_proc = CTX.Process(target=child, name="sorter-sim-frames", daemon=True,
                              args=(frames_main, cfg, seed, parcels, frames_child, plan_kwargs))
    frames_proc.start()
    _, modbus_port = _expect(line_conn, "ready", 30, "simulated line")
    _, frame_port = _expect(frames_conn, "ready", 30, "simulated cameras")

    done = threading.Event()
    counted = {"n": 0}

    def on_record(rec: dict) -> None:
        counted["n"] += 1
        if parcels is not None and counted["n"] >= parcels:
            done.set()

    free_q = "?free_running=1" if cfg.sim.camera_mode == "free_running" else ""
    sources = {c.name: f"tcp://127.0.0.1:{frame_port}/{c.source.removeprefix('sim://')}{free_q}"
               if c.source.startswith("sim://") else c.source for c in cfg.cameras}
    svc = Service(cfg, mode="sim", plc_url=f"tcp://127.0.0.1:{modbus_port}", camera_sources=sources,
                  token=token, record_hook=on_record)
    svc.start()
    api = None
    if serve_api:
        from sorter.controller.api.server import ApiServer
        api = ApiServer(svc, api_host, api_port)
        api.start()
    try:
        _wait_ready(svc, timeout=60)
        t0 = time.monotonic() + 0.3
        line_conn.send(("start", t0))
        frames_conn.send(("start", t0))
        bar = Progress(parcels or 0, progress)
        deadline = None
        while not done.wait(0.25):
            snap = svc.stats.snapshot()
            bar.show(counted["n"], snap["counts"]["outcomes"])
            svc.sim_status = {"seed": seed, "parcels": parcels, "recorded": counted["n"]}
            if parcels is not None:
                # the last parcel is inducted at plan time; give it the belt's length and the timeouts
                if deadline is None:
                    deadline = time.monotonic() + 3600
                if not line_proc.is_alive():
                    raise RuntimeError("the simulated line died")
        bar.show(counted["n"], svc.stats.snapshot()["counts"]["outcomes"], force=True)
        bar.close()
        if parcels is None:
            return None
        svc.writer.flush(10)
        line_conn.send(("report",))
        _, truth = _expect(line_conn, "report", 30, "simulated line")
        return {**summarise(svc, truth, parcels), "sim_cameras": _frames_report(frames_conn)}
    except KeyboardInterrupt:
        return None
    finally:
        if api is not None:
            api.stop()
        svc.stop()  # the controller first: its outputs go to the safe state while the line still answers
        for conn in (line_conn, frames_conn):
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for p in (line_proc, frames_proc):
            p.join(3)
            if p.is_alive():
                p.terminate()


def _expect(conn, kind: str, timeout: float, what: str):
    if not conn.poll(timeout):
        raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")
    msg = conn.recv()
    if msg[0] != kind:
        raise RuntimeError(f"{what}: expected {kind!r}, got {msg[0]!r}")
    return msg


def _frames_report(conn) -> dict | None:
    """What the simulated cameras sent (frames; free-running: frames with two parcels ...)."""
    try:
        conn.send(("report",))
        return _expect(conn, "report", 10, "simulated cameras")[1]
    except (OSError, EOFError, RuntimeError) as exc:
        log.warning("no report from the simulated cameras: %s", exc)
        return None


def _wait_ready(svc: Service, timeout: float) -> None:
    """Parcels start only once the controller polls the line and every camera is connected."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ts = svc.timing_status
        cams_up = all(h.up for h in svc.cameras.values())
        if ts.get("plc", {}).get("connected") and ts.get("counters", {}).get("polls", 0) > 50 and cams_up:
            return
        time.sleep(0.05)
    raise RuntimeError("the controller did not connect to the simulated line in time "
                       f"(timing: {svc.timing_status.get('plc')}, cameras: "
                       f"{[(h.name, h.up, h.last_error) for h in svc.cameras.values()]})")


def summarise(svc: Service, truth: dict, parcels: int) -> dict:
    snap = svc.stats.snapshot()
    recs = list(svc.store.recent(limit=max(parcels * 2, 10), since_wall=None))
    recs = [r for r in recs if r.get("run_id") == svc.run_id]
    outcomes = snap["counts"]["outcomes"]
    no_reason = sum(1 for r in recs if r["outcome"] != "sorted" and not r.get("reason"))
    # a record per parcel: the n-th induction the controller saw is the n-th parcel the line made
    unrecorded = max(0, truth["inducted"] - len(recs))
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
