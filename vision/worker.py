"""One camera worker process: frames from its source, barcodes decoded, reads sent on.

Runs at a lower priority than the timing process. Results go to the service over a bounded queue
with a non-blocking put: when the service falls behind, results are dropped and counted, never
queued without bound and never allowed to stall the camera.
"""

from __future__ import annotations

import logging
import os
import queue
import time

import cv2

from vision.decode import decode
from vision.sources import NoFrame, SourceError, open_source

log = logging.getLogger("sorter.camera")


def camera_main(name: str, source: str, symbologies: list[str], nice: int, out_q,
                max_age_s: float = 0.8, cmd_q=None) -> None:
    """`cmd_q` brings requests from the service, e.g. ("keep", run_id, parcel_id, mono_lo, mono_hi)
    to keep the frames of a no-read parcel."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s camera {name} %(levelname)s %(message)s")
    try:
        os.nice(nice)
    except OSError:
        pass
    # one worker per camera already uses the cores; OpenCV's own threads would only fight them
    cv2.setNumThreads(1)
    dropped, backoff = 0, 0.5
    while True:
        src = open_source(source)
        try:
            src.open()
            backoff = 0.5
            _put(out_q, ("camera_up", name, source))
            while True:
                try:
                    t_cap, frame = src.read()
                except NoFrame:
                    # idle and caught up: everything captured until now has been decoded
                    _put(out_q, ("idle", name, time.monotonic()))
                    continue
                if time.monotonic() - t_cap > max_age_s:
                    dropped += 1
                    continue
                t0 = time.perf_counter()
                codes = decode(frame, symbologies)
                ms = (time.perf_counter() - t0) * 1000
                # the watermark: every frame captured before it has been decoded and sent
                watermark = t_cap if src.pending() else time.monotonic()
                msg = ("frame", name, t_cap, round(ms, 2), frame.shape,
                       [(c.symbology, c.text, c.polygon) for c in codes], dropped, watermark)
                if not _put(out_q, msg):
                    dropped += 1
        except SourceError as exc:
            _put(out_q, ("camera_down", name, str(exc)))
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
        finally:
            src.close()


def _put(q, msg) -> bool:
    try:
        q.put_nowait(msg)
        return True
    except queue.Full:
        return False
