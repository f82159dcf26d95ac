"""The simulated line is a world of its own: it judges the parcels by its own truth table
(`sim.destinations`), sends its pre-advice as manifest files through the inbox a user's carriers
use, and makes its own check digits. So a wrong route rule shows up as mis-sorts instead of being
copied into the expected answer; a clean table shows none.

Also: the manifest inbox (done/, refused/ with the reasons, .part files left alone, nothing
imported twice) and the truth table's validation messages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.config.routing import manifest_inbox_folder
from sorter.controller.routing.inbox import ManifestInbox, pending_files, wait_imported
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import Router
from sorter.plc.sim.advice import SimAdvice
from sorter.plc.sim.line import SimLine
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.waybills import gs1_check_digit, s10_check_digit

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

ROOT = Path(__file__).resolve().parent.parent
TOWN, RIGHT, WRONG = "泽国镇", "C06", "C07"          # the rule the tests break: 泽国镇's parcels to 大溪镇's chute
GOOD_RULE, BAD_RULE = f"{{town: {TOWN}, chute: {RIGHT}}}", f"{{town: {TOWN}, chute: {WRONG}}}"


def config_copy(tmp: Path, broken: bool = False) -> Path:
    """config/ copied to tmp (its databases then in its data_dir, tmp/config/var), on any free Modbus port; `broken`:
    one route rule sends a town to another town's chute."""
    dst = tmp / "config"
    shutil.copytree(ROOT / "config", dst, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    line = dst / "wenling-line1.yaml"
    line.write_text(line.read_text(encoding="utf-8").replace("modbus_port: 1502", "modbus_port: 0"), encoding="utf-8")
    if broken:
        routes = dst / "wenling-routes.yaml"
        text = routes.read_text(encoding="utf-8")
        assert text.count(GOOD_RULE) == 1
        routes.write_text(text.replace(GOOD_RULE, BAD_RULE), encoding="utf-8")
    return line


# ---- the truth does not come from the route table ---------------------------------------------
def test_truth_ignores_the_route_table(tmp_path):
    cfg = load_config(config_copy(tmp_path, broken=True))
    adv, plan = SimAdvice(cfg, 3), ParcelPlan(cfg, 3)
    parcels = [plan.get(i) for i in range(400)]
    ours = [p for p in parcels if p.town == TOWN]
    assert ours and all(adv.expected_chutes(p) == (RIGHT,) for p in ours)
    rows = [adv.row(p) for p in parcels]
    codes = {r[2] for r, p in zip(rows, parcels) if r[2] and p.town == TOWN}
    assert codes and all(c.startswith("576-W06 ") for c in codes)   # the table's sort codes, as printed


def judge_advice_through_the_inbox(tmp_path, broken: bool) -> tuple[Counter, Counter]:
    """The simulated carriers' advice file, imported by the inbox, routed by the router, judged by
    the sim's own table: (wrong, right) counts by (town, chute)."""
    cfg = load_config(config_copy(tmp_path, broken=broken))
    inbox = ManifestInbox(manifest_inbox_folder(cfg.routing, sim=True), cfg.routing.manifest, settle_s=0)
    plan = ParcelPlan(cfg, 3)
    sim = SimLine(cfg, 3, 300, plan, importer=lambda _path: inbox.poll())
    path = sim.advise(300)
    inbox.close()
    assert path.parent.resolve() == tmp_path / "config" / "var" / "manifest-inbox" and not path.exists()
    assert (path.parent / "done" / path.name).exists() and not list(path.parent.glob("*.part"))
    router = Router.from_config(cfg)
    wrong, right = Counter(), Counter()
    for p in (plan.get(i) for i in range(300)):
        if not p.in_manifest:
            continue
        d = router.decide([("code128", p.waybill)])
        assert d.outcome == "sorted", d
        (right if d.chute in sim.advice.expected_chutes(p) else wrong)[(p.town, d.chute)] += 1
    router.close()
    return wrong, right


def test_the_sim_advice_through_the_inbox_shows_the_broken_rule(tmp_path):
    """The quick, in-process version of the e2e test below."""
    wrong, right = judge_advice_through_the_inbox(tmp_path, broken=True)
    assert set(wrong) == {(TOWN, WRONG)} and wrong[(TOWN, WRONG)] > 5, wrong
    assert right[(TOWN, RIGHT)] > 0      # its parcels advised by sort code still find 576-W06's rule


def test_the_sim_advice_on_the_clean_table_is_all_right(tmp_path):
    """The clean table, judged the same way, has no mis-sort: the broken rule above is the only
    difference. (`sorter sim` on the clean table, end to end, is tests/test_sim_e2e.py's run.)"""
    wrong, right = judge_advice_through_the_inbox(tmp_path, broken=False)
    assert not wrong, wrong
    assert right[(TOWN, RIGHT)] > 5 and len({town for town, _ in right}) > 10, right


def test_own_check_digits():
    assert s10_check_digit("12345678") == 5          # EA 12345678 5 CN, the UPU's example
    assert s10_check_digit("00000120") == 0 and s10_check_digit("00000000") == 5   # 10 -> 0, 11 -> 5
    assert gs1_check_digit("400638133393") == 1      # EAN-13 4006381333931
    assert gs1_check_digit("7351353") == 7           # EAN-8 73513537
    assert gs1_check_digit("03600029145") == 2       # UPC-A 036000291452


# ---- the whole system, as a user runs it ------------------------------------------------------
def run_sim(cfg: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "sorter", "sim", "--config", str(cfg), "--parcels", "80", "--rate", "12000",
         "--seed", "3", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=420)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    return {**json.loads(lines[0]), "rc": proc.returncode, "stderr": proc.stderr}


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    return run_sim(config_copy(tmp_path_factory.mktemp("broken"), broken=True))


def test_sorter_sim_reports_the_broken_rule_as_mis_sorts(broken_run):
    res = broken_run
    assert res["rc"] == 1, res["stderr"][-3000:]    # `sorter sim` fails a run with a parcel in a wrong chute
    assert res["parcels"] == 80 and res["unrecorded"] == 0
    assert res["wrong_chute"] > 0 and res["mis_sorted"] > 0, res
    wrong = [m for m in res["mis_sorts"] if m["got"] == WRONG]
    assert wrong and all(m["town"] == TOWN and m["want"] == [RIGHT] for m in wrong), res["mis_sorts"]
    # nothing else is wrong: every parcel in a wrong chute is one of that town's (a sortable parcel
    # rejected is the safe side: a loaded machine may starve a camera of a frame)
    assert all(m["town"] == TOWN for m in res["mis_sorts"] if m["got"] != "REJECT"), res["mis_sorts"]


# ---- the manifest inbox -------------------------------------------------------------------------
def drop(folder: Path, name: str, text: str, age_s: float = 10.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def test_inbox_imports_a_good_file_and_moves_it_to_done(tmp_path):
    box = tmp_path / "inbox"
    drop(box, "a.csv", "waybill,town,sort_code,address\n75123456789012,泽国镇,,\nSF1423456789012,,576-W07 01,\n")
    drop(box, "b.json", json.dumps([{"waybill": "YT7512345678901", "address": "温岭市横径村1号"}], ensure_ascii=False))
    inbox = ManifestInbox(box, tmp_path / "m.db")
    res = inbox.poll()
    assert [(r.name, r.status) for r in res] == [("a.csv", "done"), ("b.json", "done")]
    assert (box / "done" / "a.csv").exists() and (box / "done" / "b.json").exists() and not (box / "a.csv").exists()
    assert res[0].report.imported == 2 and res[0].moved_to == box / "done" / "a.csv"
    m = Manifest(tmp_path / "m.db", readonly=True)
    assert m.lookup("75123456789012") == "泽国镇" and m.lookup_row("SF1423456789012").sort_code == "576-W07-01"
    assert m.lookup_row("YT7512345678901").address == "温岭市横径村1号"
    m.close()
    assert inbox.poll() == []                       # nothing left, nothing imported twice
    # the same name again later: imported, kept beside the first in done/
    drop(box, "a.csv", "waybill,town\n75123456789012,大溪镇\n")
    assert [r.status for r in inbox.poll()] == ["done"] and (box / "done" / "a-2.csv").exists()
    inbox.close()


def test_inbox_refuses_bad_files_with_the_reasons(tmp_path):
    box = tmp_path / "inbox"
    drop(box, "rows.csv", "运单号,乡镇\n75123456789012,泽国镇\nbad!,大溪镇\n73000000000001,\n")
    drop(box, "header.csv", "foo,bar\n1,2\n", age_s=5)
    inbox = ManifestInbox(box, tmp_path / "m.db")
    res = {r.name: r for r in inbox.poll()}
    assert [r.status for r in res.values()] == ["refused", "refused"]
    why = (box / "refused" / "rows.csv.why").read_text(encoding="utf-8")
    assert f"{box / 'refused' / 'rows.csv'}:3: bad waybill 'bad!'" in why
    assert f"{box / 'refused' / 'rows.csv'}:4: waybill 73000000000001: empty town" in why
    assert "1 good rows imported, 2 bad rows not" in why and res["rows.csv"].report.imported == 1
    why = (box / "refused" / "header.csv.why").read_text(encoding="utf-8")
    assert why.startswith(f"{box / 'refused' / 'header.csv'}:1: header must name a waybill column")
    assert "nothing imported" in why
    assert not pending_files(box) and inbox.poll() == []


def test_inbox_leaves_part_and_unsettled_files_alone_and_takes_the_oldest_first(tmp_path):
    box = tmp_path / "inbox"
    drop(box, "late.csv", "waybill,town\n75123456789012,大溪镇\n", age_s=20)
    drop(box, "early.csv", "waybill,town\n75123456789012,泽国镇\n", age_s=30)
    drop(box, "coming.csv.part", "waybill,town\n75000000000009,松门镇\n")
    drop(box, "fresh.csv", "waybill,town\n75000000000010,松门镇\n", age_s=0)
    drop(box, "notes.txt", "not advice")
    inbox = ManifestInbox(box, tmp_path / "m.db", settle_s=5)
    assert [r.name for r in inbox.poll()] == ["early.csv", "late.csv"]   # the newest advice counts last
    assert (box / "coming.csv.part").exists() and (box / "fresh.csv").exists() and (box / "notes.txt").exists()
    m = Manifest(tmp_path / "m.db", readonly=True)
    assert m.lookup("75123456789012") == "大溪镇" and m.lookup("75000000000009") is None
    m.close()
    os.replace(box / "coming.csv.part", box / "coming.csv")          # the upload completes
    assert not wait_imported(box, 0.1)                              # fresh.csv waits too
    assert wait_imported(box, 10, poll=ManifestInbox(box, tmp_path / "m.db", settle_s=0).poll)
    assert sorted(p.name for p in (box / "done").iterdir()) == ["coming.csv", "early.csv", "fresh.csv", "late.csv"]


def test_inbox_imports_a_file_it_cannot_move_only_once(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "done").write_text("a file where the folder should be", encoding="utf-8")
    drop(box, "a.csv", "waybill,town\n75123456789012,泽国镇\n")
    inbox = ManifestInbox(box, tmp_path / "m.db")
    (r,) = inbox.poll()
    assert r.status == "done" and r.moved_to is None and (box / "a.csv").exists()
    assert inbox.poll() == []


# ---- the truth table's checks -------------------------------------------------------------------
def edited_line(tmp: Path, old: str, new: str) -> Path:
    line = config_copy(tmp)
    text = line.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    line.write_text(text.replace(old, new), encoding="utf-8")
    return line


def line_no(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize("old, new, where, message", [
    ("{town: 泽国镇, chutes: [C06]", "{town: 泽国镇, chutes: [C66]", "sim.destinations.5.chutes.0",
     "泽国镇: no chute 'C66' in line.chutes"),
    ("{town: 泽国镇, chutes: [C06]", "{town: 泽国镇, chutes: [REJECT]", "sim.destinations.5.chutes.0",
     "泽国镇: the reject chute REJECT is where nothing sortable belongs"),
    ("{town: 大溪镇, chutes: [C07], sort_codes: [576-W07]}", "{town: 大溪镇, chutes: [C07], sort_codes: [576-W06]}",
     "sim.destinations.6.sort_codes.0", "sort code 576-W06 of 大溪镇 is already 泽国镇's (sim.destinations.5)"),
    ("{town: 大溪镇, chutes: [C07], sort_codes: [576-W07]}", "{town: 泽国镇, chutes: [C07]}",
     "sim.destinations.6", "泽国镇 is already given by sim.destinations.5"),
])
def test_truth_table_mistakes_name_the_key_and_line(tmp_path, old, new, where, message):
    path = edited_line(tmp_path, old, new)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:{line_no(path, new)}: {where}: {message}" in str(exc.value), str(exc.value)


def test_every_town_of_the_parcels_needs_a_truth(tmp_path):
    path = edited_line(tmp_path, "    - {town: 坞根镇, chutes: [C16], sort_codes: [576-W16]}\n",
                       "    - {town: 坞根镇, carriers: [SF], chutes: [C16], sort_codes: [576-W16]}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"{path}:{line_no(path, '  towns: [')}: sim.towns.15: 坞根镇 has no entry in sim.destinations for " \
           f"every carrier" in str(exc.value), str(exc.value)


def test_a_carrier_entry_wins_over_the_towns(tmp_path):
    path = edited_line(tmp_path, "    - {town: 坞根镇, chutes: [C16], sort_codes: [576-W16]}\n",
                       "    - {town: 坞根镇, chutes: [C16], sort_codes: [576-W16]}\n"
                       "    - {town: 坞根镇, carriers: [sf], chutes: [C15], alternate: C14}\n")
    cfg = load_config(path)
    adv, plan = SimAdvice(cfg, 1), ParcelPlan(cfg, 1)
    ps = [p for p in (plan.get(i) for i in range(600)) if p.town == "坞根镇"]
    assert {adv.expected_chutes(p) for p in ps if p.carrier == "SF"} == {("C15",)}
    assert {adv.expected_chutes(p) for p in ps if p.carrier != "SF"} == {("C16",)}
    sf = next(p for p in ps if p.carrier == "SF")
    assert adv.alternates(sf) == {"C14"} and adv.row(sf)[2] is None   # no sort codes given for SF: by town
    bad = cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"destinations": [
        *cfg.sim.destinations[:-1], cfg.sim.destinations[-1].model_copy(update={"carriers": ["DHL"]})]})})
    with pytest.raises(ValueError, match=r"sim.destinations.16.carriers: the simulated line makes no DHL"):
        SimAdvice(bad, 1)
