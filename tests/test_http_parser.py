"""The API's HTTP parser, as the service runs it (uvicorn's "auto": httptools and uvloop, which
pyproject.toml installs): the hostile requests where it answers otherwise than h11 did, each the
answer RFC 9112 asks for."""

from __future__ import annotations

import socket
import time

import uvicorn

from sorter.controller.api.app import create_app
from tests.test_api import make_status, serve


def raw(url: str, request: bytes, wait_s: float = 5.0) -> tuple[bytes, bool]:
    """What the server sent back, and whether it closed the connection."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(request)
        out, end = b"", time.monotonic() + wait_s
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            if not chunk:
                return out, True
            out += chunk
            if b"\r\n\r\n" in out and out.split(b"\r\n", 1)[0].endswith(b"200 OK"):
                return out, False   # a whole answer is enough: the connection stays for the next
    return out, False


def test_the_service_runs_on_httptools_and_uvloop():
    cfg = uvicorn.Config(create_app(make_status, None))
    cfg.load()
    assert cfg.http_protocol_class.__name__ == "HttpToolsProtocol"
    loop = cfg.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_hostile_framing_is_refused_and_the_connection_closed():
    srv = serve(create_app(make_status, None, token="t0ken"))
    try:
        # Content-Length and Transfer-Encoding both: a smuggling attempt; h11 answered it and kept
        # the connection open (RFC 9112 6.1: a server that answers must close it)
        out, closed = raw(srv.url, b"POST /api/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and closed
        # an absolute-form target is the path it names (RFC 9112 3.2.2: a server must accept it)
        out, _ = raw(srv.url, b"GET http://line.example/api/chutes HTTP/1.1\r\nHost: line.example\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
        # a version that is not HTTP/1.x is not served as if it were
        out, closed = raw(srv.url, b"GET /api/status HTTP/9.9\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and closed
        # HTTP/1.1 without a Host header (RFC 9112 3.2: 400); HTTP/1.0 needs none
        out, _ = raw(srv.url, b"GET /api/chutes HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and b"Host" in out
        out, _ = raw(srv.url, b"GET /api/chutes HTTP/1.0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
    finally:
        srv.stop()
