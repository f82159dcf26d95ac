"""Free-running simulated cameras (``sim.camera_mode: free_running``): frames at a fixed rate showing
the belt as it is at that moment.

A triggered camera (plc/sim/frames.py) takes one frame per parcel, its label centred. A free-running
area camera (as most USB / IP cameras over a sorting line are) takes frames at its own rate, so a
parcel is seen in several frames, at a different place in each, and one frame can show two parcels
(the tail of one and the head of the next). Its reads can only be matched to parcels through the
camera's calibration: where along the belt each code is.

Geometry (:class:`BeltView`): the camera looks straight down; the belt runs along image x, downstream
= +x (vision/geometry.py's default direction); the view's centre column is the camera's
``position_mm``; the scale is :data:`PX_PER_MM` everywhere, so a frame ``width`` pixels wide covers
``width / PX_PER_MM`` mm of belt: ``view_mm`` of the camera's config, capped at :data:`MAX_WIDTH`
pixels (a smaller cover than ``view_mm`` is on the safe side for the tracker, which waits until a
parcel has left ``view_mm``). :meth:`BeltView.calibration` is the matching calibration, which
:func:`calibrate_sim_cameras` writes (vision/geometry.py's own atomic save) for the camera workers.

Parcels are where the physics says: the same deterministic :class:`~plc.sim.parcels.ParcelPlan` the
line process uses, on the line's own clocks (:class:`~plc.sim.clock_feed.LineClocks`, told by the
line process): a parcel appears when it really entered, stands while the belt stands, and its head
is ``induct + (belt run seconds now - at its entry) * speed`` (while nothing stops:
``induct + (t - t0 - p.head_s) * speed``). Each
parcel is a cardboard box of its length x width, riding up to :data:`LATERAL_MM` off the belt's centre
line, with its label (rendered once per parcel at :data:`MODULE_MM` per module, 2.5 px per module at
this scale) lying on it near-square to its edges (quarter turn + up to ±12°), wholly on the parcel
along the belt whenever it fits (always, for parcels of 150 mm and more) and wholly inside the frame
across it. Missing or face-down labels: the box alone. The label's blur is baked into its patch; the
belt's slats move with the belt; light fall-off and sensor noise (a bank of pre-drawn noise fields)
are applied per frame. A frame is at most 1280 x 800 (384 x 240 mm): the decoder's cost grows with
the frame's area (~20 ms a frame on average at 800 rows, ~27 ms at 1024, on this 2-core class of
machine), and every frame of a free-running camera is decoded. Rendering one costs ~3 ms (new
parcels' labels included; :func:`measure`).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from sorter.controller.config.line import Config
from sorter.plc.sim.clock_feed import LineClocks
from sorter.plc.sim.parcels import ParcelPlan, PlannedParcel
from sorter.vision.geometry import Calibration, from_two_points
from sorter.vision.labels import LabelSpec, render_label

log = logging.getLogger("sorter.sim.frames")

PX_PER_MM = 10.0 / 3.0  # frame scale: 0.3 mm per pixel
MODULE_MM = 0.75  # label print: a ~140 x 110 mm label, 2.5 px per module at PX_PER_MM
MAX_WIDTH, MAX_HEIGHT = 1280, 800
MIN_HEIGHT = 600  # across the belt: a label turned across (up to ~160 mm) always fits
LATERAL_MM = 50.0  # parcels ride up to this far off the belt's centre line
NOISE_SIGMA = 3.0
NOISE_BANK = 6
SLAT_PERIOD_MM = 25.0
EDGE_MM = 4.0  # keep a label this far inside its parcel when it fits


# ------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class BeltView:
    """What one free-running simulated camera sees: belt mm <-> frame pixels."""

    camera: str
    position_mm: float  # belt position of the frame's centre column
    width: int
    height: int
    px_per_mm: float = PX_PER_MM

    @property
    def covered_mm(self) -> float:
        return self.width / self.px_per_mm

    @property
    def lo_mm(self) -> float:
        return self.position_mm - self.covered_mm / 2

    @property
    def hi_mm(self) -> float:
        return self.position_mm + self.covered_mm / 2

    def x_px(self, belt_mm: float) -> float:
        return self.width / 2 + (belt_mm - self.position_mm) * self.px_per_mm

    def belt_mm(self, x_px: float) -> float:
        return self.position_mm + (x_px - self.width / 2) / self.px_per_mm

    def calibration(self) -> Calibration:
        """The calibration a technician would measure for this camera (two points along the belt)."""
        w, h = self.width, self.height
        d = w / 4
        cal = from_two_points((w / 2, h / 2), self.position_mm, (w / 2 + d, h / 2),
                              self.position_mm + d / self.px_per_mm, (w, h), camera=self.camera)
        cal.meta["sim"] = {"px_per_mm": self.px_per_mm, "covered_mm": round(self.covered_mm, 1),
                           "position_mm": self.position_mm}
        return cal


def view_of(cam, sim) -> BeltView:
    """The view of camera ``cam`` (a CameraConfig) with the sim config ``sim``."""
    width = int(min(MAX_WIDTH, round(cam.view_mm * PX_PER_MM))) // 2 * 2
    height = int(min(MAX_HEIGHT, max(MIN_HEIGHT, round((sim.width_mm[1] + 2 * LATERAL_MM) * PX_PER_MM)))) // 2 * 2
    return BeltView(cam.name, float(cam.position_mm), max(width, 64), height)


def sim_cameras(cfg: Config) -> list:
    return [c for c in cfg.cameras if c.source.startswith("sim://")]


def calibrate_sim_cameras(cfg: Config, folder: str | Path | None = None) -> Config:
    """Free-running mode: write each simulated camera's calibration (``folder``, default
    ``sim-calibration/`` next to the records database) and return the config with the cameras
    pointing at it (a calibration of the config's own is replaced: the sim's geometry is fixed).
    Triggered mode: ``cfg`` unchanged (its frames have no belt geometry)."""
    if cfg.sim.camera_mode != "free_running" or not sim_cameras(cfg):
        return cfg
    folder = Path(folder) if folder is not None else Path(cfg.records.database).parent / "sim-calibration"
    cameras = []
    for cam in cfg.cameras:
        if not cam.source.startswith("sim://"):
            cameras.append(cam)
            continue
        cal = view_of(cam, cfg.sim).calibration()
        path = folder / f"{cam.name}.json"
        if not _same_calibration(path, cal):
            cal.save(path)
        if cam.calibration is not None and Path(cam.calibration) != path:
            log.warning("camera %s: sim free-running mode uses its own calibration %s instead of %s",
                        cam.name, path, cam.calibration)
        cameras.append(cam.model_copy(update={"calibration": path}))
    return cfg.model_copy(update={"cameras": cameras})


def _same_calibration(path: Path, cal: Calibration) -> bool:
    """The file already holds this calibration (no rewrite, no dated backup every run)."""
    try:
        old = Calibration.load(path)
    except Exception:  # noqa: BLE001 - missing or unreadable: write it
        return False
    return (np.allclose(old.H, cal.H) and np.allclose(old.along, cal.along) and np.allclose(old.centre, cal.centre)
            and tuple(old.frame_size) == tuple(cal.frame_size))


# ------------------------------------------------------------------------------------- parcels


def label_spec(p: PlannedParcel) -> LabelSpec:
    return LabelSpec(waybill=p.waybill, qr_text=p.qr_text, ean13=p.ean13, stale_waybill=p.stale_waybill,
                     town=p.town, damaged=p.damaged, face_down=p.face_down, missing=p.missing)


@dataclass
class Sprite:
    """A parcel as the camera sees it, rendered once: its box and its label patch."""

    index: int
    box_w: int  # px along the belt (the parcel's length)
    box_y0: int  # frame rows of the box
    box_y1: int
    cardboard: int
    label: np.ndarray | None  # the label patch (rotated, blurred), grey
    mask: np.ndarray | None  # where the patch is label (bool)
    label_dx: int = 0  # patch's top-left, px from the parcel's tail (upstream end) along the belt
    label_y0: int = 0  # patch's top row in the frame
    label_centre_mm: float = 0.0  # label centre, mm downstream of the parcel's tail (truth)
    label_fits: bool = True  # the label lies wholly on the parcel along the belt


def make_sprite(p: PlannedParcel, view: BeltView, height: int | None = None) -> Sprite:
    s = view.px_per_mm
    h = view.height if height is None else height
    rng = np.random.default_rng([p.label_seed, 77])
    box_w = max(1, int(round(p.length_mm * s)))
    lat = float(rng.uniform(-LATERAL_MM, LATERAL_MM))
    y0 = int(round(h / 2 + (lat - p.width_mm / 2) * s))
    y1 = int(round(h / 2 + (lat + p.width_mm / 2) * s))
    cardboard = int(rng.integers(120, 175))
    sp = Sprite(p.index, box_w, y0, y1, cardboard, None, None)
    label = render_label(label_spec(p), np.random.default_rng(p.label_seed), module_px=MODULE_MM * s)
    if label is None:
        sp.label_centre_mm = p.length_mm / 2
        return sp
    ink, paper = int(rng.integers(15, 45)), int(rng.integers(205, 245))
    lab = cv2.LUT(label, np.linspace(ink, paper, 256).astype(np.uint8))
    lh, lw = lab.shape
    skew = float(rng.uniform(-12, 12))
    edge = EDGE_MM * s

    def extent(angle: float) -> tuple[float, float]:
        c, si = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
        return lw * c + lh * si, lw * si + lh * c

    bases = [float(b) for b in rng.permutation([0, 90, 180, 270])]
    fits_len = [b for b in bases if extent(b + skew)[0] <= box_w - 2 * edge]
    fits_all = [b for b in fits_len if extent(b + skew)[1] <= (y1 - y0) - 2 * edge]
    if fits_all:
        angle = fits_all[0] + skew
    elif fits_len:
        angle = fits_len[0] + skew
    else:  # longer than the parcel whatever way it lies: square to it, the short side along
        angle = min(bases, key=lambda b: extent(b)[0])
    ex, ey = extent(angle)
    # along the belt: anywhere on the parcel where it fits, else centred
    free_x = box_w - 2 * edge - ex
    cx = edge + ex / 2 + float(rng.uniform(0, free_x)) if free_x > 0 else box_w / 2
    # across: on the parcel and inside the frame
    lo, hi = max(y0, 0) + edge + ey / 2, min(y1, h) - edge - ey / 2
    if lo <= hi:
        cy = float(rng.uniform(lo, hi))
    else:
        lo2, hi2 = ey / 2 + 2, h - ey / 2 - 2  # a label wider than the parcel hangs over its side
        cy = float(np.clip((max(y0, 0) + min(y1, h)) / 2, lo2, hi2))
    # the patch: the rotated label on its own canvas (+ a border for the blur)
    pw, ph = int(math.ceil(ex)) + 6, int(math.ceil(ey)) + 6
    M = cv2.getRotationMatrix2D((lw / 2, lh / 2), angle, 1.0)
    M[0, 2] += pw / 2 - lw / 2
    M[1, 2] += ph / 2 - lh / 2
    patch = cv2.warpAffine(lab, M, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=cardboard)
    mask = cv2.warpAffine(np.full((lh, lw), 255, np.uint8), M, (pw, ph), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
    blur = float(rng.uniform(0.3, 0.8))
    patch = cv2.GaussianBlur(patch, (0, 0), blur)
    sp.label, sp.mask = patch, mask
    sp.label_dx = int(round(cx - pw / 2))
    sp.label_y0 = int(round(cy - ph / 2))
    sp.label_centre_mm = (sp.label_dx + pw / 2) / s
    sp.label_fits = free_x > -1e-9
    return sp


# ------------------------------------------------------------------------------------- frames


class BeltRenderer:
    """Renders one camera's frames at any moment from the parcel plan, on `clocks` (the line's, as its
    process tells them; default: the plan's own line that never stops, its times in run seconds)."""

    def __init__(self, view: BeltView, plan: ParcelPlan, induct_mm: float, n_parcels: int | None,
                 seed: int = 0, clocks: LineClocks | None = None):
        self.view, self.plan, self.induct, self.n = view, plan, induct_mm, n_parcels
        self.clocks = clocks if clocks is not None else LineClocks(plan, 0.0, n_parcels, induct_mm)
        self.speed = plan.speed_mm_s
        rng = np.random.default_rng([seed, 99, sum(map(ord, view.camera))])
        w, h = view.width, view.height
        self.belt = int(rng.integers(25, 50))
        self.period = max(4, int(round(SLAT_PERIOD_MM * view.px_per_mm)))
        row = np.full(w + self.period, self.belt, np.uint8)
        row[:: self.period] = max(0, self.belt - 12)
        row[1 :: self.period] = max(0, self.belt - 8)
        self.belt_tile = np.ascontiguousarray(np.broadcast_to(row, (h, w + self.period)))
        gx = np.linspace(1.0 - rng.uniform(0.05, 0.15), 1.0, w, dtype=np.float32)
        if rng.random() < 0.5:
            gx = gx[::-1]
        gy = np.linspace(1.0 - rng.uniform(0, 0.1), 1.0, h, dtype=np.float32)
        self.light = np.outer(gy, gx).astype(np.float32)
        self.noise = []
        for k in range(NOISE_BANK):
            n = np.empty((h, w), np.int16)
            cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
            cv2.randn(n, 0.0, NOISE_SIGMA)
            self.noise.append(n)
        self.first = 0  # parcels before this one have left the view for good
        self.sprites: dict[int, Sprite] = {}
        self.k = 0

    def in_view(self, t: float) -> list[tuple[PlannedParcel, float]]:
        """(parcel, head position mm) of every parcel in (any part of) the view at time t (the
        clocks' time). Times must not go backwards between calls (the same time again may: a frame
        rendered again after news from the line)."""
        v, c = self.view, self.clocks
        # a parcel is gone for good only once it left the view by a time the line has told: a stop
        # not told yet may still keep it there
        known = min(t, c.line_mono)
        while self.n is None or self.first < self.n:
            i = self.first
            if c.exists(i):
                p = self.plan.get(i)
                head = c.head_mm(i, known)
                if head is None or head - p.length_mm < v.hi_mm:
                    break
            self.sprites.pop(i, None)
            self.first += 1
        out = []
        i = self.first
        while self.n is None or i < self.n:
            if not c.exists(i):  # held back by the PLC's watchdog: never on the belt
                i += 1
                continue
            head = c.head_mm(i, t)
            if head is None or head <= v.lo_mm:
                break  # not entered yet (nor, in order, any behind it), or not in view yet
            p = self.plan.get(i)
            if head - p.length_mm < v.hi_mm:
                out.append((p, head))
            i += 1
        return out

    def sprite(self, p: PlannedParcel) -> Sprite:
        sp = self.sprites.get(p.index)
        if sp is None:
            sp = self.sprites[p.index] = make_sprite(p, self.view)
        return sp

    def render(self, t: float) -> tuple[np.ndarray, dict]:
        """The frame at time ``t`` (the clocks' time) and what it shows: ``parcels`` (indices in view),
        ``labels`` (indices whose label is wholly in the frame)."""
        v = self.view
        w, h = v.width, v.height
        travel_px = self.clocks.belt.run_s(t) * self.speed * v.px_per_mm
        shift = int(-travel_px) % self.period  # the slats move downstream (+x) with the belt
        frame = self.belt_tile[:, shift : shift + w].copy()
        shown, labels = [], []
        for p, head in self.in_view(t):
            sp = self.sprite(p)
            x_tail = int(round(v.x_px(head - p.length_mm)))
            a, b = max(0, x_tail), min(w, x_tail + sp.box_w)
            ya, yb = max(0, sp.box_y0), min(h, sp.box_y1)
            if a < b and ya < yb:
                frame[ya:yb, a:b] = sp.cardboard
            shown.append(p.index)
            if sp.label is None:
                continue
            ph, pw = sp.label.shape
            lx, ly = x_tail + sp.label_dx, sp.label_y0
            a, b = max(0, lx), min(w, lx + pw)
            ya, yb = max(0, ly), min(h, ly + ph)
            if a >= b or ya >= yb:
                continue
            np.copyto(frame[ya:yb, a:b], sp.label[ya - ly : yb - ly, a - lx : b - lx],
                      where=sp.mask[ya - ly : yb - ly, a - lx : b - lx])
            if lx >= 0 and lx + pw <= w and ly >= 0 and ly + ph <= h:
                labels.append(p.index)
        frame = cv2.multiply(frame, self.light, dtype=cv2.CV_8U)
        frame = cv2.add(frame, self.noise[self.k % NOISE_BANK], dtype=cv2.CV_8U)
        self.k += 1
        return frame, {"parcels": shown, "labels": labels}


class FreeRunStats:
    """What the free-running cameras sent, per camera: ``frames``; ``late_skipped`` (rendering fell
    over LATE_SKIP_S behind: not sent); ``rendered_again`` (the line's news came after the frame was
    rendered and moved a parcel in it); ``two_parcels`` (frames showing some part of two or more
    parcels); ``two_labels`` (frames showing two or more labels whole); ``parcels_seen`` and
    ``labels_wholly_seen`` (parcels in some frame; labels whole in some frame). Plus the render time."""

    def __init__(self, cameras: list[str], fps: float):
        self.fps = fps
        self.cams = {c: {"frames": 0, "late_skipped": 0, "rendered_again": 0, "two_parcels": 0, "two_labels": 0, "parcels_seen": 0,
                         "labels_wholly_seen": 0} for c in cameras}
        self._seen = {c: {"parcels_seen": set(), "labels_wholly_seen": set()} for c in cameras}
        self.render_ms: list[float] = []
        self.t_first: float | None = None
        self.t_last: float | None = None

    def add(self, camera: str, info: dict, ms: float, now: float) -> None:
        c = self.cams[camera]
        c["frames"] += 1
        c["two_parcels"] += len(info["parcels"]) >= 2
        c["two_labels"] += len(info["labels"]) >= 2
        for key, indices in (("parcels_seen", info["parcels"]), ("labels_wholly_seen", info["labels"])):
            seen = self._seen[camera][key]
            for i in indices:
                if i not in seen:
                    seen.add(i)
                    c[key] += 1
            if len(seen) > 400:  # an endless run: parcels long gone are never seen again
                newest = max(seen)
                seen.difference_update([i for i in seen if i < newest - 200])
        self.render_ms.append(ms)
        if len(self.render_ms) > 20_000:
            del self.render_ms[:10_000]
        self.t_first = now if self.t_first is None else self.t_first
        self.t_last = now

    def report(self) -> dict:
        ms = np.asarray(self.render_ms) if self.render_ms else None
        span = (self.t_last - self.t_first) if self.t_first is not None and self.t_last else 0.0
        frames = sum(c["frames"] for c in self.cams.values())
        return {
            "mode": "free_running", "fps": self.fps,
            "sent_fps": round((frames - len(self.cams)) / span, 2) if span > 0 else None,
            "render_ms_p50": None if ms is None else round(float(np.percentile(ms, 50)), 2),
            "render_ms_p99": None if ms is None else round(float(np.percentile(ms, 99)), 2),
            "cameras": {name: dict(c) for name, c in self.cams.items()},
        }


LATE_SKIP_S = 0.2  # a frame that could not be sent within this of its capture is skipped (a real camera drops it)


def run_free_running(cfg: Config, plan: ParcelPlan, n_parcels: int | None, clocks: LineClocks, send: Callable,
                     waiter, stats: FreeRunStats, seed: int = 0) -> None:
    """The frame loop: every camera's frames in capture order, rendered just ahead on the line's clocks,
    sent at their capture moment (+10 ms delivery) once the line has told everything up to it
    (rendered again if that news moved something), until ``waiter`` (frames.Waiter) says stop."""
    induct = cfg.line.induct.position_mm
    fps = cfg.sim.camera_fps
    cams = sorted(sim_cameras(cfg), key=lambda c: c.position_mm)
    renderers = {c.name: BeltRenderer(view_of(c, cfg.sim), plan, induct, n_parcels, seed, clocks) for c in cams}
    for c in cams:
        v = renderers[c.name].view
        if v.covered_mm + 1.0 < c.view_mm:
            log.warning("camera %s: the simulated frame covers %.0f mm of belt (%d px at %.2f px/mm), less than "
                        "view_mm %.0f", c.name, v.covered_mm, v.width, v.px_per_mm, c.view_mm)
    # each camera's own phase, so that two cameras do not expose at the same instant
    t0 = clocks.t0
    heap = [(t0 + (k / max(1, len(cams))) / fps, k, c.name, 0) for k, c in enumerate(cams)]
    heapq.heapify(heap)
    while heap:
        t_cap, k, name, n = heapq.heappop(heap)
        heapq.heappush(heap, (t_cap + 1.0 / fps, k, name, n + 1))
        if not waiter.wait(t_cap - 1.0 / fps, t_cap):
            return
        if time.monotonic() > t_cap + LATE_SKIP_S:
            stats.cams[name]["late_skipped"] += 1
            renderers[name].in_view(t_cap)  # keep its window moving
            continue
        t_r = time.perf_counter()
        version = clocks.version
        frame, info = renderers[name].render(t_cap)
        ms = (time.perf_counter() - t_r) * 1000
        # a camera delivers a frame a little after it exposed it; the line must have told all up to then
        if not waiter.wait(t_cap + 0.01, t_cap, need=t_cap):
            return
        if clocks.version != version:
            frame, info = renderers[name].render(t_cap)
            stats.cams[name]["rendered_again"] += 1
        send(name, t_cap, frame)
        stats.add(name, info, ms, time.monotonic())


def measure(cfg: Config, seconds: float = 5.0, seed: int = 1) -> dict:
    """Render ``seconds`` of belt as fast as possible: frames per second one core sustains."""
    plan = ParcelPlan(cfg, seed)
    cams = sim_cameras(cfg)
    r = BeltRenderer(view_of(cams[0], cfg.sim), plan, cfg.line.induct.position_mm, None, seed)
    t_run, n, two = 1.0, 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, info = r.render(t_run)
        two += len(info["parcels"]) >= 2
        t_run += 1.0 / cfg.sim.camera_fps
        n += 1
    el = time.perf_counter() - t0
    return {"frames": n, "fps": round(n / el, 1), "ms": round(1000 * el / n, 2), "two_parcels": two,
            "shape": (r.view.height, r.view.width)}
