"""`sorter check-config` tells every mistake of a line in one pass: the line file's own, a
misspelt signal name among them, and routing files that are missing or refused."""

from __future__ import annotations

from sorter.controller.cli.main import main
from tests.conftest import CONFIG, copy_config_dir


def line_file(tmp_path, edit=lambda t: t):
    folder = copy_config_dir(tmp_path / "cfg")
    path = folder / "line.yaml"
    path.write_text(edit((CONFIG / "wenling-line1.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    return folder, path


def check(path, capsys) -> tuple[int, str]:
    rc = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return rc, out + err


def test_missing_routes_towns_and_carriers_files_are_errors(tmp_path, capsys):
    folder, path = line_file(tmp_path)
    assert check(path, capsys)[0] == 0
    for name in ("wenling-routes.yaml", "towns.yaml", "carriers.yaml"):
        (folder / name).unlink()
    rc, text = check(path, capsys)
    assert rc == 2 and "OK" not in text
    for name in ("wenling-routes.yaml", "towns.yaml", "carriers.yaml"):
        assert str(folder / name) in text, text


def test_a_misspelt_signal_comes_with_the_other_mistakes(tmp_path, capsys):
    def edit(t):
        t = t.replace("signal: pe_induct}", "signal: pe_inductt}", 1)     # the misspelt name
        t = t.replace("belt_speed_mps: 2.0", "belt_speed_mps: -2.0", 1)    # and a value out of range
        return t.replace("full_signal: C02_full,", "full_signal: C02_ful,", 1)
    folder, path = line_file(tmp_path, edit)
    (folder / "towns.yaml").unlink()
    rc, text = check(path, capsys)
    assert rc == 2
    assert f"{path}:6: line.belt_speed_mps:" in text
    assert f"{path}:9: line.induct.signal: signal 'pe_inductt' is not in io" in text
    c02 = next(i for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "C02_ful," in l)
    assert f"{path}:{c02}: line.chutes.1.full_signal: signal 'C02_ful' is not in io" in text
    assert "routing.towns" in text and str(folder / "towns.yaml") in text


def test_a_refused_route_table_fails_check_config(tmp_path, capsys):
    folder, path = line_file(tmp_path)
    (folder / "wenling-routes.yaml").write_text("rules: []\n", encoding="utf-8")
    rc, text = check(path, capsys)
    assert rc == 2 and "no rules" in text and "no default" in text
