"""Drive the tracker against the simulated line's physics in one process, on a simulated clock.

No Modbus and no cameras: the I/O module's own mapping (SimIOModule.input_bits) gives the inputs,
outputs are written to the physics at the moment they fall due, and an emulated camera hands the
tracker each visible waybill when the parcel's centre passes under it. A shift runs in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sorter.controller.config.line import Config
from sorter.controller.routing.manifest import Manifest
from sorter.controller.routing.router import Router
from sorter.controller.timing.tracker import Read, Tracker
from sorter.plc.sim.line import SimLine
from sorter.plc.sim.modbus_server import SimIOModule
from sorter.plc.sim.parcels import ParcelPlan
from sorter.plc.sim.physics import LinePhysics


@dataclass
class Drive:
    records: list[dict] = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    tracker: Tracker | None = None
    physics: LinePhysics | None = None


def drive(cfg: Config, n: int, seed: int = 1, poll_s: float = 0.001, decode_latency_s: float = 0.03,
          cameras_report: bool = True, reads: bool = True, plan: ParcelPlan | None = None,
          tweak=None, start_late_s: float = 0.0) -> Drive:
    plan = plan or ParcelPlan(cfg, seed)
    sim = SimLine(cfg, seed, n, plan)
    sim.advise(n)
    physics = LinePhysics(cfg, plan, 0.0, n)
    sim.physics = physics
    if tweak:
        tweak(physics)
    module = SimIOModule(cfg, physics)
    now = {"t": 0.0}
    out = Drive(physics=physics)
    router = Router.from_config(cfg)
    tracker = Tracker(cfg, router.decide, out.records.append, "test", wall=lambda: 1.7e9 + now["t"])
    out.tracker = tracker
    cam = cfg.cameras[0]
    v = plan.speed_mm_s
    pending: list[tuple[float, float, list[Read]]] = []  # (delivery time, capture time, reads)
    captured = 0
    t = 0.0
    end = plan.get(n - 1).head_s + (cfg.line.end_mm + 1000) / v + 3.0
    while t < end:
        now["t"] = t
        # the emulated camera: captures each parcel under it, delivers its reads after decoding
        while captured < n:
            p = plan.get(captured)
            t_cap = p.head_s + (cam.position_mm - cfg.line.induct.position_mm + p.length_mm / 2) / v
            if t_cap > t:
                break
            texts = []
            if reads and p.waybill_visible:
                texts.append(("code128" if not p.damaged else "qrcode", p.waybill if not p.damaged else p.qr_text))
            if reads and p.stale_waybill and not (p.missing or p.face_down):
                texts.append(("code128", p.stale_waybill))
            pending.append((t_cap + decode_latency_s, t_cap, [Read(cam.name, s, x, t_cap) for s, x in texts]))
            captured += 1
        while pending and pending[0][0] <= t:
            t_deliver, t_cap, rs = pending.pop(0)
            for r in rs:
                tracker.add_read(r)
            if cameras_report:
                # as the worker says it: caught up to now, or only to this frame when more wait
                tracker.camera_caught_up(cam.name, t_cap if pending else t_deliver)
        values = {k: int(b) for k, b in module.input_bits(t).items()}
        values[cfg.line.encoder_signal] = physics.encoder(t)
        if t < start_late_s:  # the controller is not polling yet
            physics.advance(t)
            t += poll_s
            continue
        tracker.on_inputs(t, values)
        tracker.settle_cancelled()
        # outputs fall due between polls: write them at their moment, as the timing loop does
        while True:
            a = tracker.outputs.next_action()
            if a is None or a.due_mono > t + poll_s:
                break
            if tracker.outputs.too_late(a, max(t, a.due_mono)):
                tracker.settle_cancelled()
                continue
            at = max(t, a.due_mono)
            physics.write_output(a.signal, a.state, at)
            tracker.output_done(a, at)
        t += poll_s
    physics.advance(t)
    out.truth = sim.report()
    return out


def tmp_config(cfg: Config, tmp: Path, **sim_updates) -> Config:
    """The example line with its databases in a temporary folder (and sim settings changed)."""
    routing = cfg.routing.model_copy(update={"manifest": tmp / "manifest.db"})
    records = cfg.records.model_copy(update={"database": tmp / "records.db"})
    sim = cfg.sim.model_copy(update=sim_updates)
    Manifest(tmp / "manifest.db").close()
    return cfg.model_copy(update={"routing": routing, "records": records, "sim": sim})
