"""`sorter` subcommands for the vision area (registered by controller/cli/main.py).

    sorter camera test NAME [--frames N] [--save DIR] [--json]   open a camera as the worker would,
        set its properties, print what it accepted, decode N frames, print fps / decode ms / reads
    sorter calibrate card|from-card|chessboard|points|check|target|report|latency|timing …
                                                                 tools/calibrate.py (commissioning)
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def cmd_camera_test(args) -> int:
    import cv2
    import numpy as np

    from sorter.tools.calibrate import _camera
    from sorter.vision.decode import decode
    from sorter.controller.cli.decode import _safe
    from sorter.vision.geometry import Calibration, CalibrationError
    from sorter.vision.sources import NoFrame, Reads, SourceError, open_source

    cfg, cam = _camera(args)
    cv2.setNumThreads(1)
    cal = None
    if cam.calibration is not None:
        try:
            cal = Calibration.load(cam.calibration)
        except CalibrationError as exc:
            print(f"calibration: {exc}", file=sys.stderr)
    src = open_source(cam.source, cam.properties.model_dump(exclude_none=True), cam.reader_symbology)
    report: dict = {"camera": cam.name, "source": cam.source, "kind": src.kind, "calibrated": cal is not None}
    try:
        src.open()
    except SourceError as exc:
        report["error"] = str(exc)
        print(json.dumps(report, ensure_ascii=False) if args.json else f"camera {cam.name}: {_safe(str(exc))}")
        return 1
    report["properties"] = src.accepted
    ms, reads, frames, t0 = [], [], 0, time.monotonic()
    try:
        end = t0 + args.timeout
        while frames < args.frames and time.monotonic() < end:
            try:
                t, item = src.read()
            except NoFrame:
                continue
            except SourceError as exc:
                report["error"] = str(exc)
                break
            frames += 1
            if isinstance(item, Reads):
                reads += [{"symbology": s, "text": x} for s, x in item.codes]
                continue
            t1 = time.perf_counter()
            codes = decode(item, cam.symbologies, engines=cam.engines)
            ms.append((time.perf_counter() - t1) * 1000)
            for c in codes:
                r = {"symbology": c.symbology, "text": c.text, "polygon": [list(p) for p in c.polygon]}
                if cal is not None:
                    r["offset_mm"] = round(cal.offset_mm(c.polygon, item.shape), 1)
                reads.append(r)
            if args.save:
                from pathlib import Path
                Path(args.save).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(Path(args.save) / f"{cam.name}-{frames:04d}.png"), item)
    finally:
        src.close()
    wall = time.monotonic() - t0
    report.update({"frames": frames, "fps": round(frames / wall, 2) if wall > 0 else None, "reads": reads,
                   "decode_ms_p50": round(float(np.percentile(ms, 50)), 1) if ms else None,
                   "decode_ms_max": round(max(ms), 1) if ms else None})
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"camera {cam.name} ({src.kind}, {cam.source})")
        for k, v in (report.get("properties") or {}).items():
            print(f"  {k:14} {v}")
        print(f"  {frames} frames in {wall:.1f} s, decode p50 {report['decode_ms_p50']} ms, "
              f"max {report['decode_ms_max']} ms")
        for r in reads:
            off = f" at {r['offset_mm']:+.0f} mm" if "offset_mm" in r else ""
            print(f"  {r['symbology']:10} {_safe(r['text'])}{off}")
        if "error" in report:
            print(f"  error: {_safe(report['error'])}")
    return 0 if frames else 1


def cmd_calibrate(args) -> int:
    from sorter.tools.calibrate import run

    return run(args)


def register(sub: argparse._SubParsersAction, with_config) -> None:
    """Add this area's subcommands; `with_config(parser)` adds the common --config option."""
    cam = sub.add_parser("camera", help="camera commands (test a camera as the worker sees it)")
    csub = cam.add_subparsers(dest="camera_cmd", required=True)
    sp = with_config(csub.add_parser("test", help="open a camera, set its properties, decode a few frames"))
    sp.add_argument("camera", help="camera name in the config")
    sp.add_argument("--frames", type=int, default=10)
    sp.add_argument("--timeout", type=float, default=15.0, help="give up after this many seconds")
    sp.add_argument("--save", help="also write the frames into this folder")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_camera_test)

    from sorter.tools.calibrate import add_arguments

    cal = sub.add_parser("calibrate", help="commission a camera (pixel -> belt mm, test card, report, latency) "
                                           "and the diverters' timing (tools/calibrate.py)")
    add_arguments(cal, with_config)
    cal.set_defaults(fn=cmd_calibrate)
