"""The simulated line's process: the Modbus I/O module, the parcels' physics, the carriers'
pre-advice, and the truth about every parcel.

The carriers' pre-advice goes where a real carrier's goes: manifest CSV files dropped into the
line's advice inbox (`manifest_inbox_folder`), written as NAME.csv.part and renamed when complete,
for the controller's inbox to import as `sorter manifest import` would. The simulated line never
writes into the manifest itself, and judges each parcel by its own truth table (advice.py), so a
fault in the import or the routing shows up as a mis-sort.

Talks to the wiring (controller/app.py) over a pipe, in the typed messages of sorter/messages.py:
SimStart starts the parcels, SimReportRequest is answered with the truth report (SimReport), Stop
(or the pipe closing) ends it. A second, one-way pipe (`feed`) tells the camera frames process what
moves the parcels (clock_feed.py): induction and the belt stop and start, and frames must follow.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import logging
import os
import select
import selectors
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from sorter.controller.config.line import Config
from sorter.controller.config.routing import manifest_inbox_folder
from sorter.messages import (SimByHand, SimByHandDone, SimFailed, SimForce, SimOutage, SimOutageDone, SimReady, SimRefuse, SimReport,
                              SimLineNews, SimReportRequest, SimStart, Stop)
from sorter.plc.sim.advice import SimAdvice
from sorter.plc.sim.clock_feed import NEWS_MAX_EVENTS, NEWS_S, ClockPublisher
from sorter.plc.sim.modbus_server import SimIOModule, start_server
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import EXTRA_INDEX, LinePhysics

log = logging.getLogger("sorter.sim")
MANIFEST_AHEAD = 2000  # parcels of pre-advice kept ahead of induction in an endless run
KEEP_ENDLESS = 20_000  # an endless run remembers this many parcels (its memory stays flat for months)
ADVICE_COLUMNS = ("waybill", "town", "sort_code", "address")   # header names `sorter manifest import` reads


class SimLine:
    """The simulated line. `importer(path)`, when given, is called with each advice file as soon as
    it is written (the in-process test drives, which run no inbox of their own); `sorter sim`
    leaves the files to the controller's inbox."""

    def __init__(self, cfg: Config, seed: int, n_parcels: int | None, plan: ParcelPlan,
                 inbox: Path | None = None, importer: Callable[[Path], object] | None = None,
                 feed: Connection | None = None):
        self.cfg, self.seed, self.n, self.plan = cfg, seed, n_parcels, plan
        self.physics: LinePhysics | None = None
        self.feed = feed                       # to the camera frames process (None: nobody follows)
        self.publisher: ClockPublisher | None = None
        self._news: list = []                  # told events not yet sent (the pipe was full)
        self.module = SimIOModule(cfg, _IdleLine(cfg))
        self.advice = SimAdvice(cfg, seed)   # the carriers' pre-advice and the truth (the sim's own table)
        self.inbox = Path(inbox) if inbox is not None else manifest_inbox_folder(cfg.routing, sim=True)
        self.importer = importer
        # names sort in the order the files were written, whatever runs came before in the folder
        self.tag = f"sim-advice-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-s{seed}"
        self.advised = 0

    def advise(self, upto: int) -> Path | None:
        """Send the carriers' pre-advice for parcels [advised, upto): one manifest CSV file in the
        inbox (then, with an importer, imported at once). Returns the file (None: nothing to send)."""
        if self.n is not None:
            upto = min(upto, self.n)
        first = self.advised
        rows = []
        for i in range(first, upto):
            p = self.plan.get(i)
            if p.in_manifest:
                rows.append(self.advice.row(p))
        self.advised = max(self.advised, upto)
        if not rows:
            return None
        path = write_advice(self.inbox, f"{self.tag}-{first:09d}", rows)
        if self.importer is not None:
            self.importer(path)
        return path

    def start(self, t0: float) -> None:
        if self.cfg.plc.mode == "plc_tracking":  # a PLC that tracks parcels and drives its diverters itself
            from sorter.plc.sim.mailbox import attach
            self.physics = attach(self.module, self.cfg, self.plan, t0, self.n)
        else:
            # the run starts with induction as the controller left it (it may have enabled it already)
            self.physics = LinePhysics(self.cfg, self.plan, t0, self.n, induct_enabled=self.module.induct_enabled())
            self.module.use(self.physics, t0)
        if self.feed is not None:
            self.publisher = ClockPublisher(self.physics)

    def tell_cameras(self, now: float) -> None:
        """Advance the line to now and send the camera frames what moved parcels since the last news.
        Never blocks the line: a pipe the frames process does not empty keeps the news for later
        (a write of less than PIPE_BUF bytes to a writable pipe is whole and does not block)."""
        if self.publisher is None:
            return
        self.physics.advance(now)
        news = self.publisher.news()
        events = self._news + list(news.events)
        try:
            while True:
                if not select.select([], [self.feed], [], 0)[1]:
                    self._news = events
                    return
                if len(events) <= NEWS_MAX_EVENTS:
                    self.feed.send(SimLineNews(tuple(events), news.line_mono))
                    self._news = []
                    return
                # a backlog too big for one atomic write: in pieces, the time it covers with the last
                self.feed.send(SimLineNews(tuple(events[:NEWS_MAX_EVENTS]), float("-inf")))
                events = events[NEWS_MAX_EVENTS:]
        except OSError:  # the frames process is gone: nobody to tell
            self.publisher = None

    def by_hand(self, msg, now: float) -> SimByHandDone:
        """What someone at the belt does (the physics keeps it in the truth: OFF_BELT, extras)."""
        ph = self.physics
        if ph is None:
            return SimByHandDone(None, None)
        taken = at_mm = None
        if msg.take_off is not None:
            ph.advance(now)
            index = msg.take_off
            if index == -1:  # the parcel last inducted whose tail is past the eye
                past = [c.p.index for c in ph.on_belt if c.t_tail <= now and c.p.index < EXTRA_INDEX]
                index = max(past) if past else None
            if index is not None:
                at_mm = ph.head_mm(ph.plan.get(index), now)
                if ph.take_off(index, now):
                    taken = index
        put = None
        if msg.put_on_mm is not None:
            where = at_mm if msg.put_on_mm == -1 else msg.put_on_mm  # -1: in the place of the one taken off
            if where is not None:
                put = ph.put_on(now, where, msg.length_mm)
        return SimByHandDone(taken, put)

    def expected_chute(self, p) -> str | None:
        if p.expected_outcome != "sorted":
            return None
        return self.advice.expected_chute(p)

    def report(self) -> dict:
        ph = self.physics
        reject = self.cfg.line.reject_chute
        out = {"inducted": 0, "landed": 0, "expected_sorted": 0, "mis_sorted": 0, "mis_sorts": [],
               "fire_error_ms": {}, "faults": [], "parcels": [],
               "rejected_sortable": 0, "wrong_chute": 0, "landed_as_wanted": 0, "held": 0, "waiting": 0,
               "on_belt": 0, "watchdog_trips": [], "belt_stops": [], "infeed_stops": []}
        if ph is None:
            return out
        errors = []
        for i in range(ph.next_index):
            t_in = ph.entered.get(i)
            try:
                p = self.plan.get(i)
            except IndexError:  # an endless run no longer keeps its oldest parcels
                continue
            if t_in is None:
                continue  # held back by the watchdog: it never entered the line
            fate = ph.fates.get(i)
            want = self.expected_chute(p)
            chutes = self.advice.expected_chutes(p) if want else ()
            ok_chutes = set(chutes) if want else {reject}  # a group: any of its chutes
            if p.expected_outcome == "multi_read" and p.waybill_visible and p.in_manifest:
                # a camera that missed the stale second label routes by the real one: its town's
                # chute is where the parcel belongs too (not a mis-sort, though not the expected reject)
                ok_chutes |= set(self.advice.expected_chutes(p))
            if want and fate and all(ph.full_between(c, t_in, fate.t_mono + 0.5) for c in chutes):
                # its chutes filled up on the way: reject or the alternate are right, not a mis-sort
                ok_chutes |= {reject} | self.advice.alternates(p)
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
                    out["mis_sorts"].append({"index": i, "waybill": p.waybill, "town": p.town,
                                             "want": sorted(c for c in ok_chutes if c), "got": fate.chute})
                if fate.fire_error_ms is not None:
                    errors.append(fate.fire_error_ms)
            out["parcels"].append({"index": i, "induct_mono": t_in, "expected": p.expected_outcome,
                                   "want": want, "got": fate.chute if fate else None,
                                   # per parcel, so that a benchmark can compare spans of one run
                                   "end_mono": fate.t_mono if fate else None,
                                   "fire_error_ms": fate.fire_error_ms if fate else None})
        # every planned parcel is inducted (on the belt or landed), held back by the watchdog (never
        # enters), waiting on the infeed (due as planned, late because induction or the belt stood
        # still), or not due yet
        out["inducted"] = ph.next_index - len(ph.held)
        out["on_belt"] = len(ph.on_belt)
        out["held"] = len(ph.held)
        out["waiting"] = ph.waiting(ph.t)

        def run_s(spans):
            return [(round(a - ph.t0, 3), None if b is None else round(b - ph.t0, 3)) for a, b in spans]
        out["watchdog_trips"] = run_s(ph.trips)
        out["belt_stops"] = run_s(ph.belt.stops())
        out["infeed_stops"] = run_s(ph.infeed.stops())
        out["faults"] = ph.faults[:20]
        if errors:
            errors.sort()
            q = statistics.quantiles(errors, n=100, method="inclusive") if len(errors) > 1 else errors * 99
            out["fire_error_ms"] = {"p50": round(q[49], 3), "p99": round(q[98], 3),
                                    "max": round(max(errors, key=abs), 3), "n": len(errors)}
            if len(errors) >= 1000:  # a p99.9 of fewer would be the largest error by another name
                out["fire_error_ms"]["p999"] = round(
                    statistics.quantiles(errors, n=1000, method="inclusive")[998], 3)
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
    belt_running = True  # the run input before the run: healthy, as it always read


async def _serve(sim: SimLine, conn: Connection, host: str, port: int) -> None:
    try:
        server, bound = await start_server(sim.module, host, port)
    except (OSError, RuntimeError) as exc:  # pymodbus raises RuntimeError("Could not start listen") when the port is taken
        conn.send(SimFailed(f"the simulated line cannot listen on {host}:{port} ({exc}): another program has "
                            "the port; set sim.modbus_port in the config or pass --modbus-port (0 = any free port)"))
        return
    conn.send(SimReady(bound))
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()

    def receive() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the parent is gone: nobody to simulate for
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(Stop())

    loop.add_reader(conn.fileno(), receive)

    async def tell_cameras() -> None:
        while True:
            await asyncio.sleep(NEWS_S)
            sim.tell_cameras(time.monotonic())

    teller = loop.create_task(tell_cameras()) if sim.feed is not None else None
    try:
        while True:
            try:
                msg = await asyncio.wait_for(inbox.get(), timeout=1.0)
            except asyncio.TimeoutError:
                msg = None
            if sim.physics is not None and sim.n is None:
                # a file of about MANIFEST_AHEAD / 2 parcels whenever the advice ahead runs short
                if sim.advised < sim.physics.next_index + MANIFEST_AHEAD // 2:
                    sim.advise(sim.physics.next_index + MANIFEST_AHEAD)
                sim.physics.forget_before(sim.physics.next_index - KEEP_ENDLESS // 2)
            kind = type(msg)
            if msg is None:
                continue
            if kind is SimStart:
                sim.start(msg.t0_mono)
            elif kind is SimReportRequest:
                if sim.physics is not None:
                    sim.physics.advance(time.monotonic())
                conn.send(SimReport(sim.report()))
            elif kind is SimOutage:
                # the I/O module goes away (power cut, cable pulled) and comes back: the belt runs on
                await server.shutdown()
                await asyncio.sleep(msg.seconds)
                server, _ = await start_server(sim.module, host, bound)
                conn.send(SimOutageDone())
            elif kind is SimForce:
                if msg.value is None:
                    sim.module.forced.pop(msg.signal, None)
                else:
                    sim.module.forced[msg.signal] = msg.value
            elif kind is SimRefuse:
                sim.module.refuse = set(msg.signals)
            elif kind is SimByHand:
                conn.send(sim.by_hand(msg, time.monotonic()))
            elif kind is Stop:
                break
    finally:
        if teller is not None:
            teller.cancel()
        await server.shutdown()


def write_advice(folder: Path, stem: str, rows: list[tuple]) -> Path:
    """Write advice rows as folder/STEM.csv (UTF-8, the header `sorter manifest import` reads):
    into STEM.csv.part first, renamed when complete, so an importer never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / f"{stem}.csv", folder / f"{stem}.csv.part"
    with open(part, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(ADVICE_COLUMNS)
        w.writerows(["" if v is None else v for v in row] for row in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, final)
    return final


def sim_line_main(cfg: Config, seed: int, n_parcels: int | None, conn: Connection,
                  plan_kwargs: dict, host: str = "127.0.0.1", feed: Connection | None = None) -> None:
    plan = ParcelPlan(cfg, seed, keep=None if n_parcels else KEEP_ENDLESS, **plan_kwargs)
    sim = SimLine(cfg, seed, n_parcels, plan, feed=feed)
    sim.advise(n_parcels if n_parcels is not None else MANIFEST_AHEAD)
    # the simulated line stands in for a PLC, which answers in real time whatever the PC is doing;
    # below the timing process's priority (20), above everything else, when the system allows it
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (PermissionError, OSError, AttributeError):
        pass
    # a full garbage collection of what start-up made stalls the answers for 15-20 ms (a PLC never
    # does): frozen out of the collector's walks, as in the timing process (timing/gc_pauses.py)
    gc.collect()
    gc.freeze()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_serve(sim, conn, host, cfg.sim.modbus_port))
