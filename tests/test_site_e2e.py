"""A line of a site, as `sorter sim` runs it (the same wiring, controller/app.py): the simulated line
over real Modbus, real camera workers, real SQLite records, with all three site parts on at once:
the site database (a real PostgreSQL, stopped for a while mid-run and started again), MQTT (a
real Mosquitto and a paho subscriber) and an upload target (a small HTTP receiver). At the end:
every record is in PostgreSQL once, every parcel event reached the subscriber in order, every
upload event was accepted once, and the status API and /metrics showed the three (the page's
panel: tests/test_site_page.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import httpx
import pytest

from sorter.controller.harness import SimHarness
from tests.conftest import load_line_config
from tests.servers import free_port, mosquitto, postgres  # noqa: F401 - the fixtures
from tests.test_mqtt import Subscriber
from tests.test_uploads import SECRET, Receiver
from tests.test_processes import wait_for

pytestmark = pytest.mark.line  # runs the line in real time: `make test` runs these one at a time

PARCELS = 60
OUTAGE_S = float(os.environ.get("SORTER_SITE_OUTAGE_S", "8"))  # the issue asks for 60 s (measured with =60); 8 keeps CI short


@pytest.fixture
def receiver():
    rx = Receiver()
    rx.up()
    yield rx
    rx.down()


def test_a_site_line_loses_nothing_through_a_postgres_outage(tmp_path, postgres, mosquitto, receiver,
                                                            monkeypatch):
    monkeypatch.setenv("E2E_UPLOAD_KEY", SECRET.decode())
    site = {"line_id": "L1",
            "database": {"url": postgres.url, "retry_max_s": 2, "batch": 50},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "stats_interval_s": 1},
            "uploads": [{"name": "zto", "url": receiver.url, "secret_env": "E2E_UPLOAD_KEY", "batch_size": 20,
                         "backoff_s": 0.2, "backoff_max_s": 2}]}
    cfg = load_line_config(tmp_path / "cfg", overrides={"site": site, "sim.rate_pph": 12000})
    sub = Subscriber(mosquitto.port, topic="sorter/L1/#")
    port = free_port()
    h = SimHarness(cfg, parcels=PARCELS, seed=5, api=("127.0.0.1", port))
    seen: dict[str, list] = {"backlog": [], "connected": []}
    try:
        h.start()
        wait_for(lambda: len(h.records) >= PARCELS // 5, 120, "the first records")
        postgres.stop()  # the site's database server goes down mid-run
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_S:
            st = h.svc.status()  # the snapshot the API serves
            seen["backlog"].append(st["site_db"]["backlog"])
            seen["connected"].append(st["site_db"]["connected"])
            time.sleep(1)
        records_during_outage = len(h.records)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60).text
        postgres.start()
        truth = h.run_until_done(400)
        assert len(h.records) >= truth["inducted"] == PARCELS
        svc = h.svc
        wait_for(lambda: svc.status()["site_db"]["backlog"] == 0 and svc.status()["site_db"]["connected"], 90,
                 "the site database to catch up")
        with_waybill = sum(1 for r in h.records if r.get("waybill"))
        wait_for(lambda: len(receiver.accepted) >= 2 * with_waybill, 90, "every upload event delivered")
        st = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=60).json()
    finally:
        h.stop()  # the last records are forwarded, published and queued before the records close
        sub.close()

    with sqlite3.connect(cfg.records.database) as c:
        local = c.execute("SELECT id, run_id, parcel_id FROM parcels ORDER BY id").fetchall()
        outbox = dict(c.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        with_waybill = c.execute("SELECT COUNT(*) FROM parcels WHERE waybill IS NOT NULL AND waybill != ''"
                                 ).fetchone()[0]
    with postgres.connect() as pg:
        site_rows = pg.execute("SELECT local_id, run_id, parcel_id FROM parcels WHERE line_id = 'L1' ORDER BY id"
                               ).fetchall()
        distinct = pg.execute("SELECT COUNT(DISTINCT (run_id, parcel_id)) FROM parcels").fetchone()[0]

    # the site database: every local record once, in the line's order, after a real outage
    assert max(seen["backlog"]) > 0 and not all(seen["connected"])
    assert [tuple(r) for r in site_rows] == local and distinct == len(local) == len(h.records)
    assert "sorter_site_db_backlog" in metrics and "sorter_uploads_pending" in metrics
    # MQTT: one event per parcel outcome, in order
    events = [json.loads(p) for p in sub.on("sorter/L1/parcel")]
    assert [e["seq"] for e in events] == list(range(1, len(h.records) + 1))
    assert sorted(e["parcel_id"] for e in events) == sorted(r["parcel_id"] for r in h.records)
    assert sub.on("sorter/L1/availability")[-1] == b"offline"  # the clean stop said so
    assert json.loads(sub.on("sorter/L1/stats")[-1])["counts"]["total"] > 0
    # uploads: an arrival and a sort event per parcel with a waybill, each accepted once
    assert len(receiver.accepted) == 2 * with_waybill and receiver.redeliveries == 0
    assert outbox == ({"sent": 2 * with_waybill} if with_waybill else {})  # none left pending or dead
    # the status API and the page
    assert {"site_db", "mqtt", "uploads"} <= set(st)
    assert st["mqtt"]["connected"] and st["uploads"]["targets"][0]["name"] == "zto"
    print(f"\nsite e2e: {len(local)} records, PostgreSQL down {OUTAGE_S} s mid-run "
          f"({records_during_outage} recorded by its end, backlog peak {max(seen['backlog'])}); "
          f"{len(site_rows)} in PostgreSQL, {distinct} distinct, 0 lost, 0 duplicated; "
          f"{len(events)} MQTT events; {len(receiver.accepted)} upload keys ({with_waybill} parcels read)")
    assert os.path.exists(cfg.records.database)
