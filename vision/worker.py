"""One camera worker process: frames from its source, barcodes decoded, reads sent on.

Started by the service with the ``spawn`` context (never fork: the service is threaded), one per
camera, at a lower priority (``nice``) than the timing process. Inside:

* a **capture thread** reads the source straight into a pre-allocated shared-memory ring
  (:mod:`vision.ring`): no copies, a bounded number of frames waiting (the oldest is dropped and
  counted when the decoder is behind), capture time on the monotonic clock;
* the **main thread** decodes each waiting frame, maps each read's position to belt millimetres
  through the camera's calibration, and sends the results with a non-blocking put (dropped and
  counted when the service is behind); it also answers the service's commands and sends health.

A source that fails is reopened with backoff (0.5 s doubling to 10 s); a free-running camera
(USB, IP) that stops delivering frames for ``stall_s`` is declared down and reopened, and if its
driver hangs inside a read the process exits so that the service restarts it.

Messages (``out_q``, types in :mod:`sorter.messages`): CameraUp, CameraDown, CameraIdle, FrameReads
(codes ``(symbology, text, polygon, offset_mm, weak)``, offset_mm None when uncalibrated, weak True
for a 1-D read only one decoding attempt made), and CameraHealthReport about every second.

Capture times are the camera's exposure on the monotonic clock: the configured ``latency_ms`` (an
RTSP stream's or a code reader's delay) is taken off each frame's and each read's arrival time.
Commands (``cmd_q``): KeepFrames keeps the frames of a no-read parcel on disk; ParcelWindow tells
the worker a parcel passed (for reads per parcel and the read rate; without these, each frame of a
triggered camera is taken as one parcel).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from sorter.vision.decode import STATS as _decode_stats
from sorter.vision.decode import ReadRules, decode
from sorter.vision.outline import outline
from sorter.vision.sources import NoFrame, Reads, SourceError, open_source
from sorter.messages import (CameraDown, CameraHealthReport, CameraIdle, CameraUp, FrameReads, KeepFrames,
                             ParcelWindow, SetCameraProperties)

log = logging.getLogger("sorter.camera")

BACKOFF_MIN, BACKOFF_MAX = 0.5, 10.0


def camera_main(name: str, source: str, symbologies: list[str], nice: int, out_q,
                max_age_s: float = 0.8, cmd_q=None, config=None, keep_dir: str | None = None,
                health_s: float = 1.0) -> None:
    """Entry point of a camera worker process.

    ``config``: the camera's :class:`vision.config.CameraConfig` (properties, calibration, engines,
    read-rate floor ...; paths already resolved); ``keep_dir``: where no-read frames go (default:
    ``config.noread_dir``; none: not kept)."""
    try:
        os.nice(nice)
    except OSError:
        pass
    # one worker per camera already uses the cores; OpenCV's own threads would only fight them
    cv2.setNumThreads(1)
    # a terminated worker removes its shared-memory ring; one that was killed is cleaned by the next
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    remove_stale_rings(name)
    # load the decoders' libraries and warm their caches now: the first real frame must not pay it
    # (it cost the first parcels of a run their reads)
    from sorter.vision.decode import warm_up
    warm_up(symbologies, getattr(config, "engines", None))
    w = CameraWorker(name, source, symbologies, out_q, max_age_s, cmd_q, config, keep_dir, health_s)
    try:
        w.run()
    finally:
        if w.ring is not None:
            w.ring.close()


def calibrated_latency_ms(cfg, calibration) -> float:
    """The camera's latency: ``cameras[].latency_ms`` when the config sets it, else the one
    `sorter calibrate latency --save` measured into its calibration file, else 0."""
    if "latency_ms" in cfg.model_fields_set or calibration is None:
        return float(cfg.latency_ms)
    try:
        return max(0.0, min(5000.0, float(calibration.meta.get("latency_ms") or 0.0)))
    except (TypeError, ValueError):
        return float(cfg.latency_ms)


def remove_stale_rings(name: str) -> int:
    """Unlink /dev/shm/sorter-PID-NAME-* rings whose worker process is gone."""
    n = 0
    for p in Path("/dev/shm").glob(f"sorter-*-{name}-*"):
        parts = p.name.split("-")
        if len(parts) < 4 or not parts[1].isdigit() or "-".join(parts[2:-1]) != name:
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            p.unlink()
            n += 1
        except OSError:
            pass
    return n


class CameraWorker:
    def __init__(self, name, source, symbologies, out_q, max_age_s=0.8, cmd_q=None, config=None,
                 keep_dir=None, health_s=1.0):
        from sorter.controller.config.vision import CameraConfig

        self.name, self.source, self.out_q, self.cmd_q = name, source, out_q, cmd_q
        self.cfg = config if config is not None else CameraConfig(name=name, source=source, position_mm=0)
        self.symbologies = list(symbologies)
        self.engines = list(self.cfg.engines)
        self.rules = ReadRules(self.cfg.code39_check, tuple(self.cfg.itf_lengths), self.cfg.itf_check_digit)
        self.latency_s = self.cfg.latency_ms / 1000.0
        self.weak_sent = 0  # reads only one decoding attempt made (flagged, sent)
        self.max_age_s = max_age_s
        self.health_s = health_s
        kd = keep_dir or self.cfg.noread_dir
        self.keeper = NoReadKeeper(Path(kd), name, self.cfg.noread_max_mb) if kd else None
        self.calibration = None
        self.calibration_error = ""
        if self.cfg.calibration is not None:
            from sorter.vision.geometry import Calibration, CalibrationError
            try:
                self.calibration = Calibration.load(self.cfg.calibration)
                self.latency_s = calibrated_latency_ms(self.cfg, self.calibration) / 1000.0
            except CalibrationError as exc:
                self.calibration_error = str(exc)
                log.error("calibration not used: %s", exc)
        self.ring = None
        self.dropped_out = 0  # results the service had no room for
        self.stale = 0  # frames too old when their turn came
        self.frames = 0
        self.reads = 0
        self.reopens = 0
        self.noread_lines = 0
        self.decode_ms: deque[float] = deque(maxlen=500)
        self.frame_times: deque[float] = deque(maxlen=400)
        self.frame_log: deque[tuple[float, int]] = deque(maxlen=4000)  # (capture_mono, n codes)
        # what was found where in the last frames, by their time in the ring: kept frames show it outlined
        self.found: deque[tuple[float, list]] = deque(maxlen=256)
        self._note = b""  # the codes of the frame being decoded, as the ring keeps them beside it
        self.parcels: deque[tuple[bool, int]] = deque(maxlen=self.cfg.read_rate_window)
        self.parcel_msgs = False
        self.accepted: dict = {}
        self.state, self.error = "starting", ""
        self.last_image = ""
        self.last_health = 0.0
        self.backoff = BACKOFF_MIN
        self.kind = ""
        self.src = None
        self._capturing = False
        self._props_pending: dict | None = None  # for the capture thread to set between reads

    # ------------------------------------------------------------------------------ messaging
    def put(self, msg) -> bool:
        try:
            self.out_q.put_nowait(msg)
            return True
        except queue.Full:
            self.dropped_out += 1
            return False

    @property
    def dropped(self) -> int:
        return self.dropped_out + self.stale + (self.ring.dropped if self.ring is not None else 0)

    def offset_of(self, polygon, shape) -> float | None:
        if self.calibration is None or not polygon:
            return None
        try:
            return round(self.calibration.offset_mm(polygon, shape), 1)
        except Exception:  # noqa: BLE001 - a bad calibration must not lose reads
            return None

    # ------------------------------------------------------------------------------ main loop
    def run(self) -> None:
        while True:
            try:
                src = open_source(self.source, self.cfg.properties.model_dump(exclude_none=True),
                                  self.cfg.reader_symbology)
            except (SourceError, ValueError) as exc:
                self._down(str(exc))
                continue
            self.kind = src.kind
            self.src = src
            try:
                src.open()
                self.accepted = getattr(src, "accepted", {})
                self.state, self.error = "up", ""
                self.put(CameraUp(self.name, self.source))
                self.send_health(force=True)
                if src.kind in ("serial", "reader"):
                    self._run_reader(src)
                else:
                    self._run_camera(src)
            except SourceError as exc:
                src.close()
                self._down(str(exc))
            else:
                src.close()

    def _down(self, error: str) -> None:
        self.state, self.error = "down", error
        self.put(CameraDown(self.name, error))
        self.send_health(force=True)
        self.reopens += 1
        end = time.monotonic() + self.backoff
        while time.monotonic() < end:  # keep answering commands while waiting
            self.poll_commands()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _run_reader(self, src) -> None:
        while True:
            self.poll_commands()
            self.send_health()
            try:
                t, reads = src.read()
            except NoFrame:
                self.put(CameraIdle(self.name, time.monotonic() - self.latency_s))
                continue
            assert isinstance(reads, Reads)
            self.backoff = BACKOFF_MIN
            self.noread_lines += reads.noread
            t -= self.latency_s  # the reader decoded it before its line reached us
            codes = [(s, txt, (), None, False) for s, txt in reads.codes]
            self.frames += 1
            self.reads += len(codes)
            self.frame_times.append(t)
            self.frame_log.append((t, len(codes)))
            if not self.parcel_msgs:  # one line = one trigger = one parcel
                self.parcels.append((bool(codes), len(codes)))
            self.put(FrameReads(self.name, t, 0.0, None, codes, self.dropped, time.monotonic()))

    def _ensure_ring(self, h: int, w: int):
        from sorter.vision.ring import FrameRing

        if self.ring is not None and h * w <= self.ring.slot_bytes:
            return self.ring
        if self.ring is not None:
            self.ring.close()
        n = int(max(4, min(64, self.cfg.ring_mb * 1e6 // (h * w))))
        self.ring = FrameRing(f"sorter-{os.getpid()}-{self.name}-{self.reopens}", h * w, n)
        return self.ring

    def _run_camera(self, src) -> None:
        stop = threading.Event()
        st = {"error": None, "last_frame": time.monotonic(), "in_read_since": None, "idle": None}

        def alloc(h, w):
            return self._ensure_ring(h, w).alloc(h, w)

        def capture():
            self._capturing = True
            try:
                while not stop.is_set():
                    if self._props_pending:  # set between reads: a capture is not thread-safe
                        props, self._props_pending = self._props_pending, None
                        self._apply_properties(props)
                    st["in_read_since"] = time.monotonic()
                    try:
                        t, _frame = src.read(alloc)
                    except NoFrame as idle:
                        if self.ring is not None:
                            self.ring.abort()
                        if idle.watermark is not None:
                            st["idle"] = idle.watermark - self.latency_s
                        continue
                    finally:
                        st["in_read_since"] = None
                    self.ring.commit(t)
                    st["last_frame"] = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - SourceError or a driver error: reopen
                if self.ring is not None:
                    self.ring.abort()
                st["error"] = exc if isinstance(exc, SourceError) else SourceError(f"{type(exc).__name__}: {exc}")
            finally:
                self._capturing = False
                stop.set()

        th = threading.Thread(target=capture, name=f"capture-{self.name}", daemon=True)
        th.start()
        try:
            while True:
                self.poll_commands()
                self.send_health()
                if stop.is_set() and (self.ring is None or not self.ring.pending()):
                    th.join(1.0)
                    raise st["error"] or SourceError("capture stopped")
                now = time.monotonic()
                if src.free_running and now - st["last_frame"] > self.cfg.stall_s:
                    since = st["in_read_since"]
                    if since is not None and now - since > self.cfg.stall_s + 5:
                        # the driver hangs inside a read: only a new process gets the camera back
                        self.put(CameraDown(self.name, f"no frame for {now - st['last_frame']:.0f} s; driver hung, restarting"))
                        time.sleep(0.2)
                        os._exit(75)
                    stop.set()
                    st["error"] = SourceError(f"no frame for {self.cfg.stall_s:.0f} s")
                    continue
                got = self.ring.take(0.1) if self.ring is not None else None
                if got is None:
                    if self.ring is None:
                        time.sleep(0.05)
                    idle = st["idle"]
                    if idle is not None and self.ring is not None and not self.ring.pending():
                        st["idle"] = None
                        self.put(CameraIdle(self.name, idle))
                    continue
                slot, t_cap, frame = got
                self._note = b""
                try:
                    self._decode_frame(src, t_cap, frame)
                finally:
                    # what was read in it goes with the frame, for the page's last image of the camera
                    self.ring.release(slot, note=self._note)
                self.backoff = BACKOFF_MIN
        finally:
            stop.set()
            th.join(2.0)

    def _decode_frame(self, src, t_cap: float, frame: np.ndarray) -> None:
        t_ring = t_cap
        t_cap -= self.latency_s  # when the camera exposed it, not when it arrived
        if time.monotonic() - t_cap > self.max_age_s:
            self.stale += 1
            return
        t0 = time.perf_counter()
        codes = decode(frame, self.symbologies, engines=self.engines, rules=self.rules)
        ms = (time.perf_counter() - t0) * 1000
        # weak reads go too, flagged: the timing process keeps them on the record and lets them sort
        # only where the camera's config says so (cameras[].weak_reads_sort)
        out = [(c.symbology, c.text, c.polygon, self.offset_of(c.polygon, frame.shape), c.weak) for c in codes]
        self.weak_sent += sum(1 for c in codes if c.weak)
        if out:
            found = [(sym, txt, poly) for sym, txt, poly, _o, _w in out if poly]
            self.found.append((t_ring, found))
            self._note = json.dumps([[s, t[:200], [list(q) for q in poly]] for s, t, poly in found],
                                    ensure_ascii=False).encode()
        # the watermark: every frame captured before it has been decoded and sent. Frames come in
        # capture order, so that is this frame's capture time; only the source can promise more
        # (the simulated cameras' heartbeat, sent on as "idle")
        watermark = t_cap
        self.frames += 1
        self.reads += len(out)
        self.decode_ms.append(ms)
        self.frame_times.append(time.monotonic())
        self.frame_log.append((t_cap, len(out)))
        if not self.parcel_msgs and not src.free_running:  # a triggered camera: a frame per parcel
            self.parcels.append((bool(out), len(out)))
        self.put(FrameReads(self.name, t_cap, round(ms, 2), frame.shape, out, self.dropped, watermark))

    # ------------------------------------------------------------------------------ commands
    def poll_commands(self) -> None:
        if self.cmd_q is None:
            return
        for _ in range(50):
            try:
                cmd = self.cmd_q.get_nowait()
            except (queue.Empty, EOFError, OSError):
                return
            try:
                self.on_command(cmd)
            except Exception as exc:  # noqa: BLE001 - a bad command never stops the camera
                log.warning("command %s failed: %s", type(cmd).__name__, exc)

    def on_command(self, cmd) -> None:
        kind = type(cmd)
        if kind is KeepFrames and self.keeper is not None and self.ring is not None:
            frames = self.ring.frames_between(float(cmd.lo_mono) - 0.05, float(cmd.hi_mono) + 0.05)
            paths = self.keeper.keep(str(cmd.run_id), str(cmd.parcel_id), frames, dict(self.found))
            if paths:
                self.last_image = paths[-1].name
        if kind is SetCameraProperties:
            self.set_properties(dict(cmd.properties))
        if kind is ParcelWindow:
            self.parcel_msgs = True
            n = sum(k for t, k in self.frame_log if cmd.lo_mono <= t <= cmd.hi_mono)
            self.parcels.append((n > 0, n))

    def set_properties(self, props: dict) -> None:
        """Commissioning: apply camera properties, where the source can (OpenCV cameras): by the
        capture thread between two reads when it runs, else now. The answer (asked / set / got per
        property) replaces ``accepted`` and goes out with the health."""
        if self._capturing:
            self._props_pending = {**(self._props_pending or {}), **props}
            return
        self._apply_properties(props)

    def _apply_properties(self, props: dict) -> None:
        src = getattr(self, "src", None)
        apply = getattr(src, "apply_properties", None)
        if apply is None or getattr(src, "cap", None) is None:
            self.accepted = {**self.accepted, **{k: {"asked": v, "set": False, "got": None, "accepted": False,
                                                     "why": f"a {self.kind or 'closed'} source has no settings"}
                                                 for k, v in props.items()}}
        else:
            self.accepted = {**self.accepted, **apply(props)}
        self.send_health(force=True)

    # ------------------------------------------------------------------------------ health
    def health(self) -> dict:
        now = time.monotonic()
        recent = [t for t in self.frame_times if t > now - 10]
        ms = np.asarray(self.decode_ms) if self.decode_ms else None
        n = len(self.parcels)
        read_rate = sum(r for r, _ in self.parcels) / n if n else None
        h = {
            "kind": self.kind, "state": self.state, "source_error": self.error,
            "fps": round(len(recent) / 10, 2), "frames": self.frames, "dropped": self.dropped,
            "dropped_stale": self.stale, "dropped_ring": self.ring.dropped if self.ring else 0,
            "dropped_queue": self.dropped_out, "reopens": self.reopens,
            "decode_ms_p50": None if ms is None else round(float(np.percentile(ms, 50)), 1),
            "decode_ms_p99": None if ms is None else round(float(np.percentile(ms, 99)), 1),
            "reads_per_parcel": round(sum(k for _, k in self.parcels) / n, 2) if n else None,
            "read_rate": None if read_rate is None else round(read_rate, 4), "read_rate_parcels": n,
            "read_rate_floor": self.cfg.read_rate_floor,
            "properties": self.accepted, "engines": self.engines,
            "calibrated": self.calibration is not None, "calibration_error": self.calibration_error,
            "latency_ms": round(self.latency_s * 1000, 1),
            "last_image": self.last_image, "shm": self.ring.name if self.ring else "",
            "noread_lines": self.noread_lines, "rss_mb": _rss_mb(),
            # reads the decoder withheld: no second attempt agreed, or two disagreed. A count that
            # climbs means labels at the edge of what this camera resolves (focus, distance, speed)
            "unconfirmed_reads": _decode_stats["unconfirmed"], "conflicting_reads": _decode_stats["conflicts"],
            "weak_reads": _decode_stats["weak"], "weak_reads_sent": self.weak_sent,
            "noread_frames_skipped": self.keeper.skipped if self.keeper else 0,
        }
        alarm, detail, params = "", "", {}
        if read_rate is not None and n >= min(self.cfg.read_rate_window, 50) and read_rate < self.cfg.read_rate_floor:
            params = {"rate": f"{100 * read_rate:.1f}%", "floor": f"{100 * self.cfg.read_rate_floor:.0f}%", "n": n}
            alarm, detail = f"read rate {params['rate']} < floor {params['floor']} over the last {n} parcels", "read_rate"
        elif self.calibration_error:
            alarm, detail = f"calibration not used: {self.calibration_error}", "calibration"
            params = {"error": self.calibration_error}
        # the page says it in its language from the detail and parameters (the service's alarm)
        h["alarm"], h["alarm_detail"], h["alarm_params"] = alarm, detail, params
        return h

    def send_health(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_health >= self.health_s:
            self.last_health = now
            self.put(CameraHealthReport(self.name, self.health()))


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except (OSError, ValueError, IndexError):
        return None


class NoReadKeeper:
    """No-read frames on disk: ``DIR/<run>_<parcel>_<camera>_<k>.jpg``, at most ``max_mb`` in all
    (oldest deleted first). They usually share a disk with the records, which are worth more: a
    frame is not written when it would leave less than RESERVE free (counted in ``skipped``)."""

    RESERVE_BYTES = 64_000_000
    RESERVE_SHARE = 0.05

    def __init__(self, root: Path, camera: str, max_mb: float = 500, quality: int = 90):
        self.root, self.camera, self.max_bytes, self.quality = root, camera, int(max_mb * 1e6), quality
        self.skipped = 0

    def _room_for(self, n: int) -> bool:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return False
        free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        return free - n >= max(self.RESERVE_BYTES, self.RESERVE_SHARE * size)

    def keep(self, run_id: str, parcel_id: str, frames: list[tuple[float, np.ndarray]],
             found: dict[float, list] | None = None) -> list[Path]:
        """Write the frames; those in `found` (capture time -> [(symbology, text, polygon)]) with what
        was read in them outlined, so that whoever keys the parcel sees which label was read."""
        if not frames:
            return []
        self.root.mkdir(parents=True, exist_ok=True)
        safe = lambda s: "".join(c if c.isalnum() or c in "-" else "-" for c in s)[:40]  # noqa: E731
        out = []
        for k, (_t, img) in enumerate(frames):
            p = self.root / f"{safe(run_id)}_{safe(parcel_id)}_{safe(self.camera)}_{k}.jpg"
            codes = (found or {}).get(_t)
            if codes:
                img = outline(img, codes)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                continue
            if not self._room_for(len(buf)):
                self.skipped += 1  # the records need the disk more
                continue
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, p)
            out.append(p)
        self.prune()
        return out

    def prune(self) -> None:
        files = []
        for p in self.root.glob("*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(s for _, s, _ in files)
        for _, size, p in sorted(files, key=lambda x: x[0]):
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
                total -= size
            except OSError:
                pass
