"""A TCP proxy a drill controls, between the controller and the I/O module: what a flaky switch,
a pulled cable or a saturated link does to a Modbus connection.

Modes: ``pass``; ``drop`` (every connection reset now, new ones refused until the mode changes);
``delay`` (each chunk forwarded `delay_s` late, in order); ``blackhole`` (connections stay open, bytes
are swallowed both ways: the request times out, nothing is refused).
"""

from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    def __init__(self, upstream: tuple[str, int] | None = None, host: str = "127.0.0.1"):
        self.upstream = upstream
        self.mode, self.delay_s = "pass", 0.2
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((host, 0))
        self._srv.listen(8)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def set(self, mode: str, delay_s: float | None = None) -> None:
        assert mode in ("pass", "drop", "delay", "blackhole"), mode
        with self._lock:
            self.mode = mode
            if delay_s is not None:
                self.delay_s = delay_s
            if mode != "pass":
                self.cuts += 1
            if mode == "drop":
                for a, b in self._conns:
                    for s in (a, b):
                        try:
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            s.close()  # linger 0: a reset, as a pulled cable's switch port gives
                        except OSError:
                            pass
                self._conns.clear()

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        self.set("drop")

    # ------------------------------------------------------------------ the plumbing
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            if self.mode == "drop" or self.upstream is None:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass
                return
            mode = self.mode
            if mode == "blackhole":
                continue
            if mode == "delay":
                time.sleep(self.delay_s)
            try:
                dst.sendall(data)
            except OSError:
                return
