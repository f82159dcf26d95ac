"""Camera sources: video file / HTTP stream / USB code path, folder replay, the serial code reader
over a real pty pair (socat), the TCP code reader."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sorter.vision.labels import LabelSpec, render_frame, render_label
from sorter.vision.sources import (NoFrame, OpenCVSource, Reads, SerialReaderSource, SourceError, TcpReaderSource, open_source, parse_reader_line, source_kind)
from sorter.vision.decode import decode

WAYBILLS = [f"SF12345678901{i:02d}" for i in range(6)]


def write_video(path: Path, n: int = 6, fps: float = 20.0) -> list[str]:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (1024, 768), False)
    assert vw.isOpened()
    for i in range(n):
        rng = np.random.default_rng(i)
        vw.write(render_frame(render_label(LabelSpec(WAYBILLS[i % len(WAYBILLS)]), rng), rng, blur_sigma=0.4))
    vw.release()
    return WAYBILLS[:n]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, list[str]]:
    p = tmp_path_factory.mktemp("video") / "belt.avi"
    return p, write_video(p)


def read_all(src, limit: int = 50) -> list[np.ndarray]:
    frames = []
    src.open()
    try:
        for _ in range(limit):
            before = time.monotonic()
            try:
                t, f = src.read()
            except SourceError:
                break
            assert before <= t <= time.monotonic()  # stamped at capture, on the monotonic clock
            frames.append(f.copy())
    finally:
        src.close()
    return frames


@pytest.mark.parametrize("spec,kind", [
    ("sim://top", "sim"), ("tcp://127.0.0.1:9000/top", "sim"), ("0", "usb"), ("usb:2", "usb"),
    ("rtsp://10.0.0.5/stream1", "stream"), ("http://cam/video.mjpg", "stream"), ("/data/belt.mp4", "video"),
    ("file:/data/x.bin?fps=5", "video"), ("/data/frames", "folder"), ("serial:/dev/ttyUSB0?baud=9600", "serial"),
    ("reader://10.0.0.9:2001", "reader"),
])
def test_source_kinds(spec, kind):
    assert source_kind(spec) == kind


@pytest.mark.parametrize("spec", ["", "usb:x", "usb:99", "ftp://x/y", "/data/picture.png"])
def test_bad_source_specs(spec):
    with pytest.raises(ValueError):
        source_kind(spec)


def test_video_file_replay_decodes_every_frame(video):
    path, truth = video
    src = open_source(str(path) + "?fps=50")
    assert src.kind == "video" and not src.free_running
    frames = read_all(src)
    assert len(frames) == len(truth)
    for f, wb in zip(frames, truth):
        assert f.ndim == 2 and f.shape == (768, 1024)
        assert wb in [c.text for c in decode(f)]
    assert src.accepted["_actual"]["width"] == 1024


def test_video_loops_when_asked(video):
    path, truth = video
    src = open_source(f"{path}?fps=200&loop=1")
    assert len(read_all(src, limit=len(truth) * 2 + 1)) == len(truth) * 2 + 1


def test_usb_code_path_with_video_stand_in_reports_properties(video):
    """A USB camera goes through the same OpenCV path; a file stands in for /dev/video0.
    Properties are asked, and what the 'camera' accepted is reported (a file accepts none)."""
    path, truth = video
    src = OpenCVSource("usb:0", properties={"width": 1280, "height": 720, "fps": 15, "exposure": -6,
                                            "autofocus": False})
    assert src.kind == "usb" and src.free_running and src.target == 0
    src.target = str(path)  # the stand-in
    src.open()
    try:
        acc = src.accepted
        assert set(acc) >= {"width", "height", "fps", "exposure", "autofocus", "_actual"}
        assert acc["width"]["asked"] == 1280 and acc["width"]["accepted"] is False
        assert acc["_actual"]["width"] == 1024  # what it really delivers
        buf = np.zeros((768, 1024), np.uint8)
        t, f = src.read(lambda h, w: buf)
        assert f is buf and buf.any()  # written into the offered (shared-memory) buffer
        assert truth[0] in [c.text for c in decode(buf)]
    finally:
        src.close()


def test_missing_video_and_dead_usb_raise_source_error(tmp_path):
    with pytest.raises(SourceError):
        open_source(str(tmp_path / "nope.mp4")).open()


def test_http_stream_through_opencv(video):
    """An IP camera over HTTP: the video served by a local HTTP server, read by OpenCV/FFmpeg."""
    path, truth = video
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        src = open_source(f"http://127.0.0.1:{httpd.server_address[1]}/{path.name}")
        assert src.kind == "stream" and src.free_running
        frames = read_all(src)
        assert len(frames) == len(truth)
        assert truth[-1] in [c.text for c in decode(frames[-1])]
    finally:
        httpd.shutdown()


def test_folder_replay(tmp_path):
    for i in range(3):
        rng = np.random.default_rng(10 + i)
        cv2.imwrite(str(tmp_path / f"f{i}.png"), render_frame(render_label(LabelSpec(WAYBILLS[i]), rng), rng))
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(str(tmp_path) + "?fps=100")
    frames = read_all(src)
    assert [decode(f)[0].text for f in frames] == WAYBILLS[:3]


# ---------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("line,expect", [
    (b"SF1234567890123\r\n", ("code128", "SF1234567890123")),
    (b"]C0JT0001234567890\r", ("code128", "JT0001234567890")),
    (b"]E06901234567892\n", ("ean13", "6901234567892")),
    (b"]E06901234567893\n", None),  # wrong check digit: never a wrong read
    (b"]E0036000291452\n", ("upca", "036000291452")),
    (b"NoRead\r\n", None),
    (b"\r\n", None),
    (b"]Q1" + "温岭市城东街道".encode("gbk") + b"\n", ("qrcode", "温岭市城东街道")),
    (b"]Q1" + "温岭市城东街道".encode("utf-8") + b"\n", ("qrcode", "温岭市城东街道")),
    (b"AB\x1b[2JCD\n", None),  # control characters in a 1-D read: garbage
])
def test_reader_line_parsing(line, expect):
    assert parse_reader_line(line) == expect


@pytest.fixture
def pty_pair(tmp_path):
    if shutil.which("socat") is None:
        pytest.skip("socat not installed")
    a, b = tmp_path / "reader", tmp_path / "host"
    p = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if a.exists() and b.exists():
            break
        time.sleep(0.02)
    else:
        p.kill()
        pytest.fail("socat did not create the pty pair")
    yield a, b, p
    p.kill()
    p.wait()


def test_serial_code_reader_over_a_pty_pair(pty_pair):
    import serial

    reader_end, host_end, _ = pty_pair
    src = SerialReaderSource(f"serial:{host_end}?baud=9600")
    src.open()
    dev = serial.Serial(str(reader_end), 9600, timeout=1)
    try:
        with pytest.raises(NoFrame):
            src.read()  # nothing sent: idle
        # a read split over two writes, then several at once, a no-read and a bad check digit
        dev.write(b"]C0SF12345")
        dev.flush()
        time.sleep(0.05)
        dev.write(b"67890123\r\n]E06901234567892\r\nNOREAD\r\n]E06901234567893\r\n")
        dev.flush()
        got: list[tuple[str, str]] = []
        noread = 0
        end = time.monotonic() + 30  # a bound for a broken build, not a speed
        while time.monotonic() < end and (len(got) < 2 or noread < 2):
            before = time.monotonic()
            try:
                t, reads = src.read()
            except NoFrame:
                continue
            assert isinstance(reads, Reads) and before <= t <= time.monotonic()  # stamped on arrival
            got += reads.codes
            noread += reads.noread
        assert got == [("code128", "SF1234567890123"), ("ean13", "6901234567892")]
        assert noread == 2
    finally:
        dev.close()
        src.close()


def test_serial_reader_gone_raises_source_error(pty_pair):
    _, host_end, proc = pty_pair
    src = SerialReaderSource(f"serial:{host_end}")
    src.open()
    proc.kill()
    proc.wait()
    with pytest.raises(SourceError):
        for _ in range(50):
            try:
                src.read()
            except NoFrame:
                pass
    src.close()
    with pytest.raises(SourceError):
        SerialReaderSource("serial:/dev/does-not-exist").open()


def test_tcp_code_reader():
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    src = TcpReaderSource(f"reader://127.0.0.1:{port}")
    src.open()
    conn, _ = srv.accept()
    try:
        conn.sendall(b"YT9876543210987\r\n]Q1https://example.com/t/1\r\n")
        got = []
        end = time.monotonic() + 30  # a bound for a broken build, not a speed
        while len(got) < 2 and time.monotonic() < end:
            try:
                got += src.read()[1].codes
            except NoFrame:
                pass
        assert got == [("code128", "YT9876543210987"), ("qrcode", "https://example.com/t/1")]
        conn.close()
        with pytest.raises(SourceError):
            for _ in range(30):
                try:
                    src.read()
                except NoFrame:
                    pass
    finally:
        src.close()
        srv.close()
