"""Cameras that deliver frames: through OpenCV (a USB camera by index, an RTSP/HTTP stream, a video
file paced like a live camera) and a folder of images replayed in name order.

The OpenCV camera reports, per property asked (size, fps, exposure, focus ...), whether the driver
took it and what it reports now: drivers ignore settings silently, and the technician has to see
which ones held.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from sorter.controller.config.sources import source_kind, split_spec
from sorter.vision.sources.base import Alloc, SourceError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".webp"}


class FolderSource:
    """Every image in a folder, in name order (``loop=1``: again and again); ``fps`` paces it."""

    kind, free_running = "folder", False

    def __init__(self, path: str, fps: float = 10.0, loop: bool = False):
        self.path, self.period, self.loop = Path(path), 1.0 / fps, loop
        self.files: list[Path] = []
        self.queue: list[Path] = []
        self.accepted: dict = {}
        self.next_t = 0.0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: not a folder")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{self.path}: no images")
        self.queue = list(self.files)
        self.next_t = time.monotonic()

    def read(self, alloc: Alloc = None) -> tuple[float, np.ndarray]:
        while True:
            if not self.queue:
                if not self.loop:
                    raise SourceError(f"{self.path}: no more images")
                self.queue = list(self.files)
            f = self.queue.pop(0)
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            wait = self.next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)
            t = time.monotonic()
            if alloc is not None:
                out = alloc(*img.shape)
                out[...] = img
                img = out
            return t, img

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        self.queue = []


# OpenCV property ids by our names; what a camera accepted is read back after setting
_PROPS = {
    "width": cv2.CAP_PROP_FRAME_WIDTH,
    "height": cv2.CAP_PROP_FRAME_HEIGHT,
    "fps": cv2.CAP_PROP_FPS,
    "exposure": cv2.CAP_PROP_EXPOSURE,
    "auto_exposure": cv2.CAP_PROP_AUTO_EXPOSURE,
    "gain": cv2.CAP_PROP_GAIN,
    "focus": cv2.CAP_PROP_FOCUS,
    "autofocus": cv2.CAP_PROP_AUTOFOCUS,
    "fourcc": cv2.CAP_PROP_FOURCC,
    "buffer_size": cv2.CAP_PROP_BUFFERSIZE,
}


def _fourcc_text(v: float) -> str:
    n = int(v)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4)) if n > 0 else ""


class OpenCVSource:
    """A USB camera (device index), an RTSP/HTTP stream, or a video file, through OpenCV.

    A video file is paced at its own fps (or ``?fps=``) so that it stands in for a live camera;
    ``?loop=1`` replays it endlessly."""

    def __init__(self, spec: str, properties: dict | None = None):
        self.spec = spec
        self.kind = source_kind(spec)
        base, self.opts = split_spec(spec)
        if self.kind == "usb":
            self.target: int | str = int(base.removeprefix("usb:"))
        elif self.kind == "video":
            self.target = base.removeprefix("file:")
        else:
            self.target = spec  # streams keep their query string
        self.free_running = self.kind in ("usb", "stream")
        self.properties = {k: v for k, v in (properties or {}).items() if v is not None}
        self.loop = self.opts.get("loop", "0") not in ("0", "false", "no", "")
        self.cap: cv2.VideoCapture | None = None
        self.accepted: dict = {}
        self.period = 0.0
        self.next_t = 0.0
        self._bgr: np.ndarray | None = None

    def open(self) -> None:
        if self.kind == "video" and not Path(self.target).is_file():
            raise SourceError(f"video file {self.target!r} does not exist")
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera source {self.spec!r}")
        self.cap = cap
        self.accepted = self.apply_properties(self.properties)
        if self.kind == "video":
            fps = float(self.opts.get("fps") or cap.get(cv2.CAP_PROP_FPS) or 10.0)
            self.period = 1.0 / max(0.1, min(fps, 1000.0))
        self.next_t = time.monotonic()

    def apply_properties(self, props: dict) -> dict:
        """Set what was asked (in an order that works for most drivers: format, size, fps, then
        the exposure/focus controls) and report, per property, what was asked, whether the driver
        took it and what it reports now."""
        out: dict = {}
        order = ["fourcc", "width", "height", "fps", "buffer_size", "auto_exposure", "exposure", "gain",
                 "autofocus", "focus"]
        for key in order:
            if key not in props:
                continue
            asked = props[key]
            pid = _PROPS[key]
            if key == "fourcc":
                value = cv2.VideoWriter_fourcc(*str(asked))
            elif key == "auto_exposure":
                value = 0.75 if asked else 0.25  # V4L2 convention in OpenCV
            elif isinstance(asked, bool):
                value = 1.0 if asked else 0.0
            else:
                value = float(asked)
            try:
                ok = bool(self.cap.set(pid, value))
            except cv2.error:
                ok = False
            got = self.cap.get(pid)
            got_v = _fourcc_text(got) if key == "fourcc" else (round(got, 3) if got != -1 else None)
            out[key] = {"asked": asked, "set": ok, "got": got_v,
                        "accepted": bool(ok and (got_v == asked or key in ("auto_exposure", "autofocus")
                                                 or (isinstance(got_v, float) and isinstance(asked, (int, float))
                                                     and abs(got_v - float(asked)) <= max(0.01, 0.02 * abs(float(asked))))))}
        # what the camera delivers, asked for or not
        out["_actual"] = {"width": int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          "height": int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                          "fps": round(float(self.cap.get(cv2.CAP_PROP_FPS)), 2),
                          "backend": self.cap.getBackendName() if hasattr(self.cap, "getBackendName") else ""}
        return out

    def read(self, alloc: Alloc = None) -> tuple[float, np.ndarray]:
        if self.period:
            wait = self.next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.next_t = max(self.next_t + self.period, time.monotonic() - self.period)
        ok, frame = self.cap.read(self._bgr)
        t = time.monotonic()
        if (not ok or frame is None) and self.kind == "video" and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read(self._bgr)
        if not ok or frame is None:
            raise SourceError(f"{self.spec}: {'end of video' if self.kind == 'video' else 'no frame'}")
        self._bgr = frame  # decoded into the same buffer next time
        h, w = frame.shape[:2]
        out = alloc(h, w) if alloc is not None else np.empty((h, w), np.uint8)
        if frame.ndim == 3:
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=out)
        else:
            out[...] = frame
        return t, out

    def pending(self) -> bool:
        return False

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
