"""Real servers for the site tests: a PostgreSQL cluster and a Mosquitto broker, each started in a
temporary folder on a free loopback port, stoppable and restartable mid-test (the outage drills),
and checked gone afterwards. `scripts/setup.sh test` installs both (Debian's postgresql and
mosquitto); a test is skipped, saying why, only when the binary is absent.

PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user (created by
the Debian package) and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pg_bin(name: str) -> str | None:
    """Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    def __init__(self):
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: run ./scripts/setup.sh test")
        self.user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
            self.user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="sorter-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.user:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, self.user)
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "sorter", "-E", "UTF8", "--no-sync"])
        self.url = f"postgresql://sorter@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}{out.stdout[-500:]}")
        return out

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w", "-t", "240",
                   "start"])

    def stop(self, timeout: float = 180) -> None:
        """Fast shutdown: clients are disconnected, as when the site's database server goes down.
        Returns once the server process is gone (a loaded machine can take long over it)."""
        pid = self.pid()
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                  check=False)
        end = time.monotonic() + timeout
        while pid is not None and _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        pid = self.pid()
        try:
            self.stop()
            if pid is not None and _alive(pid):  # a stop that did not take: end it, and fail the test
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"PostgreSQL {pid} was still running after pg_ctl stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self):
        import psycopg
        return psycopg.connect(self.url, autocommit=True)


class MosquittoServer:
    """A broker with persistence on (its queued messages for persistent sessions survive a restart,
    as a site's broker should be set up)."""

    def __init__(self):
        self.bin = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto")
                                                 else None)
        if not self.bin:
            pytest.skip("mosquitto not installed: run ./scripts/setup.sh test")
        self.dir = Path(tempfile.mkdtemp(prefix="sorter-mqtt-"))
        os.chmod(self.dir, 0o777)  # as root mosquitto drops to its own user, which writes the persistence file
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nautosave_interval 1\nlog_dest file {self.dir}/log\n"
            "log_type error\nlog_type warning\nlog_type notice\n", encoding="utf-8")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        self.proc = subprocess.Popen([self.bin, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]!r}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its persistence file and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def close(self) -> None:
        self.stop()
        assert self.proc is None or self.proc.poll() is not None, "mosquitto still running"
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres():
    srv = PostgresServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@pytest.fixture
def mosquitto():
    srv = MosquittoServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.close()
