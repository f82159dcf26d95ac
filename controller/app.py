"""The wiring: every part of a running line, started in one readable list and stopped in reverse.

`sorter run`, `sorter sim` and the test harness all start the system here:

    simulated line      (sim only) the Modbus I/O module with parcel physics, in its own process
    simulated cameras   (sim only) the camera frame server, in its own process
    records             the SQLite store and its writer thread
    routing             the route table (watched on disk), the real-time waybill lookup
    retention           the nightly purge of old rows (records/retention.py)
    timing process      reads the I/O, tracks parcels, fires diverters
    camera workers      one process per camera
    supervisor          restarts a dead child, reloads changed route files, rebuilds the snapshot
    API                 the HTTP API and the status page
    systemd notify      READY=1, STATUS=, WATCHDOG=1 fed by the timing loop (service/watchdog.py)

A part that fails to start stops the ones before it, in reverse. Signals are handled in one place,
`App.serve()`: SIGTERM and SIGINT stop the line, SIGHUP reloads the routing files. Every child
process also dies with its parent whatever signal the parent got (`service/processes.py`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sorter.controller.config.line import Config
from sorter.controller.routing.inbox import pending_files
from sorter.controller.service.processes import CTX, spawn, stop_process
from sorter.controller.service.service import Service
from sorter.messages import (SimByHand, SimByHandDone, SimFailed, SimForce, SimOutage, SimOutageDone, SimReady, SimRefuse, SimReport,
                             SimReportRequest, SimStart, Stop)

log = logging.getLogger("sorter.app")
READY_POLLS = 50  # the controller has polled the line this often: its view of the inputs is settled


class StartError(RuntimeError):
    """A part could not start; the message says which and how to fix it."""


@dataclass
class Part:
    name: str
    start: Callable[[], object]
    stop: Callable[[], object]


class SimWorld:
    """The simulated line and its cameras, each a process of its own, reached by the controller only
    through Modbus and camera frames; the wiring talks to them over a pipe each. A third, one-way
    pipe carries the line's news to the cameras (plc/sim/clock_feed.py): when induction or the belt
    stand still, parcels pass under the cameras late, and the frames must follow."""

    def __init__(self, cfg: Config, seed: int, parcels: int | None):
        from sorter.plc.sim.belt_frames import calibrate_sim_cameras
        self.cfg = calibrate_sim_cameras(cfg)  # free-running sim cameras: their calibration, for the workers
        self.seed, self.parcels = seed, parcels
        self.plan_kwargs = {"rate_pph": cfg.sim.rate_pph, "length_mm": tuple(cfg.sim.length_mm),
                            "belt_speed_mps": cfg.line.belt_speed_mps}
        self.modbus_port: int | None = None
        self.frame_port: int | None = None
        self.t0: float | None = None
        self._lock = threading.Lock()  # one request at a time on the line's pipe
        self._news_rx, self._news_tx = CTX.Pipe(duplex=False)  # line -> cameras
        self.camera_captures: list = []  # (camera, parcel index, capture mono) of the last triggered frames

    def start_line(self) -> None:
        from sorter.plc.sim.line import sim_line_main
        self.line_conn, end = CTX.Pipe()
        self.line_proc = spawn("sorter-sim-line", sim_line_main, self.cfg, self.seed, self.parcels, end,
                               self.plan_kwargs, feed=self._news_tx)
        end.close()
        self._news_tx.close()  # the line's now: the cameras see the pipe end when the line ends
        self.modbus_port = self._expect(self.line_conn, SimReady, 30, "the simulated line").port

    def start_cameras(self) -> None:
        from sorter.plc.sim.frames import frames_main
        self.frames_conn, end = CTX.Pipe()
        self.frames_proc = spawn("sorter-sim-frames", frames_main, self.cfg, self.seed, self.parcels, end,
                                 self.plan_kwargs, feed=self._news_rx)
        end.close()
        self._news_rx.close()
        self.frame_port = self._expect(self.frames_conn, SimReady, 30, "the simulated cameras").port

    def stop_line(self) -> None:
        self._stop(self.line_conn, self.line_proc, "the simulated line")

    def stop_cameras(self) -> None:
        self._stop(self.frames_conn, self.frames_proc, "the simulated cameras")

    @staticmethod
    def _stop(conn, proc, what: str) -> None:
        try:
            conn.send(Stop())
        except OSError:
            pass
        stop_process(proc, 3, what)
        conn.close()

    @property
    def plc_url(self) -> str:
        return f"tcp://127.0.0.1:{self.modbus_port}"

    def camera_sources(self) -> dict[str, str]:
        free = "?free_running=1" if self.cfg.sim.camera_mode == "free_running" else ""
        return {c.name: f"tcp://127.0.0.1:{self.frame_port}/{c.source.removeprefix('sim://')}{free}"
                if c.source.startswith("sim://") else c.source for c in self.cfg.cameras}

    # ------------------------------------------------------------ what a run, a test or a drill does
    def go(self) -> None:
        """Parcels start arriving (a moment from now, on both processes' common clock)."""
        self.t0 = time.monotonic() + 0.3
        self.line_conn.send(SimStart(self.t0))
        self.frames_conn.send(SimStart(self.t0))

    def truth(self, timeout: float = 30) -> dict:
        with self._lock:
            self.line_conn.send(SimReportRequest())
            return self._expect(self.line_conn, SimReport, timeout, "the simulated line").report

    def cameras_report(self) -> dict | None:
        """What the simulated cameras sent (frames; free-running: frames with two parcels ...). The
        triggered cameras' last captures go to `camera_captures` (tests), not into the report."""
        try:
            self.frames_conn.send(SimReportRequest())
            report = self._expect(self.frames_conn, SimReport, 10, "the simulated cameras").report
            self.camera_captures = report.pop("captures", [])
            return report
        except (OSError, EOFError, StartError) as exc:
            log.warning("no report from the simulated cameras: %s", exc)
            return None

    def outage(self, seconds: float) -> None:
        """The I/O module disappears for `seconds` (server closed, connections reset), then returns."""
        with self._lock:
            self.line_conn.send(SimOutage(seconds))
            self._expect(self.line_conn, SimOutageDone, seconds + 30, "the simulated line")

    def force(self, name: str, value: int | None) -> None:
        self.line_conn.send(SimForce(name, value))

    def refuse(self, signals) -> None:
        self.line_conn.send(SimRefuse(tuple(signals)))

    def by_hand(self, take_off: int | None = None, put_on_mm: float | None = None,
                length_mm: float = 300.0) -> SimByHandDone:
        """Someone at the belt takes a parcel off (-1: the last one inducted) and/or puts one on."""
        with self._lock:
            self.line_conn.send(SimByHand(take_off, put_on_mm, length_mm))
            return self._expect(self.line_conn, SimByHandDone, 30, "the simulated line")

    def alive(self) -> bool:
        return self.line_proc.is_alive()

    @staticmethod
    def _expect(conn, kind: type, timeout: float, what: str):
        try:
            if not conn.poll(timeout):
                raise StartError(f"{what} did not answer within {timeout:.0f} s")
            msg = conn.recv()
        except (EOFError, OSError):
            raise StartError(f"{what} ended (its error is in the log above)") from None
        if type(msg) is SimFailed:
            raise StartError(msg.error)
        if type(msg) is not kind:
            raise StartError(f"{what}: expected {kind.__name__}, got {type(msg).__name__}")
        return msg


class App:
    def __init__(self, cfg: Config, mode: str = "run", plc_url: str | None = None, token: str | None = None,
                 api: tuple[str, int] | None = None, sim: SimWorld | None = None, record_hook=None):
        self.sim = sim
        if sim is not None:
            cfg = sim.cfg
        self.cfg, self.mode, self.api_addr = cfg, mode, api
        self._plc_url, self._token, self._record_hook = plc_url, token, record_hook
        self.svc: Service | None = None
        self.api = None
        self.started: list[Part] = []
        self.stop_requested = threading.Event()

    def parts(self) -> list[Part]:
        sim, svc = self.sim, lambda: self.svc  # the service exists once the simulated line says where it is
        parts = []
        if sim is not None:
            parts += [Part("simulated line", sim.start_line, sim.stop_line),
                      Part("simulated cameras", sim.start_cameras, sim.stop_cameras)]
        parts += [
            Part("service", self._make_service, lambda: None),
            Part("records", lambda: svc().open_records(), lambda: svc().close_records()),
            *self._site_parts(),  # (a site's: site database, MQTT, uploads; none unless configured)
            Part("routing", lambda: svc().open_routing(), lambda: svc().close_routing()),
            Part("retention", self._start_retention, lambda: svc().retention.stop()),
            Part("timing process", lambda: svc().start_timing(), lambda: svc().stop_timing()),
            Part("camera workers", lambda: svc().start_cameras(), lambda: svc().stop_cameras()),
            # stopped before the cameras: the parcels in flight are still read while they drain
            Part("drain", lambda: None, lambda: svc().drain()),
            Part("supervisor", lambda: svc().start_supervisor(), lambda: svc().stop_supervisor()),
        ]
        if self.api_addr is not None:
            parts.append(Part("API", self._start_api, lambda: self.api.stop()))
        # last: READY=1 means every part is up; stopped first, so STOPPING=1 comes before the drain
        parts.append(Part("systemd notify", self._start_notify, lambda: self.notify.stop()))
        return parts

    def _start_retention(self) -> None:
        """Old records, journal rows, uploads and manifest rows purged nightly, in small batches."""
        from sorter.controller.records.retention import Retention, RetentionThread
        cfg = self.cfg
        self.svc.retention = RetentionThread(Retention(cfg.records.database, cfg.routing.manifest, cfg.retention))
        self.svc.retention.start()

    def _start_notify(self) -> None:
        from sorter.controller.service.watchdog import SystemdFeeder
        self.notify = SystemdFeeder(self.svc)
        self.notify.start()

    def _site_parts(self) -> list[Part]:
        """The site's parts, each off unless its `site:` key is set. Started after the records (they
        read the records database) and stopped before it, after the timing process: the last
        records of a run are written first, then forwarded, published and queued for upload."""
        site = self.cfg.site
        if site is None:
            return []
        from sorter.controller.records.site_sync import SiteForwarder
        from sorter.controller.service.mqtt import MqttPublisher
        from sorter.controller.service.uploads import Uploads
        makers = []
        if site.database is not None:
            makers.append(("site_db", "site database", lambda: SiteForwarder.from_config(self.cfg)))
        if site.mqtt is not None:
            makers.append(("mqtt", "MQTT", lambda: MqttPublisher.from_config(self.cfg, self.svc.status)))
        if site.uploads:
            makers.append(("uploads", "uploads", lambda: Uploads.from_config(self.cfg)))
        return [self._site_part(*m) for m in makers]

    def _site_part(self, key: str, name: str, make: Callable[[], object]) -> Part:
        def start() -> None:
            try:
                part = make()
            except ValueError as exc:  # a missing secret: named by its config key
                raise StartError(str(exc)) from None
            part.start()
            self.svc.site_parts[key] = part

        def stop() -> None:
            part = self.svc.site_parts.pop(key, None)
            if part is not None:
                self.svc.writer.flush(5)  # the run's last records are in the file before the last pass
                part.stop()
        return Part(name, start, stop)

    def _make_service(self) -> None:
        sim = self.sim
        self.svc = Service(self.cfg, mode=self.mode, token=self._token, record_hook=self._record_hook,
                           # (a drill may put a proxy between the controller and the simulated line)
                           plc_url=self._plc_url or (sim.plc_url if sim else None),
                           camera_sources=sim.camera_sources() if sim else None)

    def _start_api(self) -> None:
        from sorter.controller.api.server import ApiServer
        host, port = self.api_addr
        self.api = ApiServer(self.svc, host, port)
        try:
            self.api.start()
        except RuntimeError as exc:
            raise StartError(f"the API cannot listen on {host}:{port} ({exc}); set api.port in the config "
                             "or pass --port") from None

    # ------------------------------------------------------------------ start / stop
    def start(self) -> "App":
        for part in self.parts():
            try:
                log.debug("starting %s", part.name)
                part.start()
            except BaseException as exc:
                (log.info if isinstance(exc, StartError) else log.error)(
                    "%s did not start; stopping what had started", part.name)
                self.stop()
                raise
            self.started.append(part)
        return self

    def stop(self) -> None:
        """Stop every started part in reverse order (the controller before the simulated line, so
        its outputs go to the safe state while the line still answers)."""
        while self.started:
            part = self.started.pop()
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - the parts below must still stop
                log.exception("stopping %s failed", part.name)

    def __enter__(self) -> "App":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ running
    def wait_ready(self, timeout: float = 60) -> None:
        """The controller polls the line and every camera is connected (parcels may start); on the
        simulated line, the carriers' first pre-advice is imported too."""
        end = time.monotonic() + timeout
        svc = self.svc
        while time.monotonic() < end:
            ts = svc.timing_status
            advised = svc.inbox is None or not pending_files(svc.inbox.folder)
            if ts.get("plc", {}).get("connected") and ts.get("counters", {}).get("polls", 0) > READY_POLLS \
                    and all(h.up for h in svc.cameras.values()) and advised:
                return
            if self.stop_requested.wait(0.05):
                return
        raise StartError("the controller did not get ready in time "
                         f"(I/O: {svc.timing_status.get('plc')}, cameras: "
                         f"{[(h.name, h.up, h.last_error) for h in svc.cameras.values()]}, advice files waiting: "
                         f"{len(pending_files(svc.inbox.folder)) if svc.inbox else 0})")

    def handle_signals(self) -> None:
        """The one place signals are handled (main thread only): TERM and INT stop, HUP reloads routes."""
        signal.signal(signal.SIGTERM, lambda *_: self._request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self._request_stop("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: self.svc is not None and self.svc.reload_routes())

    def _request_stop(self, why: str) -> None:
        log.info("%s: stopping", why)
        self.stop_requested.set()

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT, then stop in reverse."""
        self.handle_signals()
        try:
            self.start()
            self.stop_requested.wait()
        finally:
            self.stop()
