"""`/metrics` in Prometheus's conventions (api/metrics.py), read back with the client library's own
parser from a real server, and the Grafana dashboard in the repo naming only what is exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sorter.controller.api.app import create_app
from sorter.controller.api.metrics import METRIC_NAMES, fire_buckets
from sorter.controller.records.store import OUTCOMES, RecordStore
from sorter.controller.timing.line_state import STATES
from tests.test_api import make_status, serve

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
HIST = {"edges_ms": [-5.0, -1.0, 0.0, 1.0, 5.0], "counts": [1, 2, 30, 60, 6, 1], "n": 100}


@pytest.fixture()
def families(tmp_path):
    store = RecordStore(tmp_path / "r.db")
    st = make_status()
    st["fire_hist"] = HIST
    st["records"] = {"written": 1257, "queued": 2, "in_flight": 3, "id_collisions": 0,
                     "faulted_previous_run": 1, "faulted_timing_restart": 0}
    st["line"].update(test_mode=None, induct_enable=True)
    srv = serve(create_app(lambda: st, store))
    try:
        r = httpx.get(srv.url + "/metrics", timeout=10)
        assert r.status_code == 200
        yield {f.name: f for f in text_string_to_metric_families(r.text)}, r.text
    finally:
        srv.stop()
        store.close()


def samples(fams, name):
    return [s for f in fams.values() for s in f.samples if s.name == name]


def test_names_prefix_units_and_types(families):
    fams, _text = families
    assert fams and all(n.startswith("sorter_") for n in fams)
    assert fams["sorter_parcels"].type == "counter"
    assert {s.labels["outcome"] for s in samples(fams, "sorter_parcels_total")} == set(OUTCOMES)
    assert fams["sorter_fire_error_seconds"].type == "histogram"
    # times in seconds: the status's 1.31 ms p99
    p99 = [s.value for s in samples(fams, "sorter_fire_error_recent_seconds") if s.labels["quantile"] == "0.99"]
    assert p99 == [pytest.approx(0.00131)]
    assert samples(fams, "sorter_uptime_seconds")[0].value == 3725.0
    exported = {s.name for f in fams.values() for s in f.samples}
    assert set(METRIC_NAMES) <= exported, set(METRIC_NAMES) - exported


def test_fire_timing_is_a_real_cumulative_histogram(families):
    fams, _text = families
    buckets = [(s.labels["le"], s.value) for s in samples(fams, "sorter_fire_error_seconds_bucket")]
    assert buckets == [("-0.005", 1.0), ("-0.001", 3.0), ("0.0", 33.0), ("0.001", 93.0), ("0.005", 99.0),
                       ("+Inf", 100.0)]
    assert fire_buckets({"edges_ms": [1.0], "counts": [1]}) is None  # a malformed histogram is left out


def test_line_state_is_a_state_set(families):
    fams, text = families
    states = {s.labels["sorter_line_state"]: s.value for s in samples(fams, "sorter_line_state")}
    assert states == {s: (1.0 if s == "running" else 0.0) for s in STATES}
    assert 'sorter_line_state{sorter_line_state="running"} 1.0' in text


def test_every_metric_the_dashboard_names_is_exported(families):
    fams, _text = families
    exported = {s.name for f in fams.values() for s in f.samples}
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), str)]
    named = {m for e in exprs for m in re.findall(r"\bsorter_[a-z0-9_]+", e)}
    assert len(named) >= 20
    assert named <= exported, f"the dashboard names metrics /metrics does not export: {sorted(named - exported)}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))  # Grafana refuses a dashboard with duplicate panel ids
