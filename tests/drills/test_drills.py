"""Fault drills on the whole system (the simulated line over real Modbus TCP, real camera workers,
real SQLite): kill what a real line loses — the timing process, a camera worker, the whole service —
and stop it as systemd does, then count what was lost. Each drill prints its tally; the target is
always the same: every parcel that entered the belt has exactly one record, none overwritten, none
in a wrong chute.

The longer drills (a soak, 20 link cuts through a proxy) are in bench/drills.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sorter.controller.config.load import load_config
from sorter.controller.harness import SimHarness
from sorter.controller.records.journal import RESTARTED
from sorter.controller.routing.manifest import Manifest
from tests.conftest import write_line_config
from tests.plc_helpers import RawModbusTcp
from tests.test_processes import wait_for as wait

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time


def line(tmp_path: Path, **overrides):
    path = write_line_config(tmp_path / "config", overrides={"sim.rate_pph": 12000, **overrides})
    cfg = load_config(path)
    Manifest(cfg.routing.manifest).close()
    return path, cfg


def db_rows(db: Path, run_id: str | None = None) -> list[dict]:
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        sql = "SELECT run_id, parcel_id, outcome, reason FROM parcels"
        rows = c.execute(sql + (" WHERE run_id = ?" if run_id else ""), (run_id,) if run_id else ()).fetchall()
        return [dict(r) for r in rows]


def journal_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT run_id, parcel_id FROM journal").fetchall()


def bad_rows(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("SELECT error FROM bad_records")]


def tally(what: str, rows: list[dict], inducted: int | None = None) -> dict:
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    out = {"records": len(rows), "outcomes": outcomes}
    if inducted is not None:
        out["inducted"] = inducted
        out["lost"] = inducted - len({(r["run_id"], r["parcel_id"]) for r in rows})
    print(f"\n[drill] {what}: {out}")
    return out


def contiguous(rows: list[dict]) -> list[int]:
    """Parcel ids are given in induct order: a gap in one run's ids is a parcel without a record."""
    ids = sorted(r["parcel_id"] for r in rows)
    return sorted(set(range(1, ids[-1] + 1)) - set(ids)) if ids else []




# --------------------------------------------------------------------------- in-process drills
@pytest.mark.parametrize("victim", ["timing", "camera"])
def test_kill_9_of_a_child_mid_run_loses_no_record(tmp_path, victim):
    _, cfg = line(tmp_path)
    h = SimHarness(cfg, parcels=45, seed=21)
    try:
        h.start()
        wait(lambda: len(h.records) >= 15, 120, "15 records")  # and a belt full of parcels
        svc = h.svc
        pid = svc.timing_proc.pid if victim == "timing" else svc.camera_procs[cfg.cameras[0].name].pid
        os.kill(pid, signal.SIGKILL)
        wait(lambda: (svc.timing_proc.pid if victim == "timing" else svc.camera_procs[cfg.cameras[0].name].pid) != pid,
             30, f"the {victim} process restarted")
        truth = h.run_until_done(240)
        assert h.svc.writer.flush(30)
        rows = db_rows(Path(cfg.records.database), svc.run_id)
        t = tally(f"kill -9 of the {victim} process", rows, truth["inducted"])
        keys = [(r["run_id"], r["parcel_id"]) for r in rows]
        assert len(keys) == len(set(keys)), "a parcel id recorded twice"
        assert truth["inducted"] + truth["held"] >= 45, truth
        assert t["lost"] == 0 and len(rows) == truth["inducted"], (t, truth["inducted"], contiguous(rows))
        assert contiguous(rows) == []
        astray = [m for m in truth["mis_sorts"] if m["got"] != cfg.line.reject_chute]
        if victim == "timing":
            # a diverter that was on at the kill stays on until the PLC's heartbeat watchdog drops it
            # (sim.watchdog_ms): a parcel behind may be pushed in. It was in flight at the kill, so
            # its record must say fault, never sorted where it is not
            # (ids are given in induct order from 1, every parcel one, as asserted above)
            said = {r["parcel_id"]: r["outcome"] for r in rows}
            assert all(said.get(m["index"] + 1) == "fault" for m in astray), \
                (astray, [said.get(m["index"] + 1) for m in astray])
            assert len(astray) <= 2, astray
        else:
            assert astray == [], astray
        assert not any("collision" in e for e in bad_rows(Path(cfg.records.database)))
        assert journal_rows(Path(cfg.records.database)) == []
        if victim == "timing":
            assert any(a["id"] == "timing_process" for a in h.svc.alarms.list())
            assert h.svc.timing_starts == 2
    finally:
        h.stop()
    assert journal_rows(Path(cfg.records.database)) == []


def test_sigterm_drains_then_switches_everything_off(tmp_path):
    """systemd's stop: induction off, the parcels in flight tracked to their chutes, every record
    written, every output off — checked on the simulated I/O module by another Modbus client."""
    _, cfg = line(tmp_path, **{"plc.drain_s": 10})
    h = SimHarness(cfg, parcels=400, seed=5)
    try:
        h.start()
        wait(lambda: len(h.records) >= 25, 120, "25 records")
        app = h.app
        # what App.serve() does on SIGTERM, up to (not including) the simulated line itself
        while app.started and app.started[-1].name not in ("simulated line", "simulated cameras"):
            part = app.started.pop()
            part.stop()
        coils = _diverter_coils(h)
        truth = h.truth()
    finally:
        h.stop()
    rows = db_rows(Path(cfg.records.database))
    t = tally("SIGTERM mid-run (drain)", rows, truth["inducted"])
    assert not any(coils.values()), coils
    assert t["lost"] == 0 and contiguous(rows) == []
    assert journal_rows(Path(cfg.records.database)) == []
    drained = [r for r in rows if r["reason"] == "controller stopped"]
    # the parcels in flight at the stop were tracked to the end, not thrown to reject
    assert len(drained) <= 2, drained


def _diverter_coils(h: SimHarness) -> dict[str, bool]:
    c = RawModbusTcp("127.0.0.1", h.sim.modbus_port)
    try:
        out = {}
        for d in h.cfg.line.diverters:
            for sig in d.outputs.values():
                io = h.cfg.io[sig]
                out[sig] = bool(c.read_bits(io.unit, io.address, 1)[0])
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------- the whole service
def _sorter_sim(cfg: Path, tmp_path: Path, port: int, *args: str) -> subprocess.Popen:
    log = open(tmp_path / f"sorter-{port}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "sorter", "sim", "--config", str(cfg), "--port", str(port),
                             "--host", "127.0.0.1", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _status(port: int) -> dict | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def test_kill_9_of_the_service_then_restart_records_the_belt_as_fault(tmp_path, free_port):
    path, cfg = line(tmp_path)
    db = Path(cfg.records.database)
    port = free_port()
    proc = _sorter_sim(path, tmp_path, port)
    try:
        st = wait(lambda: (s := _status(port)) and s["records"]["written"] >= 20 and s, 180, "20 records written")
        run_id = st["line"]["run_id"]
        os.killpg(proc.pid, signal.SIGKILL)  # the service and, by their parent-death signal, its children
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    open_before = [pid for r, pid in journal_rows(db) if r == run_id]
    recorded_before = db_rows(db, run_id)
    # the restart: a short run on the same records
    r = subprocess.run([sys.executable, "-m", "sorter", "sim", "--config", str(path), "--parcels", "3", "--json"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = db_rows(db, run_id)
    t = tally("kill -9 of the service, then a restart", rows)
    restarted = [x for x in rows if x["reason"] == RESTARTED]
    print(f"[drill] on the belt at the kill: {len(open_before)}; recorded before it: {len(recorded_before)}")
    assert sorted(x["parcel_id"] for x in restarted) == sorted(open_before)
    assert contiguous(rows) == [], "a parcel inducted before the kill has no record"
    assert len(rows) == len(recorded_before) + len(open_before)
    assert journal_rows(db) == []
    assert not any("collision" in e for e in bad_rows(db))


# --------------------------------------------------------------------------- the PLC link
def test_the_plc_link_cut_and_restored_20_times_sends_nothing_astray(tmp_path):
    """Through a TCP proxy the drill controls: reset, black-holed and slow (200 or 80 ms each way), in turn.
    While the link is slow no diverter is switched on (controller/timing/link_pace.py). What the PC
    cannot help: a diverter already on when the link turns slow is switched off only when the slow
    link delivers the switch-off, and one on when the link is lost only when the module's watchdog
    drops it. The line here is set up as the README says to set up a real one: a 25 ms heartbeat and
    a 100 ms watchdog (the shortest many remote-I/O modules take), so that a diverter left on drops
    before the next parcel's centre reaches it. Only such a spell, which the controller counts, may
    send a parcel astray, and then its record must not say it was sorted where it is not."""
    from tests.tcp_proxy import TcpProxy

    _, cfg = line(tmp_path, **{"plc.heartbeat": {"signal": "heartbeat", "period_ms": 25}, "sim.watchdog_ms": 100})
    proxy = TcpProxy()
    h = SimHarness(cfg, parcels=10_000, seed=9)
    h.app._plc_url = proxy.url  # the controller talks to the line through the proxy
    try:
        h.app.start()
        proxy.upstream = ("127.0.0.1", h.sim.modbus_port)
        h.app.wait_ready(60)
        h.sim.go()
        wait(lambda: len(h.records) >= 10, 120, "10 records")
        modes = ["drop", "blackhole", "delay"]
        for i in range(20):
            # 200 ms each way is past plc.timeout_s (a lost link); 80 ms is a link that still answers
            proxy.set(modes[i % 3], delay_s=0.2 if i // 3 % 2 == 0 else 0.08)
            time.sleep(0.6)
            proxy.set("pass")
            wait(lambda: h.svc.timing_status.get("plc", {}).get("connected"), 30, "the link back")
            time.sleep(0.6)  # two parcels induct between two cuts
        truth = h.truth()
        app = h.app
        while app.started and app.started[-1].name not in ("simulated line", "simulated cameras"):
            app.started.pop().stop()  # drain and stop; the simulated line still answers
        truth = h.truth()
        cuts = proxy.cuts
        pace = h.svc.timing_status.get("io", {}).get("pace", {})
    finally:
        h.stop()
        proxy.close()
    db = Path(cfg.records.database)
    rows = db_rows(db)
    t = tally(f"PLC link cut {cuts} times (reset, black hole, slow)", rows, truth["inducted"])
    losses = h.svc.timing_status.get("counters", {}).get("link_losses")
    print(f"[drill] link losses counted by the controller: {losses}; slow link: {pace}; "
          f"wrong chute: {truth['wrong_chute']}")
    assert cuts == 20
    # the three 80 ms spells answer within plc.timeout_s: each was noticed as slow (the 200 ms ones
    # time out and count as link losses)
    assert pace.get("slow_spells", 0) >= 3, pace
    held_on = pace.get("held_on_spells", 0) + pace.get("held_on_losses", 0)
    assert truth["wrong_chute"] <= held_on, (pace, [m for m in truth["mis_sorts"] if m["got"] != "REJECT"])
    with sqlite3.connect(db) as c:
        said = {w: (o, ch) for w, o, ch in c.execute("SELECT waybill, outcome, chute FROM parcels")}
    for m in truth["mis_sorts"]:
        outcome, chute = said.get(m["waybill"], (None, None))
        assert not (outcome == "sorted" and chute != m["got"]), (m, outcome, chute)
    assert t["lost"] == 0 and contiguous(rows) == [], t
    assert journal_rows(db) == []


# --------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs for the records: a disk that fills up (needs root; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode}): needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_records_disk_loses_nothing_and_writing_resumes(tmp_path, small_disk):
    _, cfg = line(tmp_path, **{"records.database": str(small_disk / "records.db")})
    db = Path(cfg.records.database)
    filler = small_disk / "filler"
    h = SimHarness(cfg, parcels=70, seed=17)
    try:
        h.start()
        wait(lambda: h.svc.writer.written >= 15, 120, "15 records written")
        with open(filler, "wb") as fh:  # the disk fills up (logs, a copied file, ...)
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        written_full = h.svc.writer.written
        wait(lambda: any(a["id"] == "records" for a in h.svc.alarms.list()), 60, "the records alarm")
        alarm = next(a["text"] for a in h.svc.alarms.list() if a["id"] == "records")
        time.sleep(2)  # parcels go on being sorted; their records wait in memory
        waiting = h.svc.writer.queue_depth
        filler.unlink()  # space returns
        truth = h.run_until_done(240)
        assert h.svc.writer.flush(60)
        cleared = not any(a["id"] == "records" for a in h.svc.alarms.list())
    finally:
        h.stop()
    rows = db_rows(db)
    t = tally("records disk full for a while", rows, truth["inducted"])
    print(f"[drill] written before the disk filled: {written_full}; waiting in memory while full: {waiting}; "
          f"alarm: {alarm!r}")
    assert "cannot be written" in alarm and waiting > 0
    assert cleared
    assert t["lost"] == 0 and contiguous(rows) == [] and truth["wrong_chute"] == 0
