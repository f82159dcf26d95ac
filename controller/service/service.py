"""The service process's core: the timing process and the camera workers it supervises, the reads
it relays between them, the records, alarms and statistics it keeps, and the snapshot the API serves.

Its parts are started by the wiring (`sorter.controller.app`) in one list and stopped in reverse:
records -> routing -> timing process -> camera workers -> supervisor (-> API). Child processes are
spawned, never forked from this threaded process, and die with it (`service/processes.py`).
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from sorter.controller.config.line import Config
from sorter.controller.config.routing import manifest_inbox_folder
from sorter.controller.config.vision import noread_dir
from sorter.controller.records.store import RecordStore, RecordWriter
from sorter.controller.routing.inbox import ManifestInbox
from sorter.controller.routing.router import Router
from sorter.controller.service.camera_health import CameraHealth
from sorter.controller.service.processes import CTX, spawn, stop_process
from sorter.controller.service.stats import LineStats
from sorter.controller.timing.alarms import Alarms
from sorter.controller.timing.process import timing_main
from sorter.messages import (CameraDown, CameraHealthReport, CameraIdle, CameraUp, FrameReads, Hello, InstallRouting,
                             KeepFrames, ParcelWindow, Read, Record, SetChuteEnabled, SetPaused, Stop, TimingStatus,
                             Watermark)
from sorter.vision.worker import camera_main

log = logging.getLogger("sorter.service")
TIMING_STOP_S = 5   # the timing process puts the outputs in their safe state, then ends
CAMERA_STOP_S = 3


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
        self.stopping = threading.Event()
        self._send_lock = threading.Lock()
        self._cameras_stopped = threading.Event()
        self._snapshot: dict = {}
        self.sim_status: dict | None = None
        self.lookup = None
        self.inbox: ManifestInbox | None = None
        self._routing_lock = threading.Lock()

    # ---------------------------------------------------------------- parts (the wiring starts them in order)
    def open_records(self) -> None:
        Path(self.cfg.records.database).parent.mkdir(parents=True, exist_ok=True)
        self.store = RecordStore(self.cfg.records.database)
        self.writer = RecordWriter(self.cfg.records.database)

    def close_records(self) -> None:
        self.writer.close()  # writes what is still queued
        self.store.close()

    def open_routing(self) -> None:
        self.router = Router.from_config(self.cfg)  # loads and watches the routing files
        from sorter.controller.routing.lookup import LookupService
        # asks the carriers' real-time service about waybills missing from the manifest (if configured)
        self.lookup = LookupService.from_config(self.cfg, self.router)

        # carriers' pre-advice dropped as files (SFTP, or the simulated carriers) is imported here
        sim = self.mode == "sim"  # the simulated carriers rename each file into place whole: no settling time
        folder = manifest_inbox_folder(self.cfg.routing, sim=sim)
        if folder is not None:
            self.inbox = ManifestInbox(folder, self.cfg.routing.manifest, settle_s=0 if sim else 1.0)
            self._inbox_stop = threading.Event()
            # a thread of its own: a file of millions of rows takes tens of seconds to import
            self.inbox_thread = threading.Thread(target=self._watch_inbox, name="manifest-inbox", daemon=True)
            self.inbox_thread.start()

    def close_routing(self) -> None:
        if self.inbox is not None:
            self._inbox_stop.set()
            self.inbox_thread.join(60)  # an import in progress is finished, not cut
        if self.lookup is not None:
            self.lookup.close()

    def _watch_inbox(self) -> None:
        while not self._inbox_stop.wait(0.5):
            for r in self.inbox.poll():
                if r.status == "refused":
                    first = r.why.splitlines()[0] if r.why else ""
                    self.alarms.raise_("manifest_inbox", f"advice file {r.name} refused: {first} "
                                                         f"(details in {r.moved_to}.why)")
                elif r.status == "done":
                    self.alarms.clear("manifest_inbox")
        self.inbox.close()

    def start_timing(self) -> None:
        self.timing_conn, child_end = CTX.Pipe(duplex=True)
        self.timing_proc = spawn("sorter-timing", timing_main, self.cfg, child_end, self.run_id, self.plc_url)
        child_end.close()
        # one reader per timing process: it ends when the process has ended and its pipe is drained,
        # so the records the process sends while it shuts down are all written
        self.timing_reader = threading.Thread(target=self._timing_reader, args=(self.timing_conn,),
                                              name="timing-reader", daemon=True)
        self.timing_reader.start()

    def stop_timing(self) -> None:
        self.send(Stop())
        stop_process(self.timing_proc, TIMING_STOP_S, "the timing process")
        self.timing_reader.join(5)
        self.timing_conn.close()

    def start_cameras(self) -> None:
        self.cam_q = CTX.Queue(maxsize=256)
        for cam in self.cfg.cameras:
            self._start_camera(cam.name)
        self.camera_relay = threading.Thread(target=self._camera_relay, name="camera-relay", daemon=True)
        self.camera_relay.start()

    def stop_cameras(self) -> None:
        for p in self.camera_procs.values():
            p.terminate()
        for name, p in self.camera_procs.items():
            stop_process(p, CAMERA_STOP_S, f"camera worker {name}")
        self._cameras_stopped.set()
        self.camera_relay.join(2)

    def start_supervisor(self) -> None:
        self.supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self.supervisor.start()
        self._rebuild_snapshot()

    def stop_supervisor(self) -> None:
        self.stopping.set()  # no more restarts: the parts below stop in order
        self.supervisor.join(5)

    def _start_camera(self, name: str) -> None:
        cam = next(c for c in self.cfg.cameras if c.name == name)
        cmds = self.camera_cmds.setdefault(name, CTX.Queue(maxsize=256))
        self.camera_procs[name] = spawn(
            f"sorter-camera-{name}", camera_main, name, self.camera_sources[name], list(cam.symbologies), cam.nice,
            self.cam_q, cam.max_frame_age_ms / 1000, cmds, config=cam, keep_dir=str(noread_dir(self.cfg, cam)))

    # ---------------------------------------------------------------- messaging
    def send(self, *msgs) -> None:
        data = pickle.dumps(list(msgs), protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            try:
                self.timing_conn.send_bytes(data)
            except (OSError, ValueError):
                pass  # the timing process is down; the supervisor restarts it

    def _timing_reader(self, conn) -> None:
        while True:
            try:
                batch = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the process ended and everything it sent has been read
            for msg in batch:
                kind = type(msg)
                if kind is Record:
                    self._on_record(msg.record)
                elif kind is TimingStatus:
                    self.timing_status = msg.status
                elif kind is Hello:
                    self.timing_hello = msg.info

    def _on_record(self, rec: dict) -> None:
        scan = rec.pop("_scan_mono", None)
        for key in [k for k in rec if k.startswith("_")]:
            rec.pop(key)
        if scan is not None:
            # the cameras count reads per parcel and their read rate by the parcels' scan windows
            for q in self.camera_cmds.values():
                try:
                    q.put_nowait(ParcelWindow(rec["run_id"], rec["parcel_id"], scan[0], scan[1]))
                except queue.Full:
                    pass
        if rec.get("outcome") == "no_read" and scan is not None:
            # ask every camera to keep what it saw of the parcel, for a supervisor to key in by hand
            for q in self.camera_cmds.values():
                try:
                    q.put_nowait(KeepFrames(rec["run_id"], rec["parcel_id"], scan[0], scan[1]))
                except queue.Full:
                    pass
        self.writer.submit(rec)
        self.stats.add(rec)
        self.recent.appendleft(rec)
        if self.record_hook is not None:
            self.record_hook(rec)

    def _camera_relay(self) -> None:
        while not self._cameras_stopped.is_set():
            try:
                msg = self.cam_q.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            h = self.cameras.get(msg.camera)
            if h is None:
                continue
            kind, name = type(msg), msg.camera
            if kind is CameraIdle:
                self.send(Watermark(name, msg.mono))
            elif kind is CameraHealthReport:
                h.extra = dict(msg.health)
                # a worker may report a slow drift (dirty lens, failing light) as an alarm text
                if h.extra.get("alarm"):
                    self.alarms.raise_(f"camera_{name}_health", f"camera {name}: {h.extra['alarm']}")
                else:
                    self.alarms.clear(f"camera_{name}_health")
            elif kind is FrameReads:
                codes = msg.codes
                # a code is (symbology, text, polygon[, offset_mm along the belt when calibrated])
                self.send(*[Read(name, c[0], c[1], msg.capture_mono, c[3] if len(c) > 3 else None) for c in codes],
                          Watermark(name, msg.watermark))
                if self.lookup is not None:
                    self.lookup.submit_codes(codes)
                h.frames += 1
                h.reads += len(codes)
                h.dropped = msg.dropped
                h.frame_times.append(time.monotonic())
                h.decode_ms.append(msg.decode_ms)
            elif kind is CameraUp:
                h.up, h.last_error = True, ""
                self.alarms.clear(f"camera_{name}")
            elif kind is CameraDown:
                h.up, h.last_error = False, msg.error
                self.alarms.raise_(f"camera_{name}", f"camera {name}: {msg.error}; reconnecting")

    def _supervise(self) -> None:
        next_routes = 0.0
        while not self.stopping.wait(0.5):
            if time.monotonic() >= next_routes:
                next_routes = time.monotonic() + 1.0
                self._watch_routes()
            if not self.timing_proc.is_alive():
                self.alarms.raise_("timing_process", f"timing process died (exit {self.timing_proc.exitcode}); restarted")
                self.timing_reader.join(1)
                self.start_timing()
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
        self.send(SetChuteEnabled(chute_id, enabled))
        return True

    def pause(self) -> None:
        self.send(SetPaused(True))

    def resume(self) -> None:
        self.send(SetPaused(False))

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
            self.send(InstallRouting(self.router.state))
            log.info("routing: %s", text)
        else:
            self.alarms.raise_("routes", f"routing files refused, the previous version stays in force: {text}")
