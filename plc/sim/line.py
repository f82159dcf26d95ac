"""The simulated line's process: the Modbus I/O module, the parcels' physics, the carriers'
pre-advice (manifest rows written ahead of the parcels), and the truth about every parcel.

Talks to `sorter sim` over a pipe: ("start", t0_mono) starts the parcels; ("report",) returns the
truth report; ("stop",) ends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import statistics
import time
from multiprocessing.connection import Connection

from sorter.controller.config.line import Config
from sorter.controller.routing.manifest import Manifest
from sorter.plc.sim.advice import SimAdvice
from sorter.plc.sim.modbus_server import SimIOModule, start_server
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics

log = logging.getLogger("sorter.sim")
MANIFEST_AHEAD = 2000  # parcels of pre-advice kept ahead of induction in an endless run
KEEP_ENDLESS = 20_000  # an endless run remembers this many parcels (its memory stays flat for months)


class SimLine:
    def __init__(self, cfg: Config, seed: int, n_parcels: int | None, plan: ParcelPlan):
        self.cfg, self.seed, self.n, self.plan = cfg, seed, n_parcels, plan
        self.physics: LinePhysics | None = None
        self.module = SimIOModule(cfg, _IdleLine(cfg))
        self.advice = SimAdvice(cfg, seed)   # the carriers' pre-advice and the truth (routing's files)
        self.routes = self.advice.table
        self.manifest = Manifest(cfg.routing.manifest)
        self.advised = 0

    def advise(self, upto: int) -> None:
        """Send the carriers' pre-advice for parcels [advised, upto) to the manifest."""
        if self.n is not None:
            upto = min(upto, self.n)
        rows = []
        for i in range(self.advised, upto):
            p = self.plan.get(i)
            if p.in_manifest:
                rows.append(self.advice.row(p))
        if rows:
            self.manifest.upsert(rows)
        self.advised = max(self.advised, upto)

    def start(self, t0: float) -> None:
        if self.cfg.plc.mode == "plc_tracking":  # a PLC that tracks parcels and drives its diverters itself
            from sorter.plc.sim.mailbox import attach
            self.physics = attach(self.module, self.cfg, self.plan, t0, self.n)
            return
        self.physics = LinePhysics(self.cfg, self.plan, t0, self.n)
        self.module.physics = self.physics

    def expected_chute(self, p) -> str | None:
        if p.expected_outcome != "sorted":
            return None
        chute = self.advice.expected_chute(p)
        return chute

    def report(self) -> dict:
        ph = self.physics
        reject = self.cfg.line.reject_chute
        out = {"inducted": 0, "landed": 0, "expected_sorted": 0, "mis_sorted": 0, "mis_sorts": [],
               "fire_error_ms": {}, "faults": [], "parcels": [],
               "rejected_sortable": 0, "wrong_chute": 0, "landed_as_wanted": 0, "held": 0, "watchdog_trips": []}
        if ph is None:
            return out
        errors = []
        for i in range(ph.next_index):
            if i in ph.held:
                continue  # the watchdog stopped induction: this parcel never entered the line
            try:
                p = self.plan.get(i)
            except IndexError:  # an endless run no longer keeps its oldest parcels
                continue
            fate = ph.fates.get(i)
            want = self.expected_chute(p)
            ok_chutes = set(self.advice.expected_chutes(p)) if want else {reject}  # a group: any of its chutes
            if p.expected_outcome == "multi_read" and p.waybill_visible and p.in_manifest:
                # a camera that missed the stale second label routes by the real one: its town's
                # chute is where the parcel belongs too (not a mis-sort, though not the expected reject)
                ok_chutes |= set(self.advice.expected_chutes(p))
            chute_cfg = self.cfg.chute(want) if want else None
            t_in = ph.t0 + p.head_s
            if want and fate and ph.full_between(want, t_in, fate.t_mono + 0.5):
                # the chute filled up on the way: reject or the alternate are right, not a mis-sort
                ok_chutes |= {reject, chute_cfg.alternate}
            elif want:
                out["expected_sorted"] += 1
            if fate is not None:
                out["landed"] += 1
                if fate.chute == reject and want and reject not in ok_chutes:
                    out["rejected_sortable"] += 1  # safe, but a sortable parcel the line did not sort
                elif fate.chute not in ok_chutes:
                    out["wrong_chute"] += 1  # the unsafe kind: in a chute it was not meant for
                if want and fate.chute == want:
                    out["landed_as_wanted"] += 1
                if fate.chute not in ok_chutes:
                    out["mis_sorted"] += 1
                    out["mis_sorts"].append({"index": i, "waybill": p.waybill, "want": sorted(c for c in ok_chutes if c),
                                             "got": fate.chute})
                if fate.fire_error_ms is not None:
                    errors.append(fate.fire_error_ms)
            out["parcels"].append({"index": i, "induct_mono": t_in, "expected": p.expected_outcome,
                                   "want": want, "got": fate.chute if fate else None})
        out["inducted"] = ph.next_index - len(ph.held)
        out["held"] = len(ph.held)
        out["watchdog_trips"] = [(round(a - ph.t0, 3), None if b is None else round(b - ph.t0, 3)) for a, b in ph.trips]
        out["faults"] = ph.faults[:20]
        if errors:
            errors.sort()
            q = statistics.quantiles(errors, n=100, method="inclusive") if len(errors) > 1 else errors * 99
            out["fire_error_ms"] = {"p50": round(q[49], 3), "p99": round(q[98], 3),
                                    "max": round(max(errors, key=abs), 3), "n": len(errors)}
        return out


class _IdleLine:
    """What the I/O module shows before the run starts: a stopped, empty belt."""

    def __init__(self, cfg: Config):
        self.start = cfg.sim.encoder_start
        self.outputs = {sig: None for d in cfg.line.diverters for sig in d.outputs.values()}

    def advance(self, t): pass
    def induct_blocked(self, t): return False
    def confirm_blocked(self, c, t): return False
    def full(self, c): return False
    def encoder(self, t): return self.start
    def write_output(self, sig, state, t): pass


async def _serve(sim: SimLine, conn: Connection, host: str, port: int) -> None:
    server, bound = await start_server(sim.module, host, port)
    conn.send(("ready", bound))
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    try:
        while True:
            try:
                msg = await asyncio.wait_for(inbox.get(), timeout=1.0)
            except asyncio.TimeoutError:
                msg = None
            if sim.physics is not None and sim.n is None:
                sim.advise(sim.physics.next_index + MANIFEST_AHEAD)
                sim.physics.forget_before(sim.physics.next_index - KEEP_ENDLESS // 2)
            if msg is None:
                continue
            if msg[0] == "start":
                sim.start(msg[1])
            elif msg[0] == "report":
                if sim.physics is not None:
                    sim.physics.advance(time.monotonic())
                conn.send(("report", sim.report()))
            elif msg[0] == "outage":
                # the I/O module goes away (power cut, cable pulled) and comes back: the belt runs on
                await server.shutdown()
                await asyncio.sleep(msg[1])
                server, _ = await start_server(sim.module, host, bound)
                conn.send(("outage_done",))
            elif msg[0] == "force":
                _, name, value = msg
                if value is None:
                    sim.module.forced.pop(name, None)
                else:
                    sim.module.forced[name] = value
            elif msg[0] == "refuse":
                sim.module.refuse = set(msg[1])
            elif msg[0] == "stop":
                break
    finally:
        await server.shutdown()


def sim_line_main(cfg: Config, seed: int, n_parcels: int | None, conn: Connection,
                  plan_kwargs: dict, host: str = "127.0.0.1") -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s sim %(levelname)s %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    plan = ParcelPlan(cfg, seed, keep=None if n_parcels else KEEP_ENDLESS, **plan_kwargs)
    sim = SimLine(cfg, seed, n_parcels, plan)
    sim.advise(n_parcels if n_parcels is not None else MANIFEST_AHEAD)
    # the simulated line stands in for a PLC, which answers in real time whatever the PC is doing;
    # below the timing process's priority (20), above everything else, when the system allows it
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (PermissionError, OSError, AttributeError):
        pass
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_serve(sim, conn, host, cfg.sim.modbus_port))
