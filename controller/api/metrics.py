"""`/metrics`: the status snapshot in Prometheus's conventions, read at scrape time.

Every name starts with `sorter_`; times are in seconds; counters end in `_total`; the diverters'
fire timing is a real histogram (buckets from the timing process's histogram, so quantiles and
heat maps work across scrapes and lines); the line state is a state set (one series per state, 1
for the current one). `METRIC_NAMES` lists what is exported: config/grafana-dashboard.json may name
nothing else (tests/test_metrics.py checks).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator, Sequence

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    StateSetMetricFamily)

from sorter.controller.records.store import OUTCOMES
from sorter.controller.timing.line_state import STATES

QUANTILES = (("p50", "0.5"), ("p99", "0.99"), ("p999", "0.999"), ("max", "1"))

# the series names as a scraper sees them (histograms: their _bucket series)
METRIC_NAMES = (
    "sorter_parcels_total", "sorter_fire_error_seconds_bucket", "sorter_fire_error_recent_seconds",
    "sorter_fire_error_recent_samples", "sorter_decision_seconds", "sorter_decision_samples",
    "sorter_throughput_parcels_per_hour", "sorter_read_ratio", "sorter_belt_speed_meters_per_second",
    "sorter_uptime_seconds", "sorter_plc_connected", "sorter_plc_errors_total", "sorter_line_state",
    "sorter_line_test_mode", "sorter_line_induct_enabled", "sorter_records_written_total",
    "sorter_records_queued", "sorter_records_in_flight", "sorter_records_id_collisions_total",
    "sorter_records_faulted_previous_run", "sorter_records_faulted_timing_restart_total",
    "sorter_alarms_active", "sorter_chute_parcels_total", "sorter_chute_full", "sorter_chute_enabled",
    "sorter_camera_up", "sorter_camera_frames_per_second", "sorter_camera_frames_total",
    "sorter_camera_dropped_frames_total", "sorter_camera_reads_total",
)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _seconds(ms: Any) -> float | None:
    v = _num(ms)
    return None if v is None else v / 1000.0


def fire_buckets(hist: dict) -> list[tuple[str, float]] | None:
    """The timing process's fire histogram ({edges_ms, counts, n}: counts[i] holds the errors
    below edges_ms[i], the last one those above every edge) as cumulative Prometheus buckets in
    seconds, ending with +Inf. None when it has no usable shape."""
    edges, counts = hist.get("edges_ms") or [], hist.get("counts") or []
    if not edges or len(counts) != len(edges) + 1:
        return None
    out, total = [], 0.0
    for edge, c in zip(edges, counts):
        total += float(c or 0)
        out.append((repr(edge / 1000.0), total))
    total += float(counts[-1] or 0)
    out.append(("+Inf", total))
    return out


class StatusCollector:
    """Prometheus metrics from `status()` (the published snapshot) at scrape time."""

    def __init__(self, status: Callable[[], dict],
                 extra: Sequence[Callable[[dict], Iterable[Any]]] = ()):
        """`extra`: more families from the same snapshot (the site's parts: api/app.py)."""
        self._status = status
        self._extra = tuple(extra)

    def collect(self) -> Iterator[Any]:
        st = self._status() or {}
        line = st.get("line") or {}
        yield from self._parcels(st)
        yield from self._line(st, line)
        yield from self._records(st)
        yield from self._chutes(st)
        yield from self._cameras(st)
        for fn in self._extra:
            yield from fn(st)

    @staticmethod
    def _parcels(st: dict) -> Iterator[Any]:
        counts = (st.get("counts") or {}).get("outcomes") or {}
        c = CounterMetricFamily("sorter_parcels", "Parcels finished this run, by outcome", labels=["outcome"])
        for outcome in OUTCOMES:
            c.add_metric([outcome], float(counts.get(outcome, 0) or 0))
        yield c

        hist = st.get("fire_hist") or {}
        buckets = fire_buckets(hist)
        if buckets is not None:
            # negative buckets (a fire early) mean no _sum/_count (the client library's rule): the
            # +Inf bucket is the count
            yield HistogramMetricFamily("sorter_fire_error", "Diverter fire timing error (applied - planned), "
                                        "every fire of this timing process", buckets=buckets, unit="seconds")

        for name, key, doc in (("sorter_fire_error_recent", "fire_error_ms",
                                "Fire timing error of the last 10000 parcels, by quantile (max = 1)"),
                               ("sorter_decision", "decision_ms",
                                "Decision time of the last 10000 parcels, by quantile (max = 1)")):
            pct = st.get(key) or {}
            g = GaugeMetricFamily(name + "_seconds", doc, labels=["quantile"])
            for k, q in QUANTILES:
                v = _seconds(pct.get(k))
                if v is not None:
                    g.add_metric([q], v)
            yield g
            g = GaugeMetricFamily(name + "_samples", "Parcels behind " + name + "_seconds")
            g.add_metric([], float(pct.get("n") or 0))
            yield g

    @staticmethod
    def _line(st: dict, line: dict) -> Iterator[Any]:
        for name, doc, value in (
            ("sorter_throughput_parcels_per_hour", "Parcels per hour over the last 5 minutes", st.get("throughput_pph")),
            ("sorter_read_ratio", "Share of parcels with a waybill read (0..1)", st.get("read_rate")),
            ("sorter_belt_speed_meters_per_second", "Measured belt speed", line.get("belt_speed_mps")),
            ("sorter_uptime_seconds", "Controller uptime", line.get("uptime_s")),
        ):
            v = _num(value)
            if v is not None:
                g = GaugeMetricFamily(name, doc)
                g.add_metric([], v)
                yield g

        plc = line.get("plc") or {}
        url = str(plc.get("url", ""))
        g = GaugeMetricFamily("sorter_plc_connected", "1 when the PLC / remote I/O link is up", labels=["url"])
        g.add_metric([url], 1.0 if plc.get("connected") else 0.0)
        yield g
        c = CounterMetricFamily("sorter_plc_errors", "PLC communication errors", labels=["url"])
        c.add_metric([url], float(plc.get("errors") or 0))
        yield c

        state = line.get("state")
        yield StateSetMetricFamily("sorter_line_state", "The line's state (one series per state, 1 = current)",
                                   value={s: s == state for s in STATES})
        for name, doc, on in (("sorter_line_test_mode", "1 while a commissioning test mode drives the diverters",
                               line.get("test_mode")),
                              ("sorter_line_induct_enabled", "1 while the line lets parcels in",
                               line.get("induct_enable"))):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], 1.0 if on else 0.0)
            yield g
        g = GaugeMetricFamily("sorter_alarms_active", "Active alarms")
        g.add_metric([], float(len(st.get("alarms") or [])))
        yield g

    @staticmethod
    def _records(st: dict) -> Iterator[Any]:
        records = st.get("records") or {}
        for name, key, doc, fam in (
            ("sorter_records_written", "written", "Parcel records written to the database this run", CounterMetricFamily),
            ("sorter_records_queued", "queued", "Records waiting to be written", GaugeMetricFamily),
            ("sorter_records_in_flight", "in_flight", "Parcels on the belt whose records are still open (journal)",
             GaugeMetricFamily),
            ("sorter_records_id_collisions", "id_collisions", "Parcel ids seen twice (kept in bad_records)",
             CounterMetricFamily),
            ("sorter_records_faulted_previous_run", "faulted_previous_run",
             "Parcels on the belt when the last run ended, recorded as fault", GaugeMetricFamily),
            ("sorter_records_faulted_timing_restart", "faulted_timing_restart",
             "Parcels in flight when the timing process died, recorded as fault", CounterMetricFamily),
        ):
            m = fam(name, doc)
            m.add_metric([], float(records.get(key) or 0))
            yield m

    @staticmethod
    def _chutes(st: dict) -> Iterator[Any]:
        gc = CounterMetricFamily("sorter_chute_parcels", "Parcels sent to the chute this run", labels=["chute"])
        gf = GaugeMetricFamily("sorter_chute_full", "1 when the chute reports full", labels=["chute"])
        ge = GaugeMetricFamily("sorter_chute_enabled", "1 when the chute is enabled", labels=["chute"])
        for ch in st.get("chutes") or []:
            cid = str(ch.get("id", ""))
            gc.add_metric([cid], float(ch.get("count") or 0))
            gf.add_metric([cid], 1.0 if ch.get("full") else 0.0)
            ge.add_metric([cid], 1.0 if ch.get("enabled", True) else 0.0)
        yield from (gc, gf, ge)

    @staticmethod
    def _cameras(st: dict) -> Iterator[Any]:
        up = GaugeMetricFamily("sorter_camera_up", "1 when the camera worker delivers frames", labels=["camera"])
        fps = GaugeMetricFamily("sorter_camera_frames_per_second", "Camera frames per second", labels=["camera"])
        frames = CounterMetricFamily("sorter_camera_frames", "Frames decoded", labels=["camera"])
        dropped = CounterMetricFamily("sorter_camera_dropped_frames", "Frames dropped", labels=["camera"])
        reads = CounterMetricFamily("sorter_camera_reads", "Barcodes read", labels=["camera"])
        for cam in st.get("cameras") or []:
            name = str(cam.get("name", ""))
            up.add_metric([name], 1.0 if cam.get("alive") else 0.0)
            for fam, key in ((fps, "fps"), (frames, "frames"), (dropped, "dropped"), (reads, "reads")):
                v = _num(cam.get(key))
                if v is not None:
                    fam.add_metric([name], v)
        yield from (up, fps, frames, dropped, reads)
