"""A room of screens on the status API while the simulated line sorts at 10,000 parcels/h:
`GET /api/status` latency one request at a time and at 200 requests/s offered with 50 SSE clients
on `/api/events`, and the diverters' fire timing (the simulated line's truth: when the write reached
the device, against the parcel's true position) in the quiet spans and the loaded span of the
same run.

    python bench/status_load.py                  # 60 s quiet, 60 s loaded, 60 s quiet
    python bench/status_load.py --span-s 30 --rate 100 --sse 20
    python bench/status_load.py --api-only       # the API alone: the old handler beside the new one

The whole system runs as `sorter sim` runs it (SimHarness: real Modbus TCP, camera workers,
records, the API on a loopback port); the load comes from bench/load_client.py in a process of its
own (open loop: requests are due on a fixed schedule, and latency counts from when one was due).
Target (issue 13): status p99 <= 20 ms under that load; fire timing unchanged within noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_client import sequential  # noqa: E402
from bench.tables import pct, table  # noqa: E402

TARGET_P99_MS = 20.0


def fmt(v: float) -> str:
    return "-" if v != v else f"{v:.1f}"


def fire_rows(truth: dict, spans: dict[str, tuple[float, float]]) -> list[list]:
    rows = []
    for label, (a, b) in spans.items():
        fe = [p["fire_error_ms"] for p in truth["parcels"]
              if p.get("fire_error_ms") is not None and p.get("end_mono") is not None and a <= p["end_mono"] < b]
        rows.append([label, len(fe), *(f"{pct(fe, q):.3f}" if fe else "-" for q in (50, 90, 99)),
                     f"{max(fe, key=abs):.3f}" if fe else "-"])
    return rows


def api_only(args) -> None:
    """The API alone, without the line: the handler as it was (a sync endpoint that serialises
    the snapshot per request, in the thread pool) beside the one now (the published bytes), each
    on its own uvicorn in this process while a thread rebuilds and publishes a 15 KB snapshot
    twice a second, as the supervisor does. Same machine, same minute: the ratio is the figure."""
    import threading

    import uvicorn
    from fastapi.responses import JSONResponse

    from sorter.controller.api.app import create_app
    from sorter.controller.records.store import RecordStore
    from sorter.controller.service.stats import LineStats
    from sorter.controller.service.status_cache import StatusCache, json_safe
    from tests.test_api import make_status

    stats = LineStats()
    for i in range(10_000):
        stats.add({"outcome": "sorted", "fire_error_ms": (i % 17) / 10, "decision_ms": 5 + i % 7, "chute": "C1"})
    cache = StatusCache()
    state = {"snap": make_status()}
    stop = threading.Event()

    def supervisor() -> None:  # what the service's supervisor does every 0.5 s
        while not stop.wait(0.5):
            snap = dict(make_status(), **{k: v for k, v in stats.snapshot().items() if k != "chute_counts"})
            snap["recent"] = snap["recent"] * 7  # 20 recent parcels, as the service keeps
            state["snap"] = snap
            cache.publish(snap)

    # the endpoint before issue 13, in the same app stack (middlewares, guard) as the one now
    old = create_app(lambda: state["snap"], None)
    old.router.routes[:] = [r for r in old.router.routes if getattr(r, "path", "") != "/api/status"]
    # and without the fast path in front of the route (api/status_fast.py), which would answer first
    old.user_middleware = [m for m in old.user_middleware if m.cls.__name__ != "StatusFastPath"]

    @old.get("/api/status")
    def old_status() -> JSONResponse:
        return JSONResponse(json_safe(state["snap"]))

    tmp = tempfile.mkdtemp()
    store = RecordStore(Path(tmp) / "r.db")
    apps = {"before: serialise per request (sync, thread pool)": old,
            "now: published bytes (async)": create_app(lambda: state["snap"], store, published=cache)}
    threading.Thread(target=supervisor, daemon=True).start()
    time.sleep(1.0)
    rows = []
    for label, app in apps.items():
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                               timeout_graceful_shutdown=1))
        th = threading.Thread(target=server.run, daemon=True)
        th.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/api/status"
        seq = asyncio.run(sequential(url, args.sequential))
        cpu0 = sum(os.times()[:2])
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load_client.py"), url, "--rate", str(args.rate),
                               "--seconds", str(args.span_s)], capture_output=True, text=True,
                              timeout=args.span_s * 20 + 120)
        cpu = sum(os.times()[:2]) - cpu0  # this process: the server, and the supervisor thread for both
        lo = json.loads(proc.stdout)["load"]
        lat = lo["latencies_ms"]
        rows.append([label, f"{lo['bytes'] / 1024:.1f}", fmt(pct(seq, 50)), fmt(pct(seq, 99)),
                     f"{lo['answered_per_s']:.1f}", fmt(pct(lat, 50)), fmt(pct(lat, 99)),
                     f"{1000 * cpu / max(1, len(lat)):.2f}"])
        server.should_exit = True
        th.join(10)
    stop.set()
    store.close()
    table(f"GET /api/status, the API alone ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}); "
          f"{args.rate:g} req/s offered for {args.span_s:g} s",
          ["handler", "KB", "one at a time p50 ms", "p99 ms", "answered/s", "loaded p50 ms", "loaded p99 ms",
           "server CPU ms/request"], rows)
    print("\nCPU per request is the figure that does not depend on what else the machine runs; the latencies do.")


def cpu_s() -> float:
    """CPU seconds of this process so far: the service (API, supervisor, record writer) runs in it;
    the simulated line, the timing process and the camera workers are processes of their own."""
    t = os.times()
    return t.user + t.system


def force_stack(loop: str, http: str) -> None:
    """Every uvicorn.Config made in this process (the service's ApiServer) with this loop and parser."""
    import uvicorn

    init = uvicorn.Config.__init__

    def forced(self, *a, **kw):
        kw.update(loop=loop, http=http)
        init(self, *a, **kw)

    uvicorn.Config.__init__ = forced


def stack_name() -> str:
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
        return "uvloop + httptools"
    except ImportError:
        return "asyncio + h11"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate-pph", type=float, default=10_000, help="parcels per hour on the simulated line")
    ap.add_argument("--span-s", type=float, default=60, help="length of each span: quiet, loaded, quiet")
    ap.add_argument("--rate", type=float, default=200, help="GET /api/status per second offered")
    ap.add_argument("--sse", type=int, default=50, help="SSE clients on /api/events during the load")
    ap.add_argument("--sequential", type=int, default=200, help="requests one at a time (the baseline)")
    ap.add_argument("--api-only", action="store_true", help="the API alone: the old handler beside the new one")
    ap.add_argument("--stack", choices=("auto", "asyncio-h11"), default="auto",
                    help="uvicorn's loop and HTTP parser: 'auto' (uvloop + httptools when installed, as the "
                         "service runs) or 'asyncio-h11' (pure Python, as before issue 13), for a before/after "
                         "in one session")
    args = ap.parse_args()
    if args.stack != "auto":
        force_stack("asyncio", "h11")
    if args.api_only:
        api_only(args)
        return

    from sorter.controller.config.load import load_config
    from sorter.controller.harness import SimHarness
    from sorter.controller.routing.manifest import Manifest
    from tests.conftest import write_line_config

    load_before = os.getloadavg()[0]  # what else the machine was running when this began
    parcels = int(args.rate_pph * (3 * args.span_s + 120) / 3600) + 50
    with tempfile.TemporaryDirectory() as tmp:
        path = write_line_config(Path(tmp), overrides={"sim.rate_pph": args.rate_pph})
        cfg = load_config(path)
        Manifest(cfg.routing.manifest).close()
        h = SimHarness(cfg, parcels=parcels, seed=13, api=("127.0.0.1", 0))
        try:
            h.start()
            base = f"http://127.0.0.1:{h.app.api.port}"
            time.sleep(10)  # the first parcels reach the diverters
            spans: dict[str, tuple[float, float]] = {}
            t0, c0 = time.monotonic(), cpu_s()
            time.sleep(args.span_s)
            spans["quiet (before)"] = (t0, time.monotonic())
            quiet_cpu = (cpu_s() - c0) / (time.monotonic() - t0)
            seq = asyncio.run(sequential(base + "/api/status", args.sequential))
            t1, c1 = time.monotonic(), cpu_s()
            proc = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "load_client.py"), base + "/api/status", "--rate",
                 str(args.rate), "--seconds", str(args.span_s), "--sse", base + "/api/events",
                 "--sse-clients", str(args.sse)],
                capture_output=True, text=True, timeout=args.span_s * 20 + 120)
            spans["200 req/s + SSE (loaded)" if args.rate == 200 else f"{args.rate:g} req/s + SSE (loaded)"] = \
                (t1, time.monotonic())
            loaded_cpu = (cpu_s() - c1) / (time.monotonic() - t1)
            if proc.returncode != 0:
                raise SystemExit(f"load client failed: {proc.stderr[-2000:]}")
            load = json.loads(proc.stdout)
            t2 = time.monotonic()
            time.sleep(args.span_s)
            spans["quiet (after)"] = (t2, time.monotonic())
            truth = h.truth()
        finally:
            h.stop()

    lo, sse = load["load"], load["sse"]
    lat = lo["latencies_ms"]
    load_s = args.span_s
    table(f"GET /api/status ({lo['bytes'] / 1024:.1f} KB) while the simulated line runs at {args.rate_pph:,.0f} "
          f"parcels/h ({os.cpu_count()} cores, load average {load_before:.1f} before the run; uvicorn on "
          f"{'asyncio + h11' if args.stack != 'auto' else stack_name()}; target p99 <= {TARGET_P99_MS:g} ms under load)",
          ["load", "requests", "answered/s", "errors", "p50 ms", "p99 ms", "max ms"],
          [["one at a time (baseline)", len(seq), "-", 0, fmt(pct(seq, 50)), fmt(pct(seq, 99)), fmt(max(seq))],
           [f"{args.rate:g}/s offered + {args.sse} SSE clients", lo["sent"], f"{lo['answered_per_s']:.1f}",
            lo["errors"], fmt(pct(lat, 50)), fmt(pct(lat, 99)), fmt(max(lat) if lat else float("nan"))]])
    table("SSE clients on /api/events during the load",
          ["clients", "connected", "failed", "events", "events/client/s", "heartbeats"],
          [[args.sse, sse["connected"], sse["failed"], sse["events"],
            f"{sse['events'] / max(1, sse['connected']) / (load_s + 1):.2f}", sse["heartbeats"]]])
    table("Fire timing error, ms (the simulated device's truth), by span of the same run",
          ["span", "fires", "p50", "p90", "p99", "max |err|"], fire_rows(truth, spans))
    print(f"\nservice process CPU: {1000 * quiet_cpu:.0f} ms/s quiet, {1000 * loaded_cpu:.0f} ms/s loaded; "
          f"the load's cost {1000 * (loaded_cpu - quiet_cpu) / max(1e-9, lo['answered_per_s']):.2f} ms of CPU per status request answered "
          f"(SSE included): the figure that depends least on what else the machine runs")
    print(f"inducted {truth['inducted']}, wrong chute {truth['wrong_chute']}")


if __name__ == "__main__":
    main()
