"""`sorter export`: the daily per-carrier CSV that centres bill carriers with."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys

from pathlib import Path

from sorter.controller.records.store import RecordStore
from tests.test_sim_e2e import sim_config

ROOT = Path(__file__).resolve().parent.parent


def rec(pid: int, carrier: str, ended: float, waybill: str) -> dict:
    return {"run_id": "r1", "parcel_id": pid, "induct_wall": ended - 5, "decided_wall": ended - 4, "ended_wall": ended,
            "length_mm": 300.0, "reads": [], "waybill": waybill, "carrier": carrier, "destination": "泽国镇",
            "chute": "C06", "actual_chute": "C06", "outcome": "sorted", "reason": "confirmed in C06",
            "routing_version": "abc", "fire_error_ms": 0.1, "decision_ms": 50.0}


def test_export_writes_one_file_per_carrier_for_the_day(tmp_path):
    cfg = sim_config(tmp_path)
    today = dt.date.today()
    noon = dt.datetime.combine(today, dt.time(12)).timestamp()
    store = RecordStore(tmp_path / "records.db")
    store.write_many([rec(1, "ZTO", noon, "75444664167064"), rec(2, "ZTO", noon + 60, "=HYPERLINK(1)"),
                      rec(3, "SF", noon, "SF1234567890123"), rec(4, "ZTO", noon - 86400, "old")])
    store.close()
    out = tmp_path / "exports"
    r = subprocess.run([sys.executable, "-m", "sorter", "export", "--config", str(cfg), "--day", today.isoformat(),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out / f"{today.isoformat()}-ZTO.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["parcel_id"] for row in rows] == ["1", "2"]  # yesterday's parcel is not billed today
    assert rows[1]["waybill"].startswith("'=")  # a barcode cannot inject a spreadsheet formula
    assert (out / f"{today.isoformat()}-SF.csv").exists()


def test_export_refuses_a_bad_day(tmp_path):
    cfg = sim_config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "sorter", "export", "--config", str(cfg), "--day", "29/11"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr

