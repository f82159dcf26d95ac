"""`sorter install-service`: its --dry-run says every step and changes nothing; a real install
into a temporary root (--prefix), offline from a folder of wheels (--wheels, as a line PC without
internet does), gives a virtualenv of its own whose `sorter` imports its own copy, never the
checkout's; the config in etc/sorter with its data in var/lib/sorter; a root-only env file with a
token; a unit that `systemd-analyze verify` accepts. A second run keeps the config and the token."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SORTER = [sys.executable, "-m", "sorter"]


def sorter(*args, timeout=120, env=None):
    return subprocess.run([*SORTER, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_dry_run_says_every_step_and_changes_nothing(tmp_path):
    watched = [Path(p) for p in ("/opt/sorter", "/etc/sorter", "/var/lib/sorter", "/etc/systemd/system/sorter.service",
                                 "/usr/local/bin/sorter")]
    before = {p: p.exists() for p in watched}
    r = sorter("install-service", "--dry-run")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert {p: p.exists() for p in watched} == before  # nothing made
    assert out.startswith("would do (--dry-run):")
    # its own virtualenv, and sorter installed into it from a copy of the tree, not editable
    assert "-m venv /opt/sorter/venv" in out or "the virtualenv /opt/sorter/venv is there" in out
    pip = next(l for l in out.splitlines() if "-m pip install" in l)
    assert pip.strip().startswith("$ /opt/sorter/venv/bin/python -m pip install")
    assert " -e " not in pip and "--editable" not in pip and not pip.rstrip().endswith(str(ROOT))
    assert f"--constraint {ROOT / 'constraints.txt'}" in pip
    assert "check: the service imports its own copy, not the checkout's" in out
    assert ("useradd --system" in out or "usermod --append" in out) and "--groups dialout,video sorter" in out
    for path in ("/etc/sorter/line.yaml", "/etc/sorter/env", "/etc/systemd/system/sorter.service", "/var/lib/sorter"):
        assert path in out
    assert "systemctl enable --now sorter" in out and "journalctl -u sorter" in out
    steps = [l for l in out.splitlines() if l.startswith("[")]
    assert [int(l[1:l.index("]")]) for l in steps] == list(range(1, len(steps) + 1))


def test_wheels_and_prefix_show_in_the_plan(tmp_path):
    r = sorter("install-service", "--dry-run", "--prefix", str(tmp_path), "--wheels", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr
    assert f"--no-index --find-links {tmp_path / 'w'}" in r.stdout
    assert f"{tmp_path}/opt/sorter/venv" in r.stdout and f"{tmp_path}/etc/sorter/line.yaml" in r.stdout
    assert "skipped under --prefix" in r.stdout and "useradd" not in r.stdout
    assert not (tmp_path / "opt").exists()


def test_not_a_source_tree_is_one_clear_line(tmp_path):
    r = sorter("install-service", "--dry-run", "--source", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"sorter install-service: {tmp_path}: not a sorter source tree")


# ------------------------------------------------------------------ a real install, offline, under a prefix

def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return project["project"]["dependencies"] + project["build-system"]["requires"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    # the folder a line PC without internet is given (README): wheels of every dependency, pinned,
    # and of the build backend
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
                        "--constraint", str(ROOT / "constraints.txt"), *requirements()],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        pytest.skip(f"cannot make the wheel folder here (no package index?): {r.stderr.strip()[-300:]}")
    root = tmp / "root"
    r = sorter("install-service", "--prefix", str(root), "--wheels", str(wheels), timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, r


def test_the_install_has_its_own_copy_and_runs_without_the_checkout(installed):
    root, r = installed
    venv = root / "opt/sorter/venv"
    py = venv / "bin/python"
    # cwd=/ and no PYTHONPATH: nothing of the checkout on the path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(py), "-c", "import sorter; print(sorter.__file__)"], capture_output=True,
                           text=True, cwd="/", env=env, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT)
    site = Path(where).parents[1]
    assert not list(site.glob("__editable__*")) and not any(str(ROOT) in p.read_text() for p in site.glob("*.pth"))
    cfg = root / "etc/sorter/line.yaml"
    c = subprocess.run([str(venv / "bin/sorter"), "check-config", str(cfg)], capture_output=True, text=True,
                       cwd="/", env=env, timeout=120)
    assert c.returncode == 0, c.stderr
    data = root / "var/lib/sorter"
    assert f"records   {data}/records.db" in c.stdout and f"manifest {data}/manifest.db" in c.stdout
    assert f"data      {data}" in c.stdout
    assert (root / "etc/sorter/wenling-routes.yaml").exists() and (root / "usr/local/bin/sorter").resolve() == \
        (venv / "bin/sorter").resolve()


def test_the_token_is_in_a_root_only_env_file(installed):
    root, _ = installed
    env = root / "etc/sorter/env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    token = [l for l in env.read_text().splitlines() if l.startswith("SORTER_API_TOKEN=")]
    assert len(token) == 1 and len(token[0].split("=", 1)[1]) >= 24


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_installed_unit_points_at_the_install_and_verifies(installed):
    root, _ = installed
    unit = root / "etc/systemd/system/sorter.service"
    text = unit.read_text()
    assert f"ExecStart={root}/opt/sorter/venv/bin/sorter run --config {root}/etc/sorter/line.yaml" in text
    assert f"EnvironmentFile=-{root}/etc/sorter/env" in text
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_a_second_run_keeps_the_config_and_the_token(installed):
    root, _ = installed
    r = sorter("install-service", "--dry-run", "--prefix", str(root))
    assert r.returncode == 0, r.stderr
    assert f"config {root}/etc/sorter/line.yaml is there: kept" in r.stdout
    assert f"{root}/etc/sorter/env is there: kept" in r.stdout
    assert "is there: sorter is upgraded in it" in r.stdout


def test_every_dependency_is_pinned_within_its_bounds():
    """constraints.txt pins each requirement of pyproject.toml (the test extra's too) at a version its
    bounds allow, and every one has an upper bound on its major version. A dependency added without
    a pin fails here: run `.venv/bin/python scripts/constraints.py`."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.strip().split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]
    unpinned = [str(r) for r in reqs if canonicalize_name(r.name) not in pins]
    outside = [f"{r} (pinned {pins[canonicalize_name(r.name)]})" for r in reqs
               if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)])]
    unbounded = [str(r) for r in reqs if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not unpinned and not outside and not unbounded, (unpinned, outside, unbounded)
