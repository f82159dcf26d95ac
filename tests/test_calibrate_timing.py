"""Diverter timing (`sorter calibrate timing`): the simulated line with one diverter misplaced by
30 mm in the controller's config, found from the chutes' confirm eyes, and the correction written
into the line file only when accepted, atomically, with a dated backup.

The simulated line's truth comes from its own config (the example's positions); the controller
runs on a copy whose D4 is 30 mm further downstream. Virtual clock (tests/virtual_line.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sorter.controller.cli.calibrate_timing import TimingError, propose, write_positions
from sorter.controller.config.load import load_config
from sorter.controller.timing.loop import TimingLoop
from sorter.plc.sim.parcels import ParcelPlan
from tests.virtual_line import VirtualLine

MISPLACED = "D4"
ERROR_MM = 30.0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One virtual run: (controller's config file, its Config, the tracker's confirm offsets)."""
    from tests.conftest import load_line_config

    folder = tmp_path_factory.mktemp("timing")
    true_cfg = load_line_config(folder, overrides={"sim.rate_pph": 7000, "plc.test_mode": "round_robin"})
    bad_file = folder / "controller.yaml"
    shutil.copy(folder / "line.yaml", bad_file)
    true_pos = next(d.position_mm for d in true_cfg.line.diverters if d.name == MISPLACED)
    write_positions(bad_file, {MISPLACED: true_pos + ERROR_MM})
    bad_cfg = load_config(bad_file)
    line = VirtualLine(true_cfg, ParcelPlan(true_cfg, 7), 120)
    # the controller runs on the misplaced config; the physics (LinePhysics) keeps the true one
    line.loop = TimingLoop(bad_cfg, line.conn, "virtual", io=line.io, clock=line.clock)
    run = line.run()
    return bad_file, bad_cfg, line.loop.tracker.confirm_offsets(), run, true_cfg


def test_the_misplaced_diverter_is_found_within_10_mm(study):
    _, bad_cfg, offsets, run, true_cfg = study
    # test mode: each parcel to the next chute in turn; every one confirmed landed where it was sent
    sorted_ = [t for t in run.parcels if t.record and t.record["outcome"] == "sorted"]
    assert len(sorted_) >= 100
    assert all(t.landed == t.record["chute"] for t in sorted_)
    assert len(offsets) == len(bad_cfg.line.diverters)
    ref, props = propose(offsets, bad_cfg.line.diverters, bad_cfg.line.belt_speed_mps)
    by = {p.diverter: p for p in props}
    assert abs(by[MISPLACED].error_mm - ERROR_MM) <= 10, by[MISPLACED]
    true_pos = {d.name: d.position_mm for d in true_cfg.line.diverters}
    assert abs(by[MISPLACED].proposed_mm - true_pos[MISPLACED]) <= 10
    for name, p in by.items():
        assert p.n >= 3, p
        if name != MISPLACED:
            assert abs(p.error_mm) < 10, p
    # the sim's slide (head at the diverter -> confirm eye) is the reference the line learned
    assert abs(ref - true_cfg.sim.chute_slide_ms) < 5


def test_too_few_diverters_need_a_reference(study):
    _, bad_cfg, offsets, _, _ = study
    two = {k: offsets[k] for k in list(offsets)[:2]}
    with pytest.raises(TimingError, match="three"):
        propose(two, bad_cfg.line.diverters, 2.0)
    ref, props = propose(two, bad_cfg.line.diverters, 2.0, slide_ms=400.0)
    assert ref == 400.0 and sum(p.note.startswith("fewer") for p in props) == len(props) - 2


def test_write_positions_changes_only_the_numbers_atomically(config_dir):
    path = config_dir / "wenling-line1.yaml"
    before = path.read_text(encoding="utf-8")
    backup = write_positions(path, {"D2": 4012, "D7": 7990})
    after = path.read_text(encoding="utf-8")
    assert backup is not None and backup.read_text(encoding="utf-8") == before
    assert backup.name.startswith("wenling-line1.yaml.") and backup.suffix == ".bak"
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines())
    assert "position_mm: 4012," in changed[0][1] and "position_mm: 7990," in changed[1][1]
    cfg = load_config(path)
    assert {d.name: d.position_mm for d in cfg.line.diverters}["D2"] == 4012
    assert not list(config_dir.glob(".*.tmp"))
    with pytest.raises(TimingError, match="D99"):
        write_positions(path, {"D99": 1})
    assert path.read_text(encoding="utf-8") == after  # a refused change leaves the file alone


class _Status(BaseHTTPRequestHandler):
    payload = b"{}"

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *a):
        pass


def test_the_command_proposes_and_writes_only_when_accepted(study, tmp_path):
    """`sorter calibrate timing --url` against an HTTP status carrying the run's offsets."""
    bad_file, _, offsets, _, _ = study
    cfg_file = tmp_path / "line.yaml"
    shutil.copy(bad_file, cfg_file)
    _Status.payload = json.dumps({"line": {"confirm_offsets": offsets, "belt_speed_mps": 2.0}}).encode()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    cmd = [sys.executable, "-m", "sorter.controller.cli.main", "calibrate", "timing", "--config", str(cfg_file),
           "--url", url]
    try:
        before = cfg_file.read_text(encoding="utf-8")
        dry = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        got = json.loads(dry.stdout)
        d4 = next(p for p in got["diverters"] if p["diverter"] == MISPLACED)
        assert abs(d4["error_mm"] - ERROR_MM) <= 10 and d4["proposed_mm"] is not None
        assert cfg_file.read_text(encoding="utf-8") == before  # nothing written without --accept
        acc = subprocess.run(cmd + ["--accept"], capture_output=True, text=True, timeout=60)
        assert acc.returncode == 0, acc.stderr
        assert "backup" in acc.stdout
        pos = {d.name: d.position_mm for d in load_config(cfg_file).line.diverters}
        assert abs(pos[MISPLACED] - (4 - 1) * 800 - 3200) <= 10  # the example's D4 is at 5600 mm
        assert list(tmp_path.glob("line.yaml.*.bak"))
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)
