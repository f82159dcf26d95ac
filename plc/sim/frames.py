"""The simulated line's cameras: render what each camera sees and serve it like an IP camera.

Each camera is triggered when a parcel's centre passes under it (as a photo-eye-triggered area
camera is); with ``sim.camera_mode: free_running`` they take frames at ``sim.camera_fps`` instead,
showing whatever is in view (plc/sim/belt_frames.py). Frames are rendered ahead of time from the
same deterministic parcel plan the line uses, timed by the line's own clocks (the line process
tells every stop, start and entry: clock_feed.py), and sent at their capture moment, stamped with
it (monotonic clock, shared by every process on the machine), once the line has told everything
up to that moment. Protocol (TCP): the client sends the
camera name and a newline; the server sends frames, each a 24-byte header `!4sdII` (b"FRM1",
capture_mono, height, width) followed by height*width bytes of 8-bit grey. Between frames, a
heartbeat header (b"BEAT", watermark, 0, 0) says that no frame captured before `watermark` is still
to come, so a worker knows when it has seen everything of a parcel without waiting for a timeout.
The control pipe takes SimStart, Stop and SimReportRequest, answered with SimReport(dict): frames
sent per camera; triggered, the last captures (camera, parcel index, capture mono: SimWorld keeps
them out of the user's report); free-running,
how many showed two parcels, render times ...
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait

import numpy as np

from sorter.controller.config.line import Config
from sorter.plc.sim.belt_clock import INF
from sorter.plc.sim.belt_frames import FreeRunStats, label_spec, run_free_running, sim_cameras
from sorter.plc.sim.clock_feed import LineClocks
from sorter.plc.sim.parcels import ParcelPlan
from sorter.vision.labels import render_frame, render_label
from sorter.messages import SimReady, SimReport, SimReportRequest, SimStart, Stop

log = logging.getLogger("sorter.sim.frames")
HEADER = struct.Struct("!4sdII")
RENDER_AHEAD_S = 0.25
BEAT_S = 0.05
CAPTURES_KEPT = 2000  # the last triggered captures (camera, parcel index, capture mono) in the report


class FrameServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]
        self.clients: dict[str, list[socket.socket]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(2.0)
            name = b""
            try:
                while not name.endswith(b"\n") and len(name) < 64:
                    chunk = c.recv(1)
                    if not chunk:
                        break
                    name += chunk
            except OSError:
                c.close()
                continue
            with self.lock:
                self.clients.setdefault(name.decode(errors="replace").strip(), []).append(c)

    def beat(self, watermark: float) -> None:
        data = HEADER.pack(b"BEAT", watermark, 0, 0)
        with self.lock:
            for camera, clients in self.clients.items():
                for c in list(clients):
                    try:
                        c.sendall(data)
                    except OSError:
                        clients.remove(c)
                        c.close()

    def send(self, camera: str, capture_mono: float, frame: np.ndarray) -> int:
        h, w = frame.shape
        data = HEADER.pack(b"FRM1", capture_mono, h, w) + frame.tobytes()
        sent = 0
        with self.lock:
            for c in list(self.clients.get(camera, [])):
                try:
                    c.sendall(data)
                    sent += 1
                except OSError:
                    self.clients[camera].remove(c)
                    c.close()
        return sent


class Waiter:
    """The frame loops' only way to let time pass: sleeps until a moment, answering the control pipe,
    beating every BEAT_S, and taking the line's news (clock_feed.py) into `clocks` as it comes."""

    def __init__(self, conn: Connection, feed: Connection | None, clocks: LineClocks, server: FrameServer,
                 report):
        self.conn, self.feed, self.clocks, self.server, self.report = conn, feed, clocks, server, report
        self._beat = -INF

    def wait(self, t_until: float, next_cap: float, need: float = -INF, version: int | None = None) -> bool | None:
        """Until t_until has come and the line has told everything up to `need`: True. None as soon as
        the clocks' version is no longer `version` (when given): what the caller computed may have
        moved. False when told to stop (or the parent is gone). `next_cap` bounds the heartbeats'
        watermark: no frame captured before it is still to come."""
        self._beat = -INF  # a beat on every call: a worker learns at once that an earlier frame is all
        clocks = self.clocks
        while True:
            now = time.monotonic()
            if now - self._beat >= BEAT_S:
                self.server.beat(min(now, next_cap) - 1e-6)
                self._beat = now
            if version is not None and clocks.version != version:
                return None
            if now >= t_until and clocks.line_mono >= need:
                return True
            timeout = BEAT_S - (now - self._beat)
            if now < t_until:
                timeout = min(timeout, t_until - now)
            ready = wait([self.conn] + ([self.feed] if self.feed is not None else []), max(0.0, timeout))
            if self.feed is not None and self.feed in ready:
                self._take_news()
            if self.conn in ready:
                try:
                    kind = type(self.conn.recv())
                except (EOFError, OSError):
                    return False
                if kind is Stop:
                    return False
                if kind is SimReportRequest:
                    self.conn.send(SimReport(self.report()))

    def _take_news(self) -> None:
        try:
            while self.feed.poll():
                self.clocks.apply(self.feed.recv())
        except (EOFError, OSError):  # the line is gone: what it told stays true
            self.feed = None
            self.clocks.line_gone()


def frames_main(cfg: Config, seed: int, n_parcels: int | None, conn: Connection, plan_kwargs: dict,
                feed: Connection | None = None) -> None:
    """`feed`: the line's news (clock_feed.py). Without it, parcels move as planned (nothing stops)."""
    plan = ParcelPlan(cfg, seed, keep=None if n_parcels else 1000, **plan_kwargs)
    server = FrameServer()
    conn.send(SimReady(server.port))
    try:
        msg = conn.recv()
    except (EOFError, OSError):  # the parent is gone
        return
    if type(msg) is not SimStart:
        return
    t0 = msg.t0_mono
    # following a line, nothing is known until its first news
    clocks = LineClocks(plan, t0, n_parcels, cfg.line.induct.position_mm, line_mono=-INF if feed else INF)
    free_running = cfg.sim.camera_mode == "free_running"
    if free_running:
        stats = FreeRunStats([c.name for c in sim_cameras(cfg)], cfg.sim.camera_fps)
        report = stats.report
    else:
        sent = {c.name: 0 for c in cfg.cameras}
        captures: deque = deque(maxlen=CAPTURES_KEPT)
        report = lambda: {"mode": "triggered", "cameras": {k: {"frames": v} for k, v in sent.items()},  # noqa: E731
                          "captures": [list(c) for c in captures]}
    waiter = Waiter(conn, feed, clocks, server, report)
    if free_running:
        run_free_running(cfg, plan, n_parcels, clocks, server.send, waiter, stats, seed)
    else:
        _run_triggered(cfg, plan, clocks, server, waiter, sent, captures)


class TriggeredSchedule:
    """Which triggered frame comes next: per camera, the next parcel whose centre it has not seen
    yet; of those, the capture that comes first (upstream first on a tie). Times from `clocks`."""

    def __init__(self, cameras, plan, clocks: LineClocks):
        self.cams = sorted(cameras, key=lambda c: c.position_mm)  # frames go out in capture order
        self.plan, self.clocks = plan, clocks
        self.next = [0] * len(self.cams)

    def first(self) -> tuple[int, int, float] | None:
        """(camera number, parcel index, earliest capture time) of the next frame; None: no more.
        The earliest time assumes whatever stands still runs again as soon as the line's news ends:
        a lower bound, safe for a heartbeat's watermark."""
        c, best = self.clocks, None
        for k, cam in enumerate(self.cams):
            i = self.next[k]
            while c.n is None or i < c.n:
                if c.exists(i):
                    break
                i += 1  # held back: it never passes
            else:
                continue
            self.next[k] = i
            p = self.plan.get(i)
            t_lb = c.point_time(i, cam.position_mm, p.length_mm / 2, resume_at=c.line_mono)
            if best is None or t_lb < best[2]:
                best = (k, i, t_lb)
        return best

    def capture_time(self, k: int, i: int) -> float:
        """When parcel i's centre is under camera k, if nothing changes (inf while it stands still)."""
        return self.clocks.point_time(i, self.cams[k].position_mm, self.plan.get(i).length_mm / 2)

    def done(self, k: int) -> None:
        self.next[k] += 1


def _run_triggered(cfg: Config, plan: ParcelPlan, clocks: LineClocks, server: FrameServer, waiter: Waiter,
                   sent: dict, captures: deque) -> None:
    sched = TriggeredSchedule(cfg.cameras, plan, clocks)
    frames: dict[int, np.ndarray] = {}  # each parcel's frame, rendered once for every camera
    while True:
        nxt = sched.first()
        if nxt is None:
            break
        k, i, t_lb = nxt
        version = clocks.version
        t_cap = sched.capture_time(k, i)
        # wait (for the line to move again, or until just before the capture), then think again if
        # the line's news changed anything
        if waiter.wait(t_cap - RENDER_AHEAD_S, t_lb, version=version) is False:
            return
        if clocks.version != version or t_cap == INF:
            continue
        frame = frames.get(i)
        if frame is None:
            p = plan.get(i)
            rng = np.random.default_rng(p.label_seed)
            frame = frames[i] = render_frame(render_label(label_spec(p), rng), rng)
        # a camera delivers a frame a little after it exposed it, and only once the line has told
        # everything up to then (a stop just before would keep the parcel from the camera)
        got = waiter.wait(t_cap + 0.01, t_lb, need=t_cap, version=version)
        if got is False:
            return
        if got is None:
            continue
        cam = sched.cams[k]
        server.send(cam.name, t_cap, frame)
        sent[cam.name] = sent.get(cam.name, 0) + 1
        captures.append((cam.name, i, t_cap))
        sched.done(k)
        for j in [j for j in frames if j < min(sched.next)]:
            del frames[j]
    waiter.wait(INF, INF)
