"""systemd's notification protocol (sd_notify), spoken over its socket: one datagram of
`KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET`.

Written here rather than taken from a library: the protocol is one `sendto()` (see sd_notify(3)),
and the Python bindings need libsystemd's headers to build. Outside systemd (`$NOTIFY_SOCKET`
unset) every call does nothing, so `sorter run` behaves the same from a shell.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("sorter.service")


class Notifier:
    """Sends state changes to the service manager. A failed send is logged once, never raised:
    a hiccup of systemd's socket must not stop the line (its watchdog restarts us if it matters)."""

    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):  # an abstract socket name
            address = "\0" + address[1:]
        self.address = address or None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        if not self.enabled or not lines:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8"), self.address)
            return True
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._failed = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Start-up (or stop) goes on: give it `seconds` more (systemd 236 and later)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def one_line(text: str) -> str:
    """A STATUS= value is one line: a newline would start another KEY=VALUE."""
    return " ".join(str(text).split())[:400]


def watchdog_interval_s(environ=None) -> float | None:
    """systemd's watchdog timeout for this process ($WATCHDOG_USEC, when $WATCHDOG_PID is ours or
    unset), or None when there is no watchdog."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6
