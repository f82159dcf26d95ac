"""Camera worker processes (spawned, as the service does): reads with belt offsets, no-read images,
health, the shared-memory ring, a worker that is killed and restarted, reopen with backoff."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sorter.plc.sim.frames import FrameServer
from sorter.controller.config.vision import CameraConfig
from sorter.vision.geometry import from_two_points
from sorter.vision.labels import LabelSpec, render_frame, render_label
from sorter.vision.ring import FrameRing, read_latest
from sorter.vision.worker import camera_main
from sorter.messages import (CameraDown, CameraHealthReport, CameraIdle, CameraUp, FrameReads, KeepFrames)

CTX = mp.get_context("spawn")


def start(source: str, tmp: Path, **cfg_kw):
    cfg = CameraConfig(name="top", source=source, position_mm=1000, **cfg_kw).resolved(tmp)
    out_q, cmd_q = CTX.Queue(maxsize=500), CTX.Queue(maxsize=50)
    p = CTX.Process(target=camera_main, args=("top", source, ["code128", "ean13", "qrcode"], 10, out_q, 5.0, cmd_q),
                    kwargs={"config": cfg, "keep_dir": str(tmp / "noreads"), "health_s": 0.2}, daemon=True)
    p.start()
    return p, out_q, cmd_q


def wait_for(q, kind: type, timeout: float = 20.0, pred=lambda m: True):
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        try:
            m = q.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(type(m).__name__)
        if type(m) is kind and pred(m):
            return m
    raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {seen[-20:]}")


def frame_with(waybill: str | None, seed: int, angle: float = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = render_label(LabelSpec(waybill), rng) if waybill else None
    return render_frame(label, rng, rotation_deg=angle)


def connected(server: FrameServer, name: str = "top", timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with server.lock:
            if server.clients.get(name):
                return
        time.sleep(0.05)
    raise AssertionError("the worker did not connect to the frame server")


def test_sim_camera_worker_reads_offsets_noread_images_and_health(tmp_path):
    # calibration: 0.5 mm per pixel, belt moving right in the image
    cal = from_two_points((100, 384), 0.0, (900, 384), 400.0, (1024, 768), camera="top")
    cal.save(tmp_path / "calibration" / "top.json")
    server = FrameServer()
    p, out_q, cmd_q = start(f"tcp://127.0.0.1:{server.port}/top", tmp_path)
    try:
        wait_for(out_q, CameraUp)
        connected(server)
        t1 = time.monotonic()
        server.send("top", t1, frame_with("SF1234567890123", 1, angle=30))
        m = wait_for(out_q, FrameReads)
        name, t_cap, ms, shape, codes, dropped, watermark = m
        assert name == "top" and t_cap == t1 and shape == (768, 1024) and watermark >= t_cap
        sym, text, poly, offset, weak = codes[0]
        assert weak is False  # a clean rendered label: confirmed
        assert (sym, text) == ("code128", "SF1234567890123")
        cx = np.mean([q[0] for q in poly])
        assert offset == pytest.approx((cx - 512) * 0.5, abs=1.0)
        # an empty frame: a parcel whose label is face down -> the service asks to keep its frames
        t2 = time.monotonic()
        server.send("top", t2, frame_with(None, 2))
        assert wait_for(out_q, FrameReads).codes == []
        # the camera's heartbeat says nothing captured before it is still to come: the worker,
        # caught up, passes that on as its watermark
        server.beat(t2 + 0.001)
        wait_for(out_q, CameraIdle, pred=lambda m: m.mono == t2 + 0.001)
        cmd_q.put(KeepFrames("run1", 42, t2 - 1e-6, t2 + 1e-6))  # exactly the empty frame
        h = wait_for(out_q, CameraHealthReport, pred=lambda m: m.health["last_image"] != "").health
        kept = list((tmp_path / "noreads").glob("*.jpg"))
        assert [k.name for k in kept] == ["run1_42_top_0.jpg"] and h["last_image"] == kept[0].name
        assert h["calibrated"] and h["kind"] == "sim" and h["frames"] == 2
        assert h["read_rate"] == 0.5 and h["reads_per_parcel"] == 0.5 and h["read_rate_parcels"] == 2
        assert h["rss_mb"] < 250
        # a frame in which something was read (kept for a multi_read, say): the code is outlined on it
        cmd_q.put(KeepFrames("run1", 43, t1 - 1e-6, t1 + 1e-6))
        wait_for(out_q, CameraHealthReport, pred=lambda m: m.health["last_image"] == "run1_43_top_0.jpg")
        img = cv2.imread(str(tmp_path / "noreads" / "run1_43_top_0.jpg"), cv2.IMREAD_COLOR)
        b, g, r = (img[..., k].astype(int) for k in range(3))
        green = (g - np.maximum(b, r)) > 80
        plain = cv2.imread(str(tmp_path / "noreads" / "run1_42_top_0.jpg"), cv2.IMREAD_COLOR)
        assert not ((plain[..., 1].astype(int) - plain[..., 0]) > 80).any()   # nothing read: nothing drawn
        ys, xs = np.nonzero(green)
        assert len(xs) > 200, "no outline drawn"
        # along the polygon the worker reported, not somewhere else
        px, py = [q[0] for q in poly], [q[1] for q in poly]
        assert min(px) - 12 <= np.median(xs) <= max(px) + 12 and min(py) - 30 <= np.median(ys) <= max(py) + 12
        # the last decoded frame, from another process, through the shared-memory ring
        t, img = read_latest(h["shm"])
        assert t == t2 and img.shape == (768, 1024)
    finally:
        p.terminate()
        p.join(5)
    assert not Path("/dev/shm", h["shm"]).exists()  # a terminated worker removes its ring


def test_read_rate_below_floor_raises_the_alarm_in_health(tmp_path):
    server = FrameServer()
    p, out_q, cmd_q = start(f"tcp://127.0.0.1:{server.port}/top", tmp_path, read_rate_floor=0.95,
                            read_rate_window=10)
    try:
        connected(server)
        frames = [frame_with("YT9876543210987", 3), frame_with(None, 4)]
        for k in range(10):  # one at a time: a burst would overflow the 4-frame queue (dropped, counted)
            server.send("top", time.monotonic(), frames[k % 2 if k < 4 else 0])
            wait_for(out_q, FrameReads)
        h = wait_for(out_q, CameraHealthReport, pred=lambda m: m.health["read_rate_parcels"] == 10).health
        assert h["read_rate"] == 0.8
        assert h["alarm"].startswith("read rate 80.0% < floor 95%")
    finally:
        p.terminate()
        p.join(5)


def test_worker_killed_and_restarted(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), frame_with(f"JT000123456789{i}", 10 + i))
    spec = f"{folder}?fps=20&loop=1"
    p, out_q, _ = start(spec, tmp_path)
    h = wait_for(out_q, CameraHealthReport, pred=lambda m: m.health["shm"] != "").health
    assert wait_for(out_q, FrameReads, pred=lambda m: bool(m.codes)).codes[0][1].startswith("JT000123456789")
    os.kill(p.pid, signal.SIGKILL)
    p.join(5)
    assert p.exitcode == -signal.SIGKILL
    assert Path("/dev/shm", h["shm"]).exists()  # killed: it could not clean up
    # the service's supervisor starts a new one: it cleans the dead one's ring and reads again
    p2, out_q2, _ = start(spec, tmp_path)
    try:
        wait_for(out_q2, CameraUp)
        m = wait_for(out_q2, FrameReads, pred=lambda m: bool(m.codes))
        assert m.codes[0][1].startswith("JT000123456789")
        assert not Path("/dev/shm", h["shm"]).exists()
    finally:
        p2.terminate()
        p2.join(5)


def test_code_reader_reopened_with_backoff(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens yet
    p, out_q, _ = start(f"reader://127.0.0.1:{port}", tmp_path)
    try:
        d1 = wait_for(out_q, CameraDown)
        assert "127.0.0.1" in d1.error
        t_down = time.monotonic()
        wait_for(out_q, CameraDown)  # retried after the backoff
        assert time.monotonic() - t_down >= 0.3
        srv = socket.create_server(("127.0.0.1", port))
        srv.settimeout(15)
        conn, _ = srv.accept()
        wait_for(out_q, CameraUp)
        conn.sendall(b"]C0ZT75123456789012\r\n")
        m = wait_for(out_q, FrameReads)
        assert m.codes == [("code128", "ZT75123456789012", (), None, False)] and m.watermark >= m.capture_mono
        conn.close()
        assert "closed" in wait_for(out_q, CameraDown).error
        srv.close()
    finally:
        p.terminate()
        p.join(5)


def test_code_reader_latency_moves_the_capture_time_back(tmp_path):
    """A reader's configured latency is taken off each read's arrival time (the parcel was under
    the reader that much earlier)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(15)
    port = srv.getsockname()[1]
    p, out_q, _ = start(f"reader://127.0.0.1:{port}", tmp_path, latency_ms=400)
    try:
        conn, _ = srv.accept()
        wait_for(out_q, CameraUp)
        t_sent = time.monotonic()
        conn.sendall(b"]C0ZT75123456789012\r\n")
        m = wait_for(out_q, FrameReads)
        # arrival is at or after t_sent; 400 ms back puts the capture before the send
        assert m.capture_mono <= t_sent - 0.3
        assert m.capture_mono >= t_sent - 0.4 - 5.0
        conn.close()
    finally:
        p.terminate()
        p.join(5)
        srv.close()


def test_ring_drops_and_counts_when_the_decoder_is_behind():
    ring = FrameRing(f"sorter-{os.getpid()}-ringtest-0", 64 * 48, 6, queue_depth=2)
    try:
        for k in range(5):
            buf = ring.alloc(48, 64)
            buf[...] = k
            ring.commit(float(k))
        assert ring.dropped == 3  # only the 2 newest wait
        slot, t, img = ring.take(0.1)
        assert t == 3.0 and int(img[0, 0]) == 3
        ring.release(slot)
        got = read_latest(ring.name)
        assert got is not None and got[0] == 3.0 and int(got[1][0, 0]) == 3
        assert [t for t, _ in ring.frames_between(1.0, 4.0)] == [1.0, 2.0, 3.0, 4.0]
    finally:
        ring.close()


def test_weak_reads_are_sent_flagged(monkeypatch):
    """A weak read (one decoding attempt only) goes to the service as the 5th element of its tuple:
    the timing process keeps it on the record and decides whether it may sort."""
    from sorter.vision.decode import Code
    from sorter.vision.worker import CameraWorker

    q = queue.Queue()
    w = CameraWorker("top", "sim://top", ["code128"], q,
                     config=CameraConfig(name="top", source="sim://top", position_mm=1000))
    codes = [Code("code128", "SF1", ((0, 0), (10, 0)), weak=True), Code("code128", "SF2", ((0, 0), (10, 0)))]
    monkeypatch.setattr("sorter.vision.worker.decode", lambda *a, **k: codes)
    w._decode_frame(type("Src", (), {"free_running": True})(), time.monotonic(), np.zeros((8, 8), np.uint8))
    msg = q.get_nowait()
    assert [(c[1], c[4]) for c in msg.codes] == [("SF1", True), ("SF2", False)]
    assert w.health()["weak_reads_sent"] == 1



def test_camera_latency_moves_each_frames_capture_time_back(tmp_path):
    server = FrameServer()
    p, out_q, _ = start(f"tcp://127.0.0.1:{server.port}/top", tmp_path, latency_ms=250)
    try:
        wait_for(out_q, CameraUp)
        connected(server)
        t1 = time.monotonic()
        server.send("top", t1, frame_with("SF1234567890123", 1))
        m = wait_for(out_q, FrameReads)
        assert m.capture_mono == pytest.approx(t1 - 0.25, abs=1e-6) and m.watermark >= m.capture_mono
        assert [c[1] for c in m.codes] == ["SF1234567890123"]
    finally:
        p.terminate()
        p.join(5)


def test_noread_frames_leave_the_disk_to_the_records(tmp_path, monkeypatch):
    """No-read frames share a disk with the records: none is written that would leave less than the
    reserve free; the ones skipped are counted."""
    from sorter.vision.worker import NoReadKeeper

    k = NoReadKeeper(tmp_path / "noreads", "top")
    frame = [(0.0, np.full((40, 40), 128, np.uint8))]
    assert len(k.keep("run", "1", frame)) == 1 and k.skipped == 0
    monkeypatch.setattr(NoReadKeeper, "RESERVE_SHARE", 1.0)  # a disk that is "full" to the keeper
    assert k.keep("run", "2", frame) == [] and k.skipped == 1
    assert sorted(p.name for p in (tmp_path / "noreads").iterdir()) == ["run_1_top_0.jpg"]
