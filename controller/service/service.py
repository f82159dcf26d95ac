"""The service process's core: the timing process and the camera workers it supervises, the reads
it relays between them, the records, alarms and statistics it keeps, and the snapshot the API serves.

Its parts are started by the wiring (`sorter.controller.app`) in one list and stopped in reverse:
records -> routing -> timing process -> camera workers -> supervisor (-> API). Child processes are
spawned, never forked from this threaded process, and die with it (`service/processes.py`).
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

from sorter.controller.config.line import Config
from sorter.controller.config.routing import manifest_inbox_folder
from sorter.controller.config.vision import noread_dir
from sorter.controller.records.journal import RESTARTED, fault_record
from sorter.controller.records.store import RecordStore, RecordWriter
from sorter.controller.records.writer import close_open_journal, drop_latch_mark, take_latch_mark
from sorter.controller.routing import last_good
from sorter.controller.routing.inbox import ManifestInbox
from sorter.controller.routing.router import Router, config_paths
from sorter.controller.routing.router import _signature as files_signature
from sorter.controller.routing.routes import RoutesError
from sorter.controller.routing.routes.safety import FORCE_HINT, unsafe
from sorter.controller.service.alarm_book import AlarmBook
from sorter.controller.service.camera_health import CameraHealth
from sorter.controller.service.processes import CTX, spawn, stop_process
from sorter.controller.service.stats import LineStats
from sorter.controller.service.status_cache import StatusCache
from sorter.controller.timing.alarms import Alarms
from sorter.controller.timing.process import timing_main
from sorter.messages import (CameraDown, CameraHealthReport, CameraIdle, CameraUp, FrameReads, Hello, Inducted,
                             InstallRouting, KeepFrames, ParcelWindow, Read, Record, ResetLine, SetChuteEnabled,
                             SetPaused, SetTestMode, SilenceBuzzer, Stop, TimingStatus, Watermark)
from sorter.vision.worker import camera_main

log = logging.getLogger("sorter.service")


def _safe_first(router: Router) -> Router:
    """`router`, when its table may be the first in force: one with no rules or no default (an
    empty or cut-short file) is refused as a bad file is (RoutesError), never sorted on silently."""
    problems = unsafe(router.table)
    if problems:
        router.close()
        raise RoutesError([*problems, FORCE_HINT])
    return router
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
        self.alarm_book = AlarmBook()   # their life and history (saved once the records are open)
        self.chute_emptied: dict[str, tuple[float, int, str]] = {}  # chute -> (wall, count then, who)
        self.stats = LineStats()
        self.started_mono = time.monotonic()
        self.timing_status: dict = {}
        self.timing_status_seq = 0  # TimingStatus messages received (service/watchdog.py)
        self.retention = None  # the nightly purge (records/retention.py), started by the wiring
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
        self.published = StatusCache()  # the snapshot as the API serves it: JSON made once per change
        self.sim_status: dict | None = None
        self.lookup = None
        self.inbox: ManifestInbox | None = None
        self._routing_lock = threading.Lock()
        self.router: Router | None = None
        self.routing_error: str | None = None  # why there is no routing table at all
        self._refused_sig: tuple | None = None  # the files as they were when last refused
        # the journal: parcels on the belt whose records have not come yet (timing process -> here)
        self._journal_lock = threading.Lock()
        self.open_parcels: dict[int, float | None] = {}
        self.max_pid = 0  # a restarted timing process numbers its parcels on from here
        self.latch_seq: int | None = None  # ... and counts the latch's head edges on from here
        self.timing_starts = 0
        self.journal_faults = {"previous_run": 0, "timing_restart": 0}
        self._db_errors_seen = 0
        # a site's parts (site database forwarder, MQTT, uploads; sorter.controller.app attaches them)
        self.site_parts: dict[str, object] = {}

    # ---------------------------------------------------------------- parts (the wiring starts them in order)
    def open_records(self) -> None:
        Path(self.cfg.records.database).parent.mkdir(parents=True, exist_ok=True)
        # parcels that were on the belt when the last run ended without their records
        self.journal_faults["previous_run"] = len(close_open_journal(self.cfg.records.database, RESTARTED))
        # after a crash, the latch counts on from where the last run had accounted for every parcel:
        # the ones that crossed the eye since (its last ~0.1 s, or while nothing ran) get records
        self.latch_seq = take_latch_mark(self.cfg.records.database)
        if self.latch_seq is not None:
            log.warning("the last run ended without a clean stop: parcels the latch counted since head edge "
                        "%d will be recorded as crossed unseen", self.latch_seq)
        self.store = RecordStore(self.cfg.records.database)
        self.alarm_book.save = self.store.save_alarm
        self.writer = RecordWriter(self.cfg.records.database)

    def close_records(self) -> None:
        if self.writer.close():  # writes what is still queued
            drop_latch_mark(self.cfg.records.database)  # a clean stop: nothing crossed unaccounted
        self.store.close()

    def open_routing(self) -> None:
        try:
            self.router = _safe_first(Router.from_config(self.cfg))  # loads and watches the routing files
            last_good.keep(self.cfg, self.router.state)
        except RoutesError as exc:
            self._start_on_last_good("\n".join(exc.problems))
        self._open_lookup()

        # carriers' pre-advice dropped as files (SFTP, or the simulated carriers) is imported here
        sim = self.mode == "sim"  # the simulated carriers rename each file into place whole: no settling time
        folder = manifest_inbox_folder(self.cfg.routing, sim=sim)
        if folder is not None:
            self.inbox = ManifestInbox(folder, self.cfg.routing.manifest, settle_s=0 if sim else 1.0)
            self._inbox_stop = threading.Event()
            # a thread of its own: a file of millions of rows takes tens of seconds to import
            self.inbox_thread = threading.Thread(target=self._watch_inbox, name="manifest-inbox", daemon=True)
            self.inbox_thread.start()

    def _start_on_last_good(self, problems: str) -> None:
        """The routing files are refused at start: run on the tables last run with, or not at all
        (the timing process holds the line `faulted`, saying why), until the files are repaired."""
        first = problems.splitlines()[0] if problems else ""
        kept = last_good.load_kept(self.cfg)
        if kept is None:
            self.routing_error = f"routing files refused and no last good table kept: {first}"
            self.alarms.raise_("routes", self.routing_error, "routes.none_kept", error=first)
            log.error("%s", problems)
            return
        state, kept_wall = kept
        self.router = Router.from_config(self.cfg, state=state)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(kept_wall))
        self.alarms.raise_("routes", f"routing files refused at start ({first}); sorting on the last good "
                                     f"table, version {state.version} of {when}", "routes.last_good",
                           error=first, version=state.version, when=when)
        log.error("routing files refused at start, running on version %s: %s", state.version, problems)

    def _open_lookup(self) -> None:
        if self.router is None:
            return
        from sorter.controller.routing.lookup import LookupService
        # asks the carriers' real-time service about waybills missing from the manifest (if configured)
        self.lookup = LookupService.from_config(self.cfg, self.router)

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
                                                         f"(details in {r.moved_to}.why)", "manifest_inbox.refused",
                                       file=r.name, error=first, why=f"{r.moved_to}.why")
                elif r.status == "done":
                    self.alarms.clear("manifest_inbox")
        self.inbox.close()

    def start_timing(self) -> None:
        self.timing_conn, child_end = CTX.Pipe(duplex=True)
        self.timing_starts += 1
        # the tables go with it (it reads no routing file: a bad one on disk cannot crash-loop it)
        routing = self.router.state if self.router is not None else (self.routing_error or "no routing table")
        self.timing_proc = spawn("sorter-timing", timing_main, self.cfg, child_end, self.run_id, self.plc_url,
                                 routing, self.max_pid + 1, self.latch_seq)
        child_end.close()
        # one reader per timing process: it ends when the process has ended and its pipe is drained,
        # so the records the process sends while it shuts down are all written
        self.timing_reader = threading.Thread(target=self._timing_reader, args=(self.timing_conn,),
                                              name="timing-reader", daemon=True)
        self.timing_reader.start()

    def drain(self) -> None:
        """Induction off, and the parcels in flight tracked to their chutes (plc.drain_s at most),
        while the cameras still read: the first step of a stop."""
        drain_s = self.cfg.plc.drain_s
        if drain_s <= 0 or not self.timing_proc.is_alive():
            return
        self.send(Stop(drain_s=drain_s))
        self.timing_proc.join(drain_s + TIMING_STOP_S)

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
                elif kind is Inducted:
                    with self._journal_lock:
                        self.open_parcels[msg.parcel_id] = msg.induct_wall
                        self.max_pid = max(self.max_pid, msg.parcel_id)
                        if msg.latch_seq is not None:
                            self.latch_seq = msg.latch_seq
                    self.writer.open(msg.run_id, msg.parcel_id, msg.induct_wall, msg.latch_seq)
                elif kind is TimingStatus:
                    self.timing_status = msg.status
                    self.timing_status_seq += 1  # the loop's progress: what systemd's watchdog is fed from
                elif kind is Hello:
                    self.timing_hello = msg.info

    def _on_record(self, rec: dict) -> None:
        with self._journal_lock:
            if rec.get("run_id") == self.run_id and isinstance(rec.get("parcel_id"), int):
                self.open_parcels.pop(rec["parcel_id"], None)
                self.max_pid = max(self.max_pid, rec["parcel_id"])
            seq = rec.get("_latch_seq")
            if seq is not None and seq != self.latch_seq:
                self.latch_seq = seq
                self.writer.mark_latch(seq)  # a parcel recorded unseen moves the count on too
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
        if rec.get("outcome") in ("no_read", "multi_read") and scan is not None:
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
        mqtt = self.site_parts.get("mqtt")
        if mqtt is not None:
            mqtt.on_record(rec)

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
                    detail = h.extra.get("alarm_detail")
                    self.alarms.raise_(f"camera_{name}_health", f"camera {name}: {h.extra['alarm']}",
                                       f"camera_health.{detail}" if detail else None, camera=name,
                                       **(h.extra.get("alarm_params") or {}))
                else:
                    self.alarms.clear(f"camera_{name}_health")
            elif kind is FrameReads:
                codes = msg.codes
                # a code is (symbology, text, polygon[, offset_mm along the belt when calibrated[, weak]])
                self.send(*[Read(name, c[0], c[1], msg.capture_mono, c[3] if len(c) > 3 else None,
                                 bool(c[4]) if len(c) > 4 else False) for c in codes],
                          Watermark(name, msg.watermark))
                if self.lookup is not None:
                    self.lookup.submit_codes(codes)
                h.frame_done(time.monotonic(), msg.dropped)
                h.reads += len(codes)
                h.decode_ms.append(msg.decode_ms)
                share = h.drop_share()
                if share is not None and h.status(True) == "dropping":
                    self.alarms.raise_(f"camera_{name}_drops", f"camera {name}: {share:.0%} of its frames dropped "
                                                               "(decoding cannot keep up: CPU starved or too slow)",
                                       "camera_drops.share", camera=name, share=f"{share:.0%}")
                elif share is not None:
                    self.alarms.clear(f"camera_{name}_drops")
            elif kind is CameraUp:
                h.up, h.last_error = True, ""
                self.alarms.clear(f"camera_{name}")
            elif kind is CameraDown:
                h.up, h.last_error = False, msg.error
                self.alarms.raise_(f"camera_{name}", f"camera {name}: {msg.error}; reconnecting",
                                   "camera_down.error", camera=name, error=msg.error)

    def _supervise(self) -> None:
        next_routes = 0.0
        while not self.stopping.wait(0.5):
            if time.monotonic() >= next_routes:
                next_routes = time.monotonic() + 1.0
                self._watch_routes()
            if not self.timing_proc.is_alive():
                self.alarms.raise_("timing_process", f"timing process died (exit {self.timing_proc.exitcode}); restarted",
                                   "timing_process.died", exit=self.timing_proc.exitcode)
                self.timing_reader.join(5)  # everything it sent before it died is in
                self._fault_orphans("the timing process died while the parcel was on the belt")
                self.start_timing()
            self._check_records()
            for name, p in list(self.camera_procs.items()):
                if not p.is_alive():
                    self.cameras[name].restarts += 1
                    self.cameras[name].up = False
                    self.alarms.raise_(f"camera_{name}", f"camera worker {name} died (exit {p.exitcode}); restarted",
                                       "camera_down.died", camera=name, exit=p.exitcode)
                    self._start_camera(name)
            self._rebuild_snapshot()

    def _check_records(self) -> None:
        """The record database cannot be written (disk full, read-only, locked): the records wait in
        memory, in order, and the writer retries; the alarm says so until they are all in."""
        w = self.writer
        if w.db_errors > self._db_errors_seen and w.queue_depth:
            self.alarms.raise_("records", f"the record database cannot be written ({w.last_error}); "
                                          f"{w.queue_depth} records wait in memory and are retried",
                               "records.unwritable", error=w.last_error, waiting=w.queue_depth)
        elif not w.queue_depth:
            self.alarms.clear("records")
        self._db_errors_seen = w.db_errors if not w.queue_depth else self._db_errors_seen

    def _fault_orphans(self, reason: str) -> None:
        """The parcels the dead timing process was tracking: nobody knows where they went."""
        with self._journal_lock:
            orphans, self.open_parcels = self.open_parcels, {}
        for pid, induct_wall in sorted(orphans.items()):
            self._on_record(fault_record(self.run_id, pid, induct_wall, reason))
        self.journal_faults["timing_restart"] += len(orphans)
        if orphans:
            log.error("%d parcels in flight when the timing process died: recorded as fault", len(orphans))

    # ---------------------------------------------------------------- status
    def _rebuild_snapshot(self) -> None:
        ts = self.timing_status
        s = self.stats.snapshot()
        chute_counts = s.get("chute_counts", {})
        full, disabled = ts.get("full", {}), set(ts.get("disabled", []))
        plc = ts.get("plc", {"url": self.plc_url, "connected": False, "errors": 0})
        self.alarm_book.update(self.alarms.list() + ts.get("alarms", []))
        alarms = self.alarm_book.active()
        # the timing process's line state machine is the one answer; before it speaks, booting
        ls = ts.get("line") or {"state": "booting", "reason": "starting the timing process", "test_mode": None}
        if not self.timing_proc.is_alive():
            ls = dict(ls, state="faulted", reason="the timing process is down; restarting it")
        self._snapshot = {
            "line": {"name": self.cfg.line.name, "state": ls["state"], "state_reason": ls.get("reason", ""),
                     "state_since_wall": ls.get("since_wall"), "test_mode": ls.get("test_mode"),
                     "estop_latched": bool(ls.get("estop_latched")), "induct_enable": ls.get("induct_enable"),
                     "state_history": ls.get("history", []), "mode": self.mode, "plc": plc,
                     "belt_speed_mps": ts.get("belt_speed_mps"),
                     "uptime_s": round(time.monotonic() - self.started_mono, 1),
                     "routing_version": ts.get("routing_version", ""), "run_id": self.run_id,
                     "timing_policy": ts.get("policy", ""), "tracked": ts.get("tracked", 0),
                     "timing_pid": self.timing_hello.get("pid"), "timing_starts": self.timing_starts,
                     "counters": ts.get("counters", {}), "read_offsets": ts.get("read_offsets", {}),
                     "confirm_offsets": ts.get("confirm_offsets", {})},
            "counts": s["counts"], "throughput_pph": s["throughput_pph"], "read_rate": s["read_rate"],
            "fire_error_ms": s["fire_error_ms"], "decision_ms": s["decision_ms"],
            # every fire's timing error, binned by the timing process (/metrics' histogram, the charts)
            "fire_hist": (ts.get("io") or {}).get("fire_hist"),
            "chutes": [self._chute_view(c, chute_counts.get(c.id, 0), bool(full.get(c.id)), c.id not in disabled)
                       for c in self.cfg.line.chutes],
            "cameras": [h.snapshot(self.camera_procs.get(n) is not None and self.camera_procs[n].is_alive())
                        for n, h in self.cameras.items()],
            "alarms": alarms,
            "recent": list(self.recent),
            "records": {"written": self.writer.written, "queued": self.writer.queue_depth,
                        "in_flight": len(self.open_parcels), "id_collisions": self.writer.collisions,
                        "faulted_previous_run": self.journal_faults["previous_run"],
                        "faulted_timing_restart": self.journal_faults["timing_restart"],
                        "db_errors": self.writer.db_errors, "last_error": self.writer.last_error},
            "lookup": self.lookup.stats() if self.lookup is not None else None,
            "retention": self.retention.status() if self.retention is not None else None,
            **{key: self._site_status(key) for key in ("site_db", "mqtt", "uploads")},
        }
        if self.sim_status is not None:
            self._snapshot["sim"] = self.sim_status
        self.published.publish(self._snapshot)

    def _chute_view(self, c, count: int, full: bool, enabled: bool) -> dict:
        view = {"id": c.id, "name": c.name, "count": count, "full": full, "enabled": enabled}
        emptied = self.chute_emptied.get(c.id)
        # parcels in the chute since somebody last said it was emptied (page, API)
        view["since_emptied"] = count - emptied[1] if emptied else count
        view["emptied_wall"], view["emptied_by"] = (emptied[0], emptied[2]) if emptied else (None, None)
        return view

    def _site_status(self, key: str) -> dict | None:
        part = self.site_parts.get(key)
        if part is None:
            return None  # not configured
        try:
            return part.status()
        except Exception as exc:  # noqa: BLE001 - the page still shows the rest
            return {"last_error": f"status unavailable: {exc}"}

    def resend_uploads(self, target: str | None = None) -> int | None:
        """Dead-lettered uploads back to pending (API). None: no such target (or no uploads)."""
        uploads = self.site_parts.get("uploads")
        return None if uploads is None else uploads.resend(target)

    def status(self) -> dict:
        return self._snapshot

    # ---------------------------------------------------------------- control (API)
    def set_chute_enabled(self, chute_id: str, enabled: bool) -> bool:
        if chute_id not in {c.id for c in self.cfg.line.chutes}:
            return False
        self.send(SetChuteEnabled(chute_id, enabled))
        return True

    def mark_chute_emptied(self, chute_id: str, who: str = "") -> bool:
        """A person emptied the chute: its count since emptied starts again from zero."""
        if chute_id not in {c.id for c in self.cfg.line.chutes}:
            return False
        count = self.stats.snapshot().get("chute_counts", {}).get(chute_id, 0)
        self.chute_emptied[chute_id] = (time.time(), count, who)
        self._rebuild_snapshot()
        return True

    def ack_alarm(self, alarm_id: str, who: str = "") -> bool:
        """Acknowledged: said on the alarm, and the tower's buzzer silenced."""
        ok = self.alarm_book.ack(alarm_id, who)
        if ok:
            self.send(SilenceBuzzer(who))
            self._rebuild_snapshot()
        return ok

    def shelve_alarm(self, alarm_id: str, who: str = "", seconds: float = 3600) -> bool:
        ok = self.alarm_book.shelve(alarm_id, who, seconds)
        if ok:
            self._rebuild_snapshot()
        return ok

    def set_test_mode(self, mode: str, chute: str | None = None, who: str = "") -> tuple[bool, str]:
        """A commissioning test mode from the page (technician): every parcel to `chute` (fixed) or
        to each diverter chute in turn (round_robin), whatever its reads; off = the routes again."""
        if mode not in ("off", "fixed", "round_robin"):
            return False, f"unknown test mode {mode!r}"
        if self.cfg.plc.mode != "direct":
            return False, "test modes drive the diverters directly: not in PLC tracking mode"
        if mode == "fixed" and chute not in {c.id for c in self.cfg.line.chutes if c.diverter}:
            return False, f"test mode fixed needs a chute with a diverter, not {chute!r}"
        self.send(SetTestMode(mode, chute if mode == "fixed" else None, who))
        return True, f"test mode {mode}{' ' + chute if mode == 'fixed' else ''} sent"

    def route_waybill(self, waybill: str) -> dict:
        """Where a waybill keyed by hand goes, by the table in force (as if a camera had read it)."""
        with self._routing_lock:
            router = self.router
        if router is None:
            return {"outcome": "no_route", "chute": None, "waybill": waybill, "carrier": None,
                    "destination": None, "reason": self.routing_error or "no routing table", "routing_version": "",
                    "rule": None, "sort_code": None}
        return router.decide([("code128", waybill)]).as_dict()

    def pause(self) -> None:
        self.send(SetPaused(True))

    def resume(self) -> None:
        self.send(SetPaused(False))

    def reset(self, who: str = "") -> tuple[bool, str]:
        """A person says the line is safe after an emergency stop. Refused while the e-stop is still
        pressed (as the timing process last saw its input)."""
        ls = self.timing_status.get("line") or {}
        if not ls.get("estop_latched"):
            return False, "the line is not in an emergency stop"
        if ls.get("estop_input_ok") is False:
            return False, "the emergency stop is still pressed: release it first"
        self.send(ResetLine(who))
        return True, "reset sent: the line restarts once its inputs are healthy"

    def reload_routes(self, force: bool = False) -> tuple[bool, str]:
        """Reload the routing files now (API, SIGHUP). Parsing happens here, in the service process;
        the timing process only swaps in the new table between two parcels. `force`: a person
        decided that a table with no rules, no default or far fewer rules is right."""
        with self._routing_lock:
            if self.router is None:
                return self._first_table(force)
            ok, text = self.router.reload(force=force)
            self._routing_outcome(ok, text)
        return ok, text

    def _first_table(self, force: bool = False) -> tuple[bool, str]:
        """There has been no table at all: try the files again (`force`: a person decided that a
        table with no rules or no default is right)."""
        try:
            router = Router.from_config(self.cfg)
            self.router = router if force else _safe_first(router)
        except RoutesError as exc:
            first = exc.problems[0] if exc.problems else ""
            self.routing_error = "routing files refused and no last good table kept: " + first
            self.alarms.raise_("routes", self.routing_error, "routes.none_kept", error=first)
            return False, "\n".join(exc.problems)
        self.routing_error = None
        self._open_lookup()
        text = f"routes version {self.router.version} loaded"
        self._routing_outcome(True, text)
        return True, text

    def _watch_routes(self) -> None:
        """A routing file changed on disk: load it (the old table stays if the new one is bad)."""
        with self._routing_lock:
            if self.router is None:
                sig = files_signature([p for p in config_paths(self.cfg) if p is not None])
                if sig != self._refused_sig:
                    self._refused_sig = sig
                    self._first_table()
                return
            result = self.router.reload_if_changed()
            if result is not None:
                self._routing_outcome(*result)

    def _routing_outcome(self, ok: bool, text: str) -> None:
        if ok:
            self.alarms.clear("routes")
            self.send(InstallRouting(self.router.state))
            log.info("routing: %s", text)
            try:
                last_good.keep(self.cfg, self.router.state)
            except OSError as exc:  # the records' disk: its own alarms say more
                log.warning("could not keep a copy of the routing files: %s", exc)
        else:
            self.alarms.raise_("routes", f"routing files refused, the previous version stays in force: {text}",
                               "routes.refused", error=text)
