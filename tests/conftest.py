"""What the tests share: the example line's config with overrides (its own databases, its own copy of
the routing files), a free TCP port, and a check that no test leaves a child process running.

Overrides are dotted keys onto the example YAML, applied before validation, so an override is
checked (and its error located) like a technician's edit: {"line.belt_speed_mps": 2.5},
{"line.diverters.0.actuation_ms": 30}, {"io.estop_ok": {"table": "discrete_input", "address": 60}}.
As keyword arguments a double underscore stands for the dot: sim__rate_pph=12000.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

from sorter.controller.config.line import Config
from sorter.controller.config.load import load_config
from sorter.controller.routing.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
EXAMPLE = "wenling-line1.yaml"


def copy_config_dir(dest: Path) -> Path:
    """The example config folder (line, routes, towns, carriers files) copied to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in CONFIG.iterdir():
        if f.is_file() and f.suffix in (".yaml", ".csv", ".json"):
            shutil.copy(f, dest / f.name)
    return dest


def apply_overrides(data: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        parts = key.replace("__", ".").split(".")
        node = data
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def write_line_config(folder: Path, base: str = EXAMPLE, overrides: dict | None = None, **kw) -> Path:
    """An example line config written into `folder` (beside copies of the files it names), with
    its manifest and records databases in `folder` and the simulated line on any free port."""
    folder = copy_config_dir(Path(folder))
    data = yaml.safe_load((CONFIG / base).read_text(encoding="utf-8"))
    data["routing"]["manifest"] = str(folder / "manifest.db")
    data["records"]["database"] = str(folder / "records.db")
    data.setdefault("sim", {})["modbus_port"] = 0
    apply_overrides(data, {**(overrides or {}), **kw})
    path = folder / f"line-{base}" if base != EXAMPLE else folder / "line.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load_line_config(folder: Path, base: str = EXAMPLE, overrides: dict | None = None, **kw) -> Config:
    cfg = load_config(write_line_config(folder, base, overrides, **kw))
    Manifest(cfg.routing.manifest).close()  # an empty manifest, as a fresh install has
    return cfg


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A copy of the example config folder: tests may edit its routes, towns and carriers files."""
    return copy_config_dir(tmp_path / "config")


@pytest.fixture
def example_config(config_dir):
    """example_config(base=EXAMPLE, overrides=None, **kw) -> Config, written into config_dir."""
    def make(base: str = EXAMPLE, overrides: dict | None = None, **kw) -> Config:
        return load_line_config(config_dir, base, overrides, **kw)
    return make


@pytest.fixture(scope="session")
def line_config_file():
    """line_config_file(folder, base=EXAMPLE, overrides=None, **kw) -> Path (for any scope)."""
    return write_line_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """free_port() -> a TCP port nothing listens on now."""
    return _free_port


# ------------------------------------------------------------------------- no child left behind
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _describe(pid: int) -> tuple[str, str]:
    """(state, command line) of a process; ("", "") when it is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return "", ""
    return state, cmd


def _left_behind() -> list[tuple[int, str]]:
    left = []
    for pid in _children(os.getpid()):
        state, cmd = _describe(pid)
        if not state or state == "Z" or "resource_tracker" in cmd:
            continue  # gone, exited (its parent's wait is pending), or multiprocessing's own helper
        left.append((pid, cmd))
    return left


@pytest.fixture(scope="session", autouse=True)
def no_child_process_left():
    """Every child process a test starts (simulated lines, timing and camera processes, socat) has
    ended by the end of the session: the service promises that no child outlives its parent."""
    yield
    end = time.monotonic() + 5  # a child told to stop may still be on its way out
    left = _left_behind()
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = _left_behind()
    if left:
        pytest.fail("child processes left running: " + "; ".join(f"{pid} {cmd[:160]}" for pid, cmd in left))
