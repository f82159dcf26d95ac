"""What `pip install .` puts on a line PC: one top-level import package, `sorter`, with the status
page and the example configs inside it, so that `sorter check-config` and `sorter sim` find their
default config from any directory.

The wheel is built from this checkout and unpacked (installing its dependencies again would
only test pip); it runs with the test virtualenv's libraries, from a directory that holds nothing.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr
    return next(out.glob("sorter-*.whl"))


def test_one_top_level_package_with_page_and_examples(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sorter"}
    for want in ("sorter/controller/api/static/index.html", "sorter/examples/wenling-line1.yaml",
                 "sorter/examples/wenling-routes.yaml", "sorter/examples/carriers.yaml", "sorter/examples/towns.yaml",
                 "sorter/tools/calibrate.py", "sorter/messages.py", "sorter/plc/sim/line.py"):
        assert want in names, want
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]


def test_installed_package_runs_from_any_directory(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*code_or_args: str):
        return subprocess.run([sys.executable, *code_or_args], cwd=elsewhere, capture_output=True, text=True,
                              env=env, timeout=120)

    r = run("-c", "import controller")
    assert r.returncode != 0 and "No module named 'controller'" in r.stderr
    r = run("-c", "import sorter, sorter.controller.cli.main as m; print(sorter.__file__); print(m.DEFAULT_CONFIG)")
    assert r.returncode == 0, r.stderr
    pkg_file, default_config = r.stdout.split()
    assert pkg_file.startswith(str(site)) and default_config.startswith(str(site))
    r = run("-m", "sorter", "check-config")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "line" in r.stdout


def test_every_sub_package_is_in_the_wheel(wheel):
    """pyproject lists the packages by hand (the folders are mapped into `sorter`): a new
    sub-package that is not listed would be missing from a real install, yet work in the checkout."""
    names = set(zipfile.ZipFile(wheel).namelist())
    mapped = {"sorter": "sorter", "controller": "sorter/controller", "vision": "sorter/vision",
              "plc": "sorter/plc", "tools": "sorter/tools", "config": "sorter/examples"}
    missing = []
    for folder, inside in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            if f"{inside}/{rel}" not in names:
                missing.append(f"{folder}/{rel}")
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
