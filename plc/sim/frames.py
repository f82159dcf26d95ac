"""The simulated line's cameras: render what each camera sees and serve it like an IP camera.

Each camera is triggered when a parcel's centre passes under it (as a photo-eye-triggered area
camera is); with ``sim.camera_mode: free_running`` they take frames at ``sim.camera_fps`` instead,
showing whatever is in view (plc/sim/belt_frames.py). Frames are rendered ahead of time from the
same deterministic parcel plan the line uses and sent at their capture moment, stamped with it
(monotonic clock, shared by every process on the machine). Protocol (TCP): the client sends the
camera name and a newline; the server sends frames, each a 24-byte header `!4sdII` (b"FRM1",
capture_mono, height, width) followed by height*width bytes of 8-bit grey. Between frames, a
heartbeat header (b"BEAT", watermark, 0, 0) says that no frame captured before `watermark` is still
to come, so a worker knows when it has seen everything of a parcel without waiting for a timeout.
The control pipe takes ("start", t0), ("stop",) and ("report",), answered with ("report", dict):
frames sent per camera and, free-running, how many showed two parcels, render times ...
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

from sorter.controller.config.line import Config
from sorter.plc.sim.belt_frames import FreeRunStats, label_spec, run_free_running, sim_cameras
from sorter.plc.sim.parcels import ParcelPlan
from sorter.vision.labels import render_frame, render_label
from sorter.messages import SimReady, SimReport, SimReportRequest, SimStart, Stop

log = logging.getLogger("sorter.sim.frames")
HEADER = struct.Struct("!4sdII")
RENDER_AHEAD_S = 0.25


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


def frames_main(cfg: Config, seed: int, n_parcels: int | None, conn: Connection, plan_kwargs: dict) -> None:
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
    free_running = cfg.sim.camera_mode == "free_running"
    if free_running:
        stats = FreeRunStats([c.name for c in sim_cameras(cfg)], cfg.sim.camera_fps)
        report = stats.report
    else:
        sent = {c.name: 0 for c in cfg.cameras}
        report = lambda: {"mode": "triggered", "cameras": {k: {"frames": v} for k, v in sent.items()}}  # noqa: E731

    def wait_until(t_until: float, next_cap: float) -> bool:
        """Sleep until t_until, beating every 50 ms; False when told to stop (or the parent is gone).
        Answers SimReportRequest with SimReport(what the cameras sent)."""
        while True:
            now = time.monotonic()
            server.beat(min(now, next_cap) - 1e-6)
            if now >= t_until:
                return True
            try:
                if not conn.poll(min(0.05, t_until - now)):
                    continue
                kind = type(conn.recv())
            except (EOFError, OSError):
                return False
            if kind is Stop:
                return False
            if kind is SimReportRequest:
                conn.send(SimReport(report()))

    if free_running:
        run_free_running(cfg, plan, n_parcels, t0, server.send, wait_until, stats, seed)
    else:
        _run_triggered(cfg, plan, n_parcels, t0, server, wait_until, sent)


def _run_triggered(cfg: Config, plan: ParcelPlan, n_parcels: int | None, t0: float, server: FrameServer,
                   wait_until, sent: dict) -> None:
    speed = plan.speed_mm_s
    induct = cfg.line.induct.position_mm
    i = 0
    # upstream cameras first, so that frames go out in capture order
    cameras = sorted(cfg.cameras, key=lambda c: c.position_mm)
    while n_parcels is None or i < n_parcels:
        p = plan.get(i)
        i += 1
        for cam in cameras:
            t_cap = t0 + p.head_s + (cam.position_mm - induct + p.length_mm / 2) / speed
            if not wait_until(t_cap - RENDER_AHEAD_S, t_cap):
                return
            rng = np.random.default_rng(p.label_seed)
            label = render_label(label_spec(p), rng)
            frame = render_frame(label, rng)
            # a camera delivers a frame a little after it exposed it
            if not wait_until(t_cap + 0.01, t_cap):
                return
            server.send(cam.name, t_cap, frame)
            sent[cam.name] = sent.get(cam.name, 0) + 1
    wait_until(float("inf"), float("inf"))
