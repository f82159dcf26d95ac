"""Where a line's files are: config files (routes, towns, carriers) beside the line file; every file
the line writes (records, manifest, no-read images, calibrations, last good route tables) in its
data folder — `data_dir:`, else $STATE_DIRECTORY (systemd's StateDirectory=), else var/ beside the
line file. The example lines copied to /etc/sorter put nothing there."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import yaml

from sorter.controller.config.load import load_config
from sorter.controller.config.vision import noread_dir
from sorter.controller.routing import last_good
from sorter.controller.service.service import Service
from sorter.tools.calibrate import output_path
from tests.conftest import ROOT

LINES = sorted(p.name for p in (ROOT / "config").glob("*line*.yaml"))


def copy_examples(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for p in (ROOT / "config").glob("*.yaml"):
        shutil.copy(p, folder / p.name)
    return folder


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(autouse=True)
def no_state_directory(monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.mark.parametrize("name", LINES)
def test_under_systemd_the_examples_keep_their_data_in_the_state_directory(tmp_path, monkeypatch, name):
    etc = copy_examples(tmp_path / "etc/sorter")
    state = tmp_path / "var/lib/sorter"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    cfg = load_config(etc / name)
    assert cfg.data_dir == state
    written = [cfg.records.database, cfg.routing.manifest, noread_dir(cfg), last_good.folder_of(cfg)]
    written += [noread_dir(cfg, c) for c in cfg.cameras]
    assert all(Path(p).is_relative_to(state) for p in written), written
    assert all(Path(p).is_relative_to(etc) for p in (cfg.routing.routes, cfg.routing.towns, cfg.routing.carriers))


def test_from_a_shell_the_data_is_in_var_beside_the_line_file(tmp_path):
    etc = copy_examples(tmp_path / "cfg")
    cfg = load_config(etc / "wenling-line1.yaml")
    assert cfg.data_dir == etc / "var"
    assert cfg.records.database == etc / "var/records.db" and cfg.routing.manifest == etc / "var/manifest.db"
    assert noread_dir(cfg) == etc / "var/noreads" and last_good.folder_of(cfg) == etc / "var/last-good-routes"


def write(path: Path, **top) -> Path:
    data = yaml.safe_load((ROOT / "config/wenling-line1.yaml").read_text(encoding="utf-8"))
    data.update(top)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_data_dir_in_the_file_wins_relative_to_the_file(tmp_path, monkeypatch):
    etc = copy_examples(tmp_path / "etc")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    cfg = load_config(write(etc / "line.yaml", data_dir="../data/line1"))
    assert cfg.data_dir == etc / "../data/line1"
    assert cfg.records.database == etc / "../data/line1/records.db"
    cfg = load_config(write(etc / "line.yaml", data_dir=str(tmp_path / "abs")))
    assert cfg.routing.manifest == tmp_path / "abs/manifest.db"


def test_an_absolute_data_path_stays_where_it_says(tmp_path):
    etc = copy_examples(tmp_path / "etc")
    data = yaml.safe_load((etc / "wenling-line1.yaml").read_text(encoding="utf-8"))
    cfg = load_config(write(etc / "line.yaml", records={"database": str(tmp_path / "elsewhere/r.db")},
                            routing=dict(data["routing"], manifest="m/manifest.db")))
    assert cfg.records.database == tmp_path / "elsewhere/r.db"
    assert cfg.routing.manifest == etc / "var/m/manifest.db"


def test_the_service_writes_nothing_beside_its_config(tmp_path, monkeypatch):
    """Records, the journal and the last good route tables of a real start go to the state
    directory; /etc/sorter stays as it was installed."""
    etc = copy_examples(tmp_path / "etc/sorter")
    state = tmp_path / "var/lib/sorter"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    before = files_in(etc)
    cfg = load_config(etc / "wenling-line1.yaml")
    svc = Service(cfg)
    svc.open_records()
    svc.open_routing()
    svc.close_routing()
    svc.close_records()
    assert files_in(etc) == before
    assert (state / "records.db").exists() and (state / "last-good-routes/index.json").exists()


def test_calibration_is_written_to_the_data_folder_and_an_old_one_beside_the_config_still_read(tmp_path):
    etc = copy_examples(tmp_path / "etc")
    path = etc / "wenling-line1.yaml"
    cfg = load_config(path)
    cam = cfg.cameras[0]
    assert output_path(argparse.Namespace(config=str(path), output=None), cam) == etc / "var/calibration/top.json"
    (etc / "calibration").mkdir()
    (etc / "calibration/top.json").write_text("{}", encoding="utf-8")  # from before data_dir
    assert load_config(path).cameras[0].calibration == etc / "calibration/top.json"
    (etc / "var/calibration").mkdir(parents=True)
    (etc / "var/calibration/top.json").write_text("{}", encoding="utf-8")
    assert load_config(path).cameras[0].calibration == etc / "var/calibration/top.json"
