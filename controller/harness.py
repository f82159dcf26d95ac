"""The whole system on the simulated line, under a test's or a benchmark's control: the simulated
line and camera processes, the service (timing process, camera workers, records), and hooks to
pull the line's plug (`outage`), force an input (`force`) and read the truth.

It runs the same processes as `sorter sim`; it differs only in what it lets the caller do mid-run.
"""

from __future__ import annotations

import threading
import time

from sorter.controller.config.line import Config
from sorter.controller.service.service import CTX, Service
from sorter.plc.sim.belt_frames import calibrate_sim_cameras
from sorter.plc.sim.frames import frames_main
from sorter.plc.sim.line import sim_line_main


class SimHarness:
    def __init__(self, cfg: Config, parcels: int, seed: int = 1):
        self.cfg, self.n, self.seed = calibrate_sim_cameras(cfg), parcels, seed
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.svc: Service | None = None
        self.t0: float | None = None

    def _expect(self, conn, kind: str, timeout: float):
        if not conn.poll(timeout):
            raise RuntimeError(f"no {kind!r} within {timeout} s")
        msg = conn.recv()
        if msg[0] != kind:
            raise RuntimeError(f"expected {kind!r}, got {msg[0]!r}")
        return msg

    def start(self, ready_timeout: float = 60) -> None:
        cfg = self.cfg
        kw = {"rate_pph": cfg.sim.rate_pph, "length_mm": tuple(cfg.sim.length_mm),
              "belt_speed_mps": cfg.line.belt_speed_mps}
        self.line_conn, child = CTX.Pipe()
        self.line_proc = CTX.Process(target=sim_line_main, daemon=True, args=(cfg, self.seed, self.n, child, kw))
        self.line_proc.start()
        self.frames_conn, fchild = CTX.Pipe()
        self.frames_proc = CTX.Process(target=frames_main, daemon=True, args=(cfg, self.seed, self.n, fchild, kw))
        self.frames_proc.start()
        _, self.modbus_port = self._expect(self.line_conn, "ready", 30)
        _, frame_port = self._expect(self.frames_conn, "ready", 30)
        free_q = "?free_running=1" if cfg.sim.camera_mode == "free_running" else ""
        sources = {c.name: f"tcp://127.0.0.1:{frame_port}/{c.source.removeprefix('sim://')}{free_q}"
                   if c.source.startswith("sim://") else c.source for c in cfg.cameras}
        self.svc = Service(cfg, mode="sim", plc_url=f"tcp://127.0.0.1:{self.modbus_port}",
                           camera_sources=sources, record_hook=self._on_record)
        self.svc.start()
        end = time.monotonic() + ready_timeout
        while time.monotonic() < end:
            ts = self.svc.timing_status
            if ts.get("plc", {}).get("connected") and ts.get("counters", {}).get("polls", 0) > 50 and \
                    all(h.up for h in self.svc.cameras.values()):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the controller did not get ready: {self.svc.timing_status.get('plc')}")
        self.t0 = time.monotonic() + 0.3
        self.line_conn.send(("start", self.t0))
        self.frames_conn.send(("start", self.t0))

    def _on_record(self, rec: dict) -> None:
        with self.lock:
            self.records.append(rec)

    def outage(self, seconds: float) -> None:
        """The I/O module disappears for `seconds` (server closed, connections reset), then returns."""
        self.line_conn.send(("outage", seconds))
        self._expect(self.line_conn, "outage_done", seconds + 30)

    def force(self, name: str, value: int | None) -> None:
        self.line_conn.send(("force", name, value))

    def truth(self) -> dict:
        self.line_conn.send(("report",))
        return self._expect(self.line_conn, "report", 30)[1]

    def run_until_done(self, timeout: float) -> dict:
        """Wait until every planned parcel has entered (or been held back), landed and been recorded."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            time.sleep(1.0)
            tr = self.truth()
            if tr["inducted"] + tr["held"] >= self.n and tr["landed"] >= tr["inducted"] and \
                    len(self.records) >= tr["inducted"]:
                time.sleep(0.5)
                return self.truth()
        return self.truth()

    def stop(self) -> None:
        if self.svc is not None:
            self.svc.stop()
        for conn in (getattr(self, "line_conn", None), getattr(self, "frames_conn", None)):
            try:
                conn.send(("stop",))
            except (OSError, AttributeError):
                pass
        for p in (getattr(self, "line_proc", None), getattr(self, "frames_proc", None)):
            if p is not None:
                p.join(3)
                if p.is_alive():
                    p.terminate()
