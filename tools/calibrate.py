"""The technician's camera-calibration tool: pixel -> belt millimetres for one camera.

    # print a target (a chessboard; 9x6 inner corners, 25 mm squares at 300 dpi)
    sorter calibrate target board.png --chessboard 9x6 --square-mm 25
    # lay it flat on the belt under the camera, then (from a saved frame or straight from the camera):
    sorter calibrate chessboard top --config line.yaml --image frame.png --chessboard 9x6 --square-mm 25 --downstream right
    sorter calibrate chessboard top --config line.yaml --grab --chessboard 9x6 --square-mm 25
    # or two marks along the belt a known distance apart (camera looking straight down):
    sorter calibrate points top --config line.yaml --point 212,380=0 --point 861,371=500 --frame-size 1024x768
    # check: where a pixel lies on the belt
    sorter calibrate check top --config line.yaml --pixel 512,384 --pixel 900,380

(or ``python -m sorter.tools.calibrate …``). The calibration is written atomically to ``calibration/CAMERA.json``
next to the config (or ``cameras[].calibration``), the previous one kept as a dated ``.bak``; the
camera workers load it when they start (restart the service, or the camera, to apply it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from sorter.vision.geometry import (Calibration, CalibrationError, chessboard_image, from_chessboard, from_two_points)
from sorter.controller.config.load import example_config


def _pair(text: str, sep: str = ",", typ=float) -> tuple:
    try:
        a, b = text.lower().split(sep)
        return typ(a), typ(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected A{sep}B") from None


def _point(text: str) -> tuple[tuple[float, float], float]:
    try:
        px, mm = text.split("=")
        return _pair(px), float(mm)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected X,Y=MM (pixel = belt position in mm)") from None


def _camera(args):
    from sorter.controller.config.load import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"{exc}")
    for cam in cfg.cameras:
        if cam.name == args.camera:
            # paths relative to the config file (idempotent if the loader already did it)
            return cfg, cam.resolved(Path(args.config).resolve().parent)
    raise SystemExit(f"{args.config}: no camera {args.camera!r} (cameras: {', '.join(c.name for c in cfg.cameras) or 'none'})")


def output_path(args, cam) -> Path:
    if getattr(args, "output", None):
        return Path(args.output)
    if cam.calibration is not None:
        p = Path(cam.calibration)
        return p if p.is_absolute() else Path(args.config).resolve().parent / p
    return Path(args.config).resolve().parent / "calibration" / f"{cam.name}.json"


def grab_frame(cam, tries: int = 30):
    from sorter.vision.sources import NoFrame, SourceError, open_source

    src = open_source(cam.source, cam.properties.model_dump(exclude_none=True))
    if src.kind in ("serial", "reader"):
        raise SystemExit(f"camera {cam.name} is a code reader: it has no image to calibrate")
    try:
        src.open()
        for _ in range(tries):
            try:
                return src.read()[1].copy()
            except NoFrame:
                continue
    except SourceError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}")
    finally:
        src.close()
    raise SystemExit(f"camera {cam.name}: no frame")


def _load_image(args, cam):
    if args.grab:
        return grab_frame(cam)
    img = cv2.imread(args.image, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SystemExit(f"cannot read image {args.image!r}")
    return img


def _save(cal: Calibration, args, cam) -> int:
    out = output_path(args, cam)
    backup = cal.save(out)
    print(f"camera {cam.name}: {cal.method} calibration written to {out}")
    if backup:
        print(f"  previous calibration kept as {backup}")
    print(f"  {cal.meta.get('mm_per_px', '?')} mm/px, frame {cal.frame_size[0]}x{cal.frame_size[1]}, "
          f"downstream = image ({cal.along[0]:+.3f}, {cal.along[1]:+.3f}) in the target plane"
          + (f", corner residual {cal.residual_mm} mm" if cal.residual_mm is not None else ""))
    w, h = cal.frame_size
    left, right = cal.offset_mm([(0, h / 2)]), cal.offset_mm([(w - 1, h / 2)])
    print(f"  view along the belt: {min(left, right):+.0f} .. {max(left, right):+.0f} mm from the camera's centre line")
    return 0


def cmd_target(args) -> int:
    cols, rows = args.chessboard
    square_px = max(8, int(round(args.square_mm / 25.4 * args.dpi)))
    img = chessboard_image((cols, rows), square_px)
    if not cv2.imwrite(args.file, img):
        raise SystemExit(f"cannot write {args.file!r}")
    print(f"{args.file}: {cols}x{rows} inner corners, {args.square_mm} mm squares at {args.dpi} dpi "
          f"(print at 100 %, check one square with a ruler)")
    return 0


def cmd_chessboard(args) -> int:
    _, cam = _camera(args)
    img = _load_image(args, cam)
    try:
        cal = from_chessboard(img, args.chessboard, args.square_mm, args.downstream, camera=cam.name)
    except CalibrationError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}")
    return _save(cal, args, cam)


def cmd_points(args) -> int:
    _, cam = _camera(args)
    if len(args.point) != 2:
        raise SystemExit("give exactly two --point X,Y=MM")
    if args.frame_size is None:
        img = _load_image(args, cam) if (args.image or args.grab) else None
        if img is None:
            raise SystemExit("give --frame-size WxH, --image or --grab")
        size = (img.shape[1], img.shape[0])
    else:
        size = args.frame_size
    (p1, mm1), (p2, mm2) = args.point
    try:
        cal = from_two_points(p1, mm1, p2, mm2, size, camera=cam.name)
    except CalibrationError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}")
    return _save(cal, args, cam)


def cmd_check(args) -> int:
    _, cam = _camera(args)
    path = output_path(args, cam)
    try:
        cal = Calibration.load(path)
    except CalibrationError as exc:
        raise SystemExit(str(exc))
    print(f"{path}: {cal.method}, made {cal.created}, frame {cal.frame_size[0]}x{cal.frame_size[1]}")
    for px in args.pixel or [(cal.frame_size[0] / 2, cal.frame_size[1] / 2)]:
        off = cal.offset_mm([px])
        print(f"  pixel ({px[0]:.0f},{px[1]:.0f}): {off:+.1f} mm along the belt = belt position "
              f"{cam.position_mm + off:.0f} mm")
    return 0


def cmd_latency(args) -> int:
    """How late the camera's frames arrive, from a running line: the timing process notes where each
    read puts its parcel's centre against the camera's centre line; frames that arrive later than
    the camera's `latency_ms` says show parcels that seem to have gone on by belt speed x the rest."""
    import json
    import urllib.request

    _, cam = _camera(args)
    try:
        with urllib.request.urlopen(args.url.rstrip("/") + "/api/status", timeout=5) as r:
            status = json.loads(r.read())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{args.url}: no status from the running line ({exc}); is `sorter run` up?")
    got = ((status.get("line") or {}).get("read_offsets") or {}).get(cam.name)
    if not got:
        raise SystemExit(f"camera {cam.name}: fewer than 5 reads matched to parcels yet; run parcels past it first")
    now = cam.latency_ms
    print(f"camera {cam.name}: {got['n']} reads; their parcels' centres {got['median_mm']:+.1f} mm from the "
          f"camera's centre line (median)")
    print(f"  latency_ms now {now:.0f}; the reads suggest {now + got['latency_ms']:.0f} "
          f"({got['latency_ms']:+.0f} ms). Labels far off their parcels' centres blur this: use a test parcel "
          "with its label in the middle")
    return 0


def add_arguments(p: argparse.ArgumentParser, with_config=None) -> None:
    sub = p.add_subparsers(dest="calib_cmd", required=True)

    def common(sp):
        if with_config is not None:
            with_config(sp)
        else:
            sp.add_argument("--config", default=str(example_config()))
        sp.add_argument("camera", help="camera name in the config")
        sp.add_argument("--output", help="write here instead of calibration/CAMERA.json next to the config")
        return sp

    sp = sub.add_parser("target", help="write a printable chessboard target")
    sp.add_argument("file")
    sp.add_argument("--chessboard", type=lambda t: _pair(t, "x", int), default=(9, 6), help="inner corners COLSxROWS")
    sp.add_argument("--square-mm", type=float, default=25.0)
    sp.add_argument("--dpi", type=int, default=300)
    sp.set_defaults(calib_fn=cmd_target)

    sp = common(sub.add_parser("chessboard", help="calibrate from a chessboard target lying on the belt"))
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="a frame from the camera showing the target")
    src.add_argument("--grab", action="store_true", help="take a frame from the camera's source now")
    sp.add_argument("--chessboard", type=lambda t: _pair(t, "x", int), default=(9, 6), help="inner corners COLSxROWS")
    sp.add_argument("--square-mm", type=float, required=True)
    sp.add_argument("--downstream", choices=["right", "left", "down", "up"], default="right",
                    help="the image direction the belt moves")
    sp.set_defaults(calib_fn=cmd_chessboard)

    sp = common(sub.add_parser("points", help="calibrate from two pixels at known belt positions"))
    sp.add_argument("--point", type=_point, action="append", required=True, help="X,Y=MM (twice)")
    sp.add_argument("--frame-size", type=lambda t: _pair(t, "x", int), help="WxH of the camera's frames")
    sp.add_argument("--image")
    sp.add_argument("--grab", action="store_true")
    sp.set_defaults(calib_fn=cmd_points)

    sp = common(sub.add_parser("latency", help="how late the camera's frames arrive, from a running line"))
    sp.add_argument("--url", default="http://127.0.0.1:8080", help="the running line's API")
    sp.set_defaults(calib_fn=cmd_latency)

    sp = common(sub.add_parser("check", help="show where pixels lie on the belt"))
    sp.add_argument("--pixel", type=_pair, action="append", help="X,Y (repeatable)")
    sp.set_defaults(calib_fn=cmd_check)


def run(args) -> int:
    return args.calib_fn(args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="calibrate", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
