"""The service process: starts the timing process and the camera workers, relays reads, keeps the
records and the statistics, serves the API and the status page, and supervises everything.

Start order (stop in reverse): record writer -> timing process -> camera workers -> relay and
supervisor threads -> API. Child processes are spawned, never forked from this threaded process.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import queue
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np

from sorter.controller.timing.alarms import Alarms
from sorter.controller.config.line import Config
from sorter.controller.records.store import RecordStore, RecordWriter
from sorter.controller.routing.router import Router
from sorter.controller.service.stats import LineStats
from sorter.controller.timing.loop import timing_main
from sorter.controller.config.vision import noread_dir
from sorter.vision.worker import camera_main

log = logging.getLogger("sorter.service")
CTX = mp.get_context("spawn")


def child(target, *args, **kwargs) -> None:
    """Entry of every child process: Ctrl-C is for the service, which stops its children in order
    (the timing process first puts the outputs in their safe state)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    target(*args, **kwargs)


class CameraHealth:
    def __init__(self, name: str):
        self.name = name
        self.up = False
        self.frames = 0
        self.reads = 0
        self.dropped = 0
        self.restarts = 0
        self.extra: dict = {}  # what the worker reports of itself (camera settings, rates ...)
        self.frame_times: deque[float] = deque(maxlen=200)
        self.decode_ms: deque[float] = deque(maxlen=500)
        self.last_error = ""

    def snapshot(self, process_alive: bool) -> dict:
        now = time.monotonic()
        recent = [t for t in self.frame_times if t > now - 10]
        ms = np.array(self.decode_ms) if self.decode_ms else None
        return {
            "name": self.name, "alive": bool(process_alive and self.up), "frames": self.frames,
            "fps": round(len(recent) / 10, 2), "dropped": self.dropped, "reads": self.reads,
            "decode_ms_p50": None if ms is None else round(float(np.percentile(ms, 50)), 1),
            "decode_ms_p99": None if ms is None else round(float(np.percentile(ms, 99)), 1),
            "restarts": self.restarts, "error": self.last_error, **self.extra,
        }


class Service:
    def __init__(self, cfg: Config, mode: str = "run", plc_url: str | None = None,
                 camera_sources: dict[str, str] | None = None, token: str | None = None,
                 record_hook=None):
        self.cfg, self.mode, self.token = cfg, mode, token
        self.plc_url = plc_url or cfg.plc.url
        self.camera_sources = camera_sources or {c.name: c.source for c in cfg.cameras}
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.alarms = Alarms()
        self.stats = LineStats()
        self.started_mono = time.monotonic()
        self.timing_status: dict = {}
        self.timing_hello: dict = {}
        self.recent: deque[dict] = deque(maxlen=20)
        self.cameras = {c.name: CameraHealth(c.name) for c in cfg.cameras}
        self.camera_procs: dict[str, mp.Process] = {}
        self.camera_cmds: dict[str, mp.Queue] = {}
        self.record_hook = record_hook
        self.records_seen = 0
        self.stopping = threading.Event()
        self._send_lock = threading.Lock()
        self._reload_result: queue.Queue = queue.Queue()
        self._snapshot: dict = {}
        self.sim_status: dict | None = None
        self.lookup = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        Path(self.cfg.records.database).parent.mkdir(parents=True, exist_ok=True)
        self.router = Router.from_config(self.cfg)  # loads and watches the routing files
        from sorter.controller.routing.lookup import LookupService
        # asks the carriers' real-time service about waybills missing from the manifest (if configured)
        self.lookup = LookupService.from_config(self.cfg, self.router)
        self._routing_lock = threading.Lock()
        self.store = RecordStore(self.cfg.records.database)
        self.writer = RecordWriter(self.cfg.records.database)
        self._start_timing()
        self.cam_q = CTX.Queue(maxsize=256)
        for cam in self.cfg.cameras:
            self._start_camera(cam.name)
        for target, name in ((self._timing_reader, "timing-reader"), (self._camera_relay, "camera-relay"),
                             (self._supervise, "supervisor")):
            threading.Thread(target=target, name=name, daemon=True).start()
        self._rebuild_snapshot()

    def _start_timing(self) -> None:
        self.timing_conn, child_end = CTX.Pipe(duplex=True)
        self.timing_proc = CTX.Process(target=child, name="sorter-timing",
                                       args=(timing_main, self.cfg, child_end, self.run_id, self.plc_url), daemon=True)
        self.timing_proc.start()
        child_end.close()

    def _start_camera(self, name: str) -> None:
        cam = next(c for c in self.cfg.cameras if c.name == name)
        cmds = self.camera_cmds.setdefault(name, CTX.Queue(maxsize=256))
        p = CTX.Process(target=child, name=f"sorter-camera-{name}", daemon=True,
                        args=(camera_main, name, self.camera_sources[name], list(cam.symbologies), cam.nice, self.cam_q,
                              cam.max_frame_age_ms / 1000, cmds),
                        kwargs={"config": cam, "keep_dir": str(noread_dir(self.cfg, cam))})
        p.start()
        self.camera_procs[name] = p

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.send(("stop",))
        self.timing_proc.join(3)
        if self.timing_proc.is_alive():
            self.timing_proc.terminate()
        for p in self.camera_procs.values():
            p.terminate()
        for p in self.camera_procs.values():
            p.join(2)
        if self.lookup is not None:
            self.lookup.close()
        self.writer.close()
        self.store.close()

    # ---------------------------------------------------------------- messaging
    def send(self, *msgs: tuple) -> None:
        data = pickle.dumps(list(msgs), protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            try:
                self.timing_conn.send_bytes(data)
            except (OSError, ValueError):
                pass  # the timing process is down; the supervisor restarts it

    def _timing_reader(self) -> None:
        while not self.stopping.is_set():
            conn = self.timing_conn
            try:
                if not conn.poll(0.2):
                    continue
                batch = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                time.sleep(0.2)
                continue
            for msg in batch:
                kind = msg[0]
                if kind == "record":
                    self._on_record(msg[1])
                elif kind == "status":
                    self.timing_status = msg[1]
                elif kind == "hello":
                    self.timing_hello = msg[1]
                elif kind == "reload_result":
                    self._reload_result.put((msg[1], msg[2]))

    def _on_record(self, rec: dict) -> None:
        scan = rec.pop("_scan_mono", None)
        for key in [k for k in rec if k.startswith("_")]:
            rec.pop(key)
        if scan is not None:
            # the cameras count reads per parcel and their read rate by the parcels' scan windows
            for q in self.camera_cmds.values():
                try:
                    q.put_nowait(("parcel", rec["run_id"], rec["parcel_id"], scan[0], scan[1]))
                except queue.Full:
                    pass
        if rec.get("outcome") == "no_read" and scan is not None:
            # ask every camera to keep what it saw of the parcel, for a supervisor to key in by hand
            for q in self.camera_cmds.values():
                try:
                    q.put_nowait(("keep", rec["run_id"], rec["parcel_id"], scan[0], scan[1]))
                except queue.Full:
                    pass
        self.writer.submit(rec)
        self.stats.add(rec)
        self.recent.appendleft(rec)
        self.records_seen += 1
        if self.record_hook is not None:
            self.record_hook(rec)

    def _camera_relay(self) -> None:
        while not self.stopping.is_set():
            try:
                msg = self.cam_q.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            kind, name = msg[0], msg[1]
            h = self.cameras.get(name)
            if h is None:
                continue
            if kind == "idle":
                self.send(("watermark", name, msg[2]))
            elif kind == "health":
                h.extra = dict(msg[2])
                # a worker may report a slow drift (dirty lens, failing light) as an alarm text
                if h.extra.get("alarm"):
                    self.alarms.raise_(f"camera_{name}_health", f"camera {name}: {h.extra['alarm']}")
                else:
                    self.alarms.clear(f"camera_{name}_health")
            elif kind == "frame":
                _, _, t_cap, ms, _shape, codes, dropped, watermark = msg
                # a code is (symbology, text, polygon[, offset_mm along the belt when calibrated])
                self.send(*[("read", name, t_cap, c[0], c[1], c[3] if len(c) > 3 else None) for c in codes],
                          ("watermark", name, watermark))
                if self.lookup is not None:
                    self.lookup.submit_codes(codes)
                h.frames += 1
                h.reads += len(codes)
                h.dropped = dropped
                h.frame_times.append(time.monotonic())
                h.decode_ms.append(ms)
            elif kind == "camera_up":
                h.up, h.last_error = True, ""
                self.alarms.clear(f"camera_{name}")
            elif kind == "camera_down":
                h.up, h.last_error = False, msg[2]
                self.alarms.raise_(f"camera_{name}", f"camera {name}: {msg[2]}; reconnecting")

    def _supervise(self) -> None:
        next_routes = 0.0
        while not self.stopping.wait(0.5):
            if time.monotonic() >= next_routes:
                next_routes = time.monotonic() + 1.0
                self._watch_routes()
            if not self.timing_proc.is_alive():
                self.alarms.raise_("timing_process", f"timing process died (exit {self.timing_proc.exitcode}); restarted")
                self._start_timing()
            for name, p in list(self.camera_procs.items()):
                if not p.is_alive():
                    self.cameras[name].restarts += 1
                    self.cameras[name].up = False
                    self.alarms.raise_(f"camera_{name}", f"camera worker {name} died (exit {p.exitcode}); restarted")
                    self._start_camera(name)
            self._rebuild_snapshot()

    # ---------------------------------------------------------------- status
    def _rebuild_snapshot(self) -> None:
        ts = self.timing_status
        s = self.stats.snapshot()
        chute_counts = s.get("chute_counts", {})
        full, disabled = ts.get("full", {}), set(ts.get("disabled", []))
        plc = ts.get("plc", {"url": self.plc_url, "connected": False, "errors": 0})
        alarms = self.alarms.list() + ts.get("alarms", [])
        if not ts:
            state = "starting"
        elif not plc.get("connected"):
            state = "fault"
        elif ts.get("paused"):
            state = "paused"
        else:
            state = "running"
        self._snapshot = {
            "line": {"name": self.cfg.line.name, "state": state, "mode": self.mode, "plc": plc,
                     "belt_speed_mps": ts.get("belt_speed_mps"),
                     "uptime_s": round(time.monotonic() - self.started_mono, 1),
                     "routing_version": ts.get("routing_version", ""), "run_id": self.run_id,
                     "timing_policy": ts.get("policy", ""), "tracked": ts.get("tracked", 0),
                     "counters": ts.get("counters", {})},
            "counts": s["counts"], "throughput_pph": s["throughput_pph"], "read_rate": s["read_rate"],
            "fire_error_ms": s["fire_error_ms"], "decision_ms": s["decision_ms"],
            "chutes": [{"id": c.id, "name": c.name, "count": chute_counts.get(c.id, 0),
                        "full": bool(full.get(c.id)), "enabled": c.id not in disabled}
                       for c in self.cfg.line.chutes],
            "cameras": [h.snapshot(self.camera_procs.get(n) is not None and self.camera_procs[n].is_alive())
                        for n, h in self.cameras.items()],
            "alarms": alarms,
            "recent": list(self.recent),
            "records": {"written": self.writer.written, "queued": self.writer.queue_depth},
            "lookup": self.lookup.stats() if self.lookup is not None else None,
        }
        if self.sim_status is not None:
            self._snapshot["sim"] = self.sim_status

    def status(self) -> dict:
        return self._snapshot

    # ---------------------------------------------------------------- control (API)
    def set_chute_enabled(self, chute_id: str, enabled: bool) -> bool:
        if chute_id not in {c.id for c in self.cfg.line.chutes}:
            return False
        self.send(("chute_enabled", chute_id, enabled))
        return True

    def pause(self) -> None:
        self.send(("pause", True))

    def resume(self) -> None:
        self.send(("pause", False))

    def reload_routes(self) -> tuple[bool, str]:
        """Reload the routing files now (API, SIGHUP). Parsing happens here, in the service process;
        the timing process only swaps in the new table between two parcels."""
        with self._routing_lock:
            ok, text = self.router.reload()
            self._routing_outcome(ok, text)
        return ok, text

    def _watch_routes(self) -> None:
        """A routing file changed on disk: load it (the old table stays if the new one is bad)."""
        with self._routing_lock:
            result = self.router.reload_if_changed()
            if result is not None:
                self._routing_outcome(*result)

    def _routing_outcome(self, ok: bool, text: str) -> None:
        if ok:
            self.alarms.clear("routes")
            self.send(("routing_state", self.router.state))
            log.info("routing: %s", text)
        else:
            self.alarms.raise_("routes", f"routing files refused, the previous version stays in force: {text}")
