"""The README's commands work in a fresh clone.

Every `sorter …` line of the README's ```sh blocks is either run here (in README order, in a fresh
copy of the repository's config/ folder under tmp_path, with the working directory set so that the
README's relative paths work) and must exit 0, or is skipped on purpose with its reason in SKIP. A
README command that is neither fails the test: a new command is run or consciously skipped.

Commands that use the default config (the shipped example line) are given
`--config config/wenling-line1.yaml` of the copy, so that nothing is written into the repository's
own var/. `line.yaml` in the README is a technician's copy of the example line: the working folder
has one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = "config/wenling-line1.yaml"

# README commands that start with one of these are run (all are quick and touch only the workspace)
RUN = [
    ("check-config",), ("routes", "check"), ("routes", "test"), ("manifest", "import"), ("manifest", "show"),
    ("decode",), ("config-schema",), ("config-docs",), ("export",),
    ("calibrate", "target"), ("calibrate", "points"), ("calibrate", "check"), ("calibrate", "card"),
    ("user",),
]

# README commands (as shlex.join gives them, comments dropped) that are not run here, and why
SKIP = {
    "sorter user add wang.li --role supervisor --config line.yaml": "asks for the password on a terminal "
                                                                     "(tests/test_auth.py gives it on stdin)",
    "sorter sim --parcels 600 --rate 12000 --seed 1 --json":
        "600 parcels take minutes on the fixed ports of the example (Modbus 1502): tests/test_sim_e2e.py "
        "runs short simulations",
    "sorter sim --belt-speed 2.5 --length 150-800 --port 9000": "endless: runs until Ctrl-C",
    "sorter run --config /etc/sorter/line.yaml": "the real line: runs until stopped, on the hardware",
    "sorter plc probe --config line.yaml --plc tcp://192.0.2.10:502": "live inputs of a real PLC",
    "sorter plc watch --config line.yaml": "runs until Ctrl-C against the line's I/O",
    "sorter plc pulse --config line.yaml --diverter D3 --side left --ms 300": "fires a real diverter",
    "sorter run --config line.yaml --test-mode fixed:C05": "runs the real line until stopped",
    "sorter run --config line.yaml --test-mode round-robin": "runs the real line until stopped",
    "sorter calibrate chessboard top --config line.yaml --grab --chessboard 9x6 --square-mm 20 --downstream right":
        "grabs a frame of the target from the camera",
    "sorter calibrate from-card top --config line.yaml --image frames/top-0001.png --downstream right":
        "needs a camera's frame of the printed card (tests/test_calibrate.py renders one)",
    "sorter calibrate report top --config line.yaml --images frames/ --output report/ --exposure-ms 0.1":
        "needs the camera's frames (tests/test_calibrate.py makes a folder and a video)",
    "sorter calibrate latency top --config line.yaml --induct --parcels 10 --save":
        "needs the line's I/O and a camera with parcels passing",
    "sorter calibrate timing --config line.yaml --url http://127.0.0.1:8080": "needs a running line",
    "sorter calibrate timing --config line.yaml --url http://127.0.0.1:8080 --accept":
        "needs a running line (tests/test_calibrate_timing.py runs it against the simulated line's offsets)",
}

# subcommands that read a line config with --config (check-config also takes it as its argument)
TAKES_CONFIG = [("check-config",), ("routes",), ("manifest",), ("export",), ("sim",), ("run",), ("plc",),
                ("camera",), ("calibrate", "chessboard"), ("calibrate", "points"), ("calibrate", "check")]


def readme_commands() -> list[list[str]]:
    """The `sorter` command lines of the README's shell blocks, as argument lists, in order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "sorter":
                out.append(words)
    return out


def starts(words: list[str], prefixes) -> bool:
    return any(tuple(words[1:1 + len(p)]) == p for p in prefixes)


def classify(words: list[str]) -> str:
    if shlex.join(words) in SKIP:
        return "skip"
    return "run" if starts(words, RUN) else "unclassified"


def with_config(words: list[str]) -> list[str]:
    """The command with the workspace's example line when it relies on the default config."""
    args = words[1:]
    if not starts(words, TAKES_CONFIG) or "--config" in args:
        return args
    if args[0] == "check-config" and any(not a.startswith("-") for a in args[1:]):
        return args
    return args + ["--config", EXAMPLE]


# ------------------------------------------------------------------ the workspace: a fresh clone's files
@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "config", tmp_path / "config",
                    ignore=shutil.ignore_patterns("__pycache__", "calibration", "*.db", "*.db-*"))
    # line.yaml: a technician's copy of the example line in the working folder (README, step 1)
    data = yaml.safe_load((tmp_path / EXAMPLE).read_text(encoding="utf-8"))
    for key in ("routes", "towns", "carriers"):
        data["routing"][key] = f"config/{data['routing'][key]}"
    data["routing"]["manifest"] = "manifest.db"   # in its data_dir: var/ beside line.yaml
    data["records"]["database"] = "records.db"
    (tmp_path / "line.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return tmp_path


WAYBILL = "75444664167064"


def prepare(words: list[str], cwd: Path) -> None:
    """What a command needs that a person would have at hand: their own images, a line that has run."""
    if words[1] == "decode":
        import cv2
        import numpy as np
        from sorter.vision.labels import LabelSpec, render_frame, render_label

        for i, name in enumerate(a for a in words[2:] if not a.startswith("-")):
            rng = np.random.default_rng(i)
            frame = render_frame(render_label(LabelSpec(WAYBILL), rng), rng, rotation_deg=10.0 + 40 * i,
                                 blur_sigma=0.4, noise_sigma=2.0)
            assert cv2.imwrite(str(cwd / name), frame)
    if words[1] == "export":
        from sorter.controller.config.load import load_config
        from sorter.controller.records.store import RecordStore

        cfg = load_config(cwd / EXAMPLE)
        Path(cfg.records.database).parent.mkdir(parents=True, exist_ok=True)
        RecordStore(cfg.records.database).close()


def check_output(words: list[str], stdout: str) -> str | None:
    """A few commands must say more than exit 0."""
    if words[1] == "decode" and WAYBILL not in stdout:
        return f"the rendered label's waybill {WAYBILL} was not read"
    return None


# ------------------------------------------------------------------ tests
def test_every_readme_command_is_run_or_skipped_on_purpose():
    cmds = readme_commands()
    assert len(cmds) > 10, "no sorter commands found in the README's ```sh blocks"
    unclassified = [shlex.join(w) for w in cmds if classify(w) == "unclassified"]
    assert not unclassified, ("README commands neither run nor skipped by this test (add their subcommand to "
                              "RUN, or the command to SKIP with a reason):\n  " + "\n  ".join(unclassified))
    present = {shlex.join(w) for w in cmds}
    stale = [c for c in SKIP if c not in present]
    assert not stale, "SKIP lists commands the README no longer has:\n  " + "\n  ".join(stale)


def test_readme_commands_work_in_a_fresh_clone(workspace: Path):
    env = dict(os.environ, PYTHONUTF8="1", COLUMNS="120")
    env.pop("SORTER_API_TOKEN", None)
    failures, ran = [], 0
    for words in readme_commands():
        if classify(words) != "run":
            continue
        prepare(words, workspace)
        args = with_config(words)
        r = subprocess.run([sys.executable, "-m", "sorter", *args], cwd=workspace, env=env,
                           capture_output=True, text=True, timeout=180)
        ran += 1
        problem = f"exit {r.returncode}" if r.returncode != 0 else check_output(words, r.stdout)
        if problem:
            tail = "\n      ".join((r.stderr or r.stdout).strip().splitlines()[-6:])
            failures.append(f"{shlex.join(words)}\n    ran: sorter {shlex.join(args)}\n    {problem}\n      {tail}")
    assert ran >= 10
    assert not failures, "README commands that do not work in a fresh clone:\n" + "\n".join(failures)
    # nothing was written outside the workspace: the repository's own data folder is not the one used
    # (the example line's is config/var/ of the copy, line.yaml's var/ beside it)
    assert (workspace / "config" / "var" / "manifest.db").exists()
    assert (workspace / "var" / "calibration" / "top.json").exists()
