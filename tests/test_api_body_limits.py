"""api.body_limits in the line config reaches the running API: `sorter run` with smaller limits
answers 413 over real HTTP to a body past them (the routes test, the advice upload), short and
naming the limit, and still takes a body under them; and the example config keeps the defaults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from sorter.controller.api.guard import DEFAULT_BODY_LIMIT, DEFAULT_BODY_LIMITS
from sorter.controller.api.server import body_limits
from sorter.controller.config.line import BodyLimitsConfig
from tests.conftest import _free_port, write_line_config
from tests.test_processes import alive, descendants, status, wait_for

TOKEN = "body-limit-token"


def post(port: int, path: str, body: bytes, ctype: str = "application/json") -> tuple[int, bytes]:
    """POST as curl does a large body: `Expect: 100-continue`, and the body only after the server says
    continue. A server that refuses the body from its Content-Length answers 413 first and closes; a
    client that pushed the whole body regardless would get a broken pipe instead of the answer."""
    import http.client
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\nConnection: close\r\n\r\n")
        sock.sendall(head.encode())
        first = b""
        while b"\r\n\r\n" not in first:
            chunk = sock.recv(65536)
            if not chunk:
                break
            first += chunk
        if first.startswith(b"HTTP/1.1 100"):
            sock.sendall(body)
            first = first.split(b"\r\n\r\n", 1)[1]
        else:
            assert first, "the server closed without an answer"
        rest = first
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    resp = http.client.HTTPResponse(_Bytes(rest))
    resp.begin()
    return resp.status, resp.read()


class _Bytes:
    """Enough of a socket for http.client.HTTPResponse to parse a response already read."""

    def __init__(self, data: bytes):
        self._data = data

    def makefile(self, *_a, **_k):
        import io
        return io.BytesIO(self._data)


def test_the_defaults_are_the_guards_defaults():
    lim = body_limits(BodyLimitsConfig())
    assert lim.default == DEFAULT_BODY_LIMIT
    assert dict(lim.by_path) == dict(DEFAULT_BODY_LIMITS)


def test_configured_smaller_limits_give_413_over_http(tmp_path):
    port = _free_port()
    cfg = write_line_config(tmp_path / "config", overrides={
        "plc.url": f"tcp://127.0.0.1:{_free_port()}",   # nothing answers there: the API serves anyway
        "cameras": [],
        "api.body_limits": {"default_kb": 1, "manifest_mb": 1},
    })
    log = open(tmp_path / "sorter.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sorter", "run", "--config", str(cfg), "--port", str(port),
                             "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                            start_new_session=True, env={**os.environ, "SORTER_API_TOKEN": TOKEN})
    kids: set[int] = set()
    try:
        wait_for(lambda: status(port), 90, "the status page")
        kids = descendants(proc.pid)
        small = json.dumps({"waybill": "SF1423456789012", "town": "泽国镇"}).encode()
        code, _ = post(port, "/api/routes/test", small)
        assert code == 200
        # 2 KB: under the default 64 KB, over the configured 1 KB
        big = json.dumps({"waybill": "SF1423456789012", "address": "温岭市" * 300}).encode()
        assert 1024 < len(big) < 64 << 10
        code, body = post(port, "/api/routes/test", big)
        assert code == 413, body
        assert len(body) < 700 and b"1 KB" in body, body

        csv = "运单号,乡镇\n" + "".join(f"75{i:012d},泽国镇\n" for i in range(60_000))   # ~1.4 MB
        code, body = post(port, "/api/manifest", csv.encode(), "text/csv")
        assert code == 413 and b"1 MB" in body, body
        code, body = post(port, "/api/manifest", csv[:200_000].rsplit("\n", 1)[0].encode() + b"\n", "text/csv")
        assert code == 200, body
        assert json.loads(body)["imported"] > 5000
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
    end = time.monotonic() + 10
    while time.monotonic() < end and any(alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if alive(k)], (tmp_path / "sorter.log").read_text()[-3000:]
