"""Fire timing of the timing process, as the device sees it.

    python bench/plc.py [--fires 1000] [--skip-rtu] [--latch --parcels 300]

The real TimingLoop (its own process, select() loop, SCHED_FIFO when allowed, the same skip-a-poll
rule) polls a Modbus device at 1 kHz and fires scheduled coil writes; a stand-in tracker plans the
fires (every 15-45 ms, on 8 outputs). The device — a separate process — time-stamps each write as it
applies it. Error = applied - planned. Set-ups:

- loopback Modbus TCP (pymodbus server), idle;
- the same while two decoder processes (vision.decode on rendered labels from vision.labels, nice
  10, as camera workers run) decode without pause;
- the same plus an HTTP API (FastAPI/uvicorn, another process) answering 50 requests/s;
- Modbus RTU at 115200 baud over a socat pty pair, the wire time modelled by the device (a pty
  moves bytes instantly): a request is applied when its last byte would have arrived, and the
  answer leaves after its bytes would have been sent.

--latch also runs `sorter sim` with and without the encoder latch (truth fire error of every divert).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402
CTX = mp.get_context("spawn")
SIGNALS = [f"D{i}_left" for i in range(1, 9)]


def load_cfg(tmp: Path):
    from sorter.controller.config.load import load_config
    text = (ROOT / "config/wenling-line1.yaml").read_text(encoding="utf-8")
    text = text.replace("manifest: manifest.db", f"manifest: {tmp / 'manifest.db'}")
    text = text.replace("database: records.db", f"database: {tmp / 'records.db'}")
    for f in (ROOT / "config").glob("*.yaml"):
        if f.name != "wenling-line1.yaml":
            shutil.copy(f, tmp / f.name)
    (tmp / "line.yaml").write_text(text, encoding="utf-8")
    from sorter.controller.routing.manifest import Manifest
    Manifest(tmp / "manifest.db").close()
    return load_config(tmp / "line.yaml")


# ---------------------------------------------------------------- the device (TCP)
def tcp_device_main(conn) -> None:
    import asyncio
    import selectors

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice
    log: list[tuple[int, bool, float]] = []
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(30))  # the device stands in for hardware
    except (PermissionError, OSError, AttributeError):
        pass

    async def action(fc, start, address, count, registers, values):
        if fc == 5 and values is not None:
            log.append((address, bool(values[0]), time.monotonic()))
        return None

    async def main():
        dev = SimDevice(id=1, simdata=([SimData(0, count=64, values=False, datatype=DataType.BITS)],
                                       [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                                       [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
                                       [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]),
                        action=action)
        server = ModbusTcpServer(dev, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        conn.send(("ready", server.transport.sockets[0].getsockname()[1]))
        loop = asyncio.get_running_loop()
        while not conn.poll():
            await asyncio.sleep(0.05)
        conn.recv()
        conn.send(("log", log))
        await server.shutdown()

    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    loop.run_until_complete(main())


# ---------------------------------------------------------------- the device (RTU, wire time modelled)
def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_device_main(port: str, baud: int, conn) -> None:
    """A Modbus RTU device on a pty that behaves as if the wire ran at `baud`."""
    import serial
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(30))  # the device is hardware: exact
    except (PermissionError, OSError, AttributeError):
        pass
    char = 10 / baud
    ser = serial.Serial(port, baud, timeout=0.05)
    coils = [0] * 128
    log = []
    conn.send(("ready", port))
    buf = b""
    while not conn.poll():
        first = ser.read(1)
        if not first:
            continue
        t_first = time.monotonic()
        buf = first + ser.read(7)  # every request used here (fc 1..6) is 8 bytes
        if len(buf) < 8 or crc16(buf[:6]) != int.from_bytes(buf[6:8], "little"):
            ser.reset_input_buffer()
            continue
        t_arrived = t_first + 8 * char  # its last byte on a real wire
        unit, fc = buf[0], buf[1]
        addr, val = int.from_bytes(buf[2:4], "big"), int.from_bytes(buf[4:6], "big")
        while time.monotonic() < t_arrived:
            pass
        if fc == 5:
            coils[addr] = int(val == 0xFF00)
            log.append((addr, bool(coils[addr]), time.monotonic()))
            resp = buf[:6]
        elif fc in (1, 2):
            n = (val + 7) // 8
            bits = coils[addr:addr + val] if fc == 1 else [0] * val
            data = bytes(sum(b << i for i, b in enumerate(bits[k * 8:(k + 1) * 8])) for k in range(n))
            resp = bytes((unit, fc, n)) + data
        elif fc in (3, 4):
            resp = bytes((unit, fc, 2 * val)) + b"\x00" * (2 * val)
        else:
            resp = bytes((unit, fc | 0x80, 1))
        resp += crc16(resp).to_bytes(2, "little")
        t_send_done = time.monotonic() + 3.5 * char + len(resp) * char  # turnaround + its bytes
        while time.monotonic() < t_send_done:
            pass
        ser.write(resp)
    conn.recv()
    conn.send(("log", log))


# ---------------------------------------------------------------- the timing process
class PlanOnly:
    """A stand-in tracker: plans `n` fires 15-45 ms apart on 8 outputs (each on for 30 ms)."""

    def __init__(self, cfg, n: int, seed: int = 7):
        from sorter.controller.timing.belt_clock import BeltClock
        from sorter.controller.timing.outputs import Action
        self.Action = Action
        self.clock = BeltClock(cfg.line.encoder_pulses_per_mm, 2000)
        self.parcels, self.counters, self.disabled, self.paused, self.bits = [], {}, set(), False, {}
        self.bits_mono = None
        self.outputs = self
        self.max_late_s = 0.008
        self.windows = {s: [] for s in SIGNALS}
        self.n, self.seed = n, seed
        self.plan = []
        self.i = 0
        self.done: list[tuple[str, bool, float, float]] = []  # signal, state, due, estimated applied

    def _make_plan(self) -> None:
        """Fires start once the loop polls (connected), 0.5 s later."""
        rng = random.Random(self.seed)
        t = time.monotonic() + 0.5
        for i in range(self.n):
            t += rng.uniform(0.015, 0.045)
            sig = SIGNALS[i % len(SIGNALS)]
            self.plan.append((t, sig, True))
            self.plan.append((t + 0.030, sig, False))
        self.plan.sort()

    # the OutputPlanner surface the loop uses
    def next_action(self):
        if self.i >= len(self.plan):
            return None
        t, sig, st = self.plan[self.i]
        return self.Action(sig, st, t, (self.i,))

    def too_late(self, a, now):
        if a.state and now - a.due_mono > self.max_late_s:
            self.done.append((a.signal, a.state, a.due_mono, float("nan")))
            self.i += 1
            return True
        return False

    def outputs_on(self):
        return []

    def clear(self):
        pass

    # the Tracker surface
    def output_done(self, a, applied):
        self.done.append((a.signal, a.state, a.due_mono, applied))
        self.i += 1

    def settle_cancelled(self):
        pass

    def on_inputs(self, t, values, enc_t=None):
        self.bits_mono = t
        if not self.plan:
            self._make_plan()

    def fault_all(self, reason):
        pass


def timing_main(cfg, url: str, n: int, conn) -> None:
    import asyncio
    import logging
    import selectors

    from sorter.controller.timing.loop import TimingLoop
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    tr = PlanOnly(cfg, n)
    loop_ = TimingLoop(cfg, None, "bench", url, tracker=tr)

    async def main():
        task = asyncio.ensure_future(loop_.run())
        while not tr.plan or tr.i < len(tr.plan):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
        loop_.stop = True
        await task

    ev = asyncio.SelectorEventLoop(selectors.SelectSelector())
    ev.run_until_complete(main())
    conn.send(("done", tr.done, loop_.policy, loop_.polls))


# ---------------------------------------------------------------- loads
def decoder_main(seed: int) -> None:
    os.nice(10)
    import cv2

    from sorter.plc.sim.waybills import CARRIER_CODES, make_waybill
    from sorter.vision.decode import decode
    from sorter.vision.labels import LabelSpec, render_frame, render_label
    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(6):
        wb = make_waybill(CARRIER_CODES[k % len(CARRIER_CODES)], rng)
        frames.append(render_frame(render_label(LabelSpec(waybill=wb, qr_text=f"{wb}|温岭"), rng), rng))
    while True:
        for f in frames:
            decode(f)


def api_main(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    app = FastAPI()
    blob = {"line": {"state": "running"}, "recent": [{"parcel_id": i, "waybill": "SF1234567890123",
                                                      "outcome": "sorted", "reason": "confirmed"} for i in range(20)],
            "chutes": [{"id": f"C{i:02d}", "count": i} for i in range(18)]}

    @app.get("/api/status")
    def status():
        return blob
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def api_load_main(port: int, rate: float) -> None:
    import httpx
    c = httpx.Client(timeout=2)
    nxt = time.monotonic()
    while True:
        nxt += 1 / rate
        try:
            c.get(f"http://127.0.0.1:{port}/api/status").json()
        except httpx.HTTPError:
            pass
        time.sleep(max(0.0, nxt - time.monotonic()))


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- one measurement
def measure(cfg, url_of, device, n: int, loads: list) -> dict:
    procs = []
    dev_conn, child = CTX.Pipe()
    dp = CTX.Process(target=device[0], args=(*device[1], child), daemon=True)
    dp.start()
    _, where = dev_conn.recv()
    for target, args in loads:
        p = CTX.Process(target=target, args=args, daemon=True)
        p.start()
        procs.append(p)
    time.sleep(2.0 if loads else 0.3)
    t_conn, t_child = CTX.Pipe()
    tp = CTX.Process(target=timing_main, args=(cfg, url_of(where), n, t_child), daemon=True)
    tp.start()
    if not t_conn.poll(n * 0.05 + 120):
        raise RuntimeError("timing process did not finish")
    _, done, policy, polls = t_conn.recv()
    tp.join(5)
    dev_conn.send(("stop",))
    _, log = dev_conn.recv()
    dp.join(5)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(5)
    # match device writes to planned fires in order, per output
    applied: dict[tuple[int, bool], list[float]] = {}
    for addr, st, t in log:
        applied.setdefault((addr, st), []).append(t)
    idx = {s: cfg.io[s].address for s in SIGNALS}
    err_dev, err_est, skipped = [], [], 0
    for sig, st, due, est in done:
        if est != est:  # NaN: dropped as too late
            skipped += st
            continue
        t_dev = applied[(idx[sig], st)].pop(0)
        if st:
            err_dev.append((t_dev - due) * 1000)
            err_est.append((est - due) * 1000)
    return {"dev": err_dev, "est": err_est, "too_late": skipped, "policy": policy, "polls": polls}


def row(name, r):
    e = r["dev"]
    return [name, len(e), f"{pct(e, 50):.3f}", f"{pct(e, 99):.3f}", f"{pct(e, 99.9):.3f}", f"{max(e, key=abs):.3f}",
            f"{pct(np.abs(np.array(e) - np.array(r['est'])), 99):.3f}", r["too_late"], r["policy"]]


def bench_fires(n: int, skip_rtu: bool) -> None:
    tmp = Path(tempfile.mkdtemp())
    cfg = load_cfg(tmp)
    rows = []
    tcp = (tcp_device_main, ())
    url = lambda port: f"tcp://127.0.0.1:{port}"  # noqa: E731
    rows.append(row("TCP loopback, idle", measure(cfg, url, tcp, n, [])))
    decoders = [(decoder_main, (1,)), (decoder_main, (2,))]
    rows.append(row("TCP + 2 decoders (nice 10)", measure(cfg, url, tcp, n, decoders)))
    port = free_port()
    api = [(api_main, (port,)), (api_load_main, (port, 50.0))]
    rows.append(row("TCP + 2 decoders + API 50 req/s", measure(cfg, url, tcp, n, decoders + api)))
    if not skip_rtu and shutil.which("socat"):
        a, b = tmp / "ttyDEV", tmp / "ttyPC"
        socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                                 stderr=subprocess.DEVNULL)
        try:
            os.sched_setscheduler(socat.pid, os.SCHED_FIFO, os.sched_param(25))  # socat is the wire
        except (PermissionError, OSError, AttributeError):
            pass
        try:
            for _ in range(100):
                if a.exists() and b.exists():
                    break
                time.sleep(0.05)
            rcfg = cfg.model_copy(update={"plc": cfg.plc.model_copy(update={"timeout_s": 0.1})})
            rtu_url = lambda _p: f"rtu://{b}?baud=115200"  # noqa: E731
            r = measure(rcfg, rtu_url, (rtu_device_main, (str(a), 115200)), max(200, n // 2), [])
            rows.append(row("RTU 115200 (wire modelled), idle", r))
            polls_s = r["polls"]
            r = measure(rcfg, rtu_url, (rtu_device_main, (str(a), 115200)), max(200, n // 2), decoders)
            rows.append(row("RTU 115200 + 2 decoders", r))
        finally:
            socat.terminate()
    table(f"Fire timing error at the device (ms, applied - planned; {n} fires a set-up)",
          ["set-up", "fires", "p50", "p99", "p99.9", "max", "|dev-est| p99", "too_late", "policy"], rows)


def bench_latch(parcels: int) -> None:
    """`sorter sim` with and without the encoder latch: truth fire error of every divert."""
    sys.path.insert(0, str(ROOT))
    from tests.plc_helpers import line_config
    rows = []
    for name, latch in (("no latch (edge = poll midpoint)", False), ("encoder latch at the induct PE", True)):
        tmp = Path(tempfile.mkdtemp())
        path = line_config(tmp, failsafe=True, latch=latch, hb_ms=50, watchdog_ms=500, sim_latch=latch)
        r = subprocess.run([sys.executable, "-m", "sorter", "sim", "--config", str(path), "--parcels",
                            str(parcels), "--rate", "12000", "--seed", "1", "--json"], cwd=ROOT,
                           capture_output=True, text=True, timeout=parcels * 2 + 300)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        fe = d["fire_error_ms"]
        c = d.get("counters", {})
        rows.append([name, d["parcels"], d["outcomes"].get("sorted"), d["mis_sorted"], d["unrecorded"],
                     fe.get("p50"), fe.get("p99"), fe.get("max"), c.get("latched_heads", "-")])
    table(f"Tracking with and without the encoder latch (`sorter sim`, {parcels} parcels, 12000 p/h)",
          ["set-up", "parcels", "sorted", "mis_sorted", "unrecorded", "fire err p50", "p99", "max", "latched heads"],
          rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fires", type=int, default=1000)
    ap.add_argument("--skip-rtu", action="store_true")
    ap.add_argument("--latch", action="store_true", help="also compare tracking with/without the latch")
    ap.add_argument("--parcels", type=int, default=300)
    ap.add_argument("--only-latch", action="store_true")
    a = ap.parse_args()
    if not a.only_latch:
        bench_fires(a.fires, a.skip_rtu)
    if a.latch or a.only_latch:
        bench_latch(a.parcels)


if __name__ == "__main__":
    main()
