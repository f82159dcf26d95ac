"""The technician's camera-commissioning tool: pixel -> belt millimetres, image quality, latency,
diverter timing.

    # print a target: the test card (A4 PDF + PNG), or a plain chessboard (9x6 inner corners, 20 mm)
    sorter calibrate card --output card/
    sorter calibrate target board.png --chessboard 9x6 --square-mm 20
    # lay it flat on the belt under the camera, then (from a saved frame or straight from the camera):
    sorter calibrate from-card top --config line.yaml --image frame.png --downstream right
    sorter calibrate chessboard top --config line.yaml --image frame.png --chessboard 9x6 --square-mm 20
    sorter calibrate chessboard top --config line.yaml --grab --chessboard 9x6 --square-mm 20
    # or two marks along the belt a known distance apart (camera looking straight down):
    sorter calibrate points top --config line.yaml --point 212,380=0 --point 861,371=500 --frame-size 1024x768
    # check: where a pixel lies on the belt; with --image/--grab, whether the target still agrees
    sorter calibrate check top --config line.yaml --pixel 512,384 --pixel 900,380
    # N frames -> report.json, annotated PNGs, report.html
    sorter calibrate report top --config line.yaml --images frames/ --output report/
    # frame latency; diverter timing (from a running line)
    sorter calibrate latency top --url http://127.0.0.1:8080
    sorter calibrate timing --url http://127.0.0.1:8080 [--accept]

(or ``python -m sorter.tools.calibrate …``). A calibration is written atomically to ``calibration/CAMERA.json``
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
    from sorter.controller.config.load import load_config
    from sorter.controller.config.vision import data_dir
    return data_dir(load_config(args.config)) / "calibration" / f"{cam.name}.json"  # data, not config: data_dir


def open_camera(cam):
    """The camera's source, opened; a one-line SystemExit naming the cause when it cannot be."""
    from sorter.vision.sources import SourceError, open_source

    try:
        src = open_source(cam.source, cam.properties.model_dump(exclude_none=True))
    except (SourceError, ValueError) as exc:
        hint = (": use --image FRAME.png (e.g. a frame saved by `sorter camera test NAME --save DIR` on the line), "
                "or point the camera's source at the real camera") if cam.source.startswith("sim://") else ""
        raise SystemExit(f"camera {cam.name}: {exc}{hint}") from None
    if src.kind in ("serial", "reader"):
        raise SystemExit(f"camera {cam.name} is a code reader: it has no image to calibrate")
    try:
        src.open()
    except SourceError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}") from None
    return src


def grab_frame(cam, tries: int = 30):
    from sorter.vision.sources import NoFrame, SourceError

    src = open_camera(cam)
    try:
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
    if getattr(args, "grab", False):
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


A4_PRINTABLE_MM = (200.0, 287.0)  # A4 less a printer's 5 mm unprintable margin


def cmd_target(args) -> int:
    cols, rows = args.chessboard
    square_px = max(8, int(round(args.square_mm / 25.4 * args.dpi)))
    img = chessboard_image((cols, rows), square_px)
    # the board plus its one-square white margin, in mm; it must fit A4 one way or the other
    w_mm, h_mm = (cols + 3) * args.square_mm, (rows + 3) * args.square_mm
    (small, large), (a4_small, a4_large) = sorted((w_mm, h_mm)), sorted(A4_PRINTABLE_MM)
    fits = small <= a4_small and large <= a4_large
    if not fits and not args.force:
        most = min(A4_PRINTABLE_MM[1] / (max(cols, rows) + 3), A4_PRINTABLE_MM[0] / (min(cols, rows) + 3))
        raise SystemExit(f"{cols}x{rows} inner corners of {args.square_mm:g} mm squares make {w_mm:.0f} x {h_mm:.0f} mm: "
                         f"larger than A4 at 100 %; use --square-mm {int(most)} or less (or --force for a larger sheet)")
    if not cv2.imwrite(args.file, img):
        raise SystemExit(f"cannot write {args.file!r}")
    orient = "landscape" if w_mm > h_mm else "portrait"
    print(f"{args.file}: {cols}x{rows} inner corners, {args.square_mm} mm squares at {args.dpi} dpi, "
          f"{w_mm:.0f} x {h_mm:.0f} mm with its margin (A4 {orient}; print at 100 %, check one square with a ruler)")
    return 0


def cmd_card(args) -> int:
    from sorter.vision.commission.card import A4_MM, LAYOUT, write_card

    files = write_card(args.output)
    print(f"test card written: {files['pdf']} (print this at 100 %, A4 {A4_MM[0]:.0f} x {A4_MM[1]:.0f} mm), "
          f"{files['png']} (300 dpi), {files['json']} (its layout)")
    for c in LAYOUT:
        print(f"  {c.symbology:10} {c.module_mm:.3f} mm/module  {c.text}")
    print("  check the printed ruler: it must measure 150 mm")
    return 0


def cmd_from_card(args) -> int:
    """One image of the test card on the belt: mm/px, belt mapping, px/module, reads; saved."""
    import json

    from sorter.vision.commission.card import CardError, analyse_card

    _, cam = _camera(args)
    img = _load_image(args, cam)
    try:
        got = analyse_card(img, args.downstream, camera=cam.name)
    except CardError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}") from None
    cal = got.pop("calibration")
    if args.json:
        print(json.dumps({k: v for k, v in got.items() if k != "H_card_mm"}, ensure_ascii=False))
    else:
        from sorter.controller.cli.decode import _safe
        fov = got["field_of_view_mm"]
        print(f"camera {cam.name}: test card found, {got['mm_per_px']} mm/px at the centre, "
              f"view {fov['width']:.0f} x {fov['height']:.0f} mm, corner residual {got['corner_residual_mm']} mm")
        for r in got["reads"]:
            if r["on_card"]:
                print(f"  read {r['key']:14} {r['ppm']} px/module (printed {r['module_mm']} mm: expected "
                      f"{r['ppm_expected']})")
            else:
                print(f"  read {r['symbology']} {_safe(r['text'])} (not one of the card's codes)")
        for k in got["missing"]:
            print(f"  NOT READ {k}")
    if args.dry_run:
        return 0 if not got["missing"] else 1
    return _save(cal, args, cam)


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
    if args.image or args.grab:
        return _check_against_frame(args, cam, cal)
    return 0


def _check_against_frame(args, cam, cal: Calibration) -> int:
    """Does the saved calibration still agree with the target in a new frame (has the camera moved)?
    The target is calibrated afresh and the two compared over the frame: the largest difference
    along the belt, in mm."""
    import numpy as np

    img = _load_image(args, cam)
    try:
        if args.chessboard is None:
            from sorter.vision.commission.card import CardError, analyse_card
            try:
                now = analyse_card(img, "right", camera=cam.name)["calibration"]
            except CardError as exc:
                raise CalibrationError(f"{exc}; for a plain chessboard give --chessboard and --square-mm") from None
        else:
            now = from_chessboard(img, args.chessboard, args.square_mm, "right", camera=cam.name)
    except CalibrationError as exc:
        raise SystemExit(f"camera {cam.name}: {exc}") from None
    h, w = img.shape[:2]
    grid = [(x, y) for x in np.linspace(0, w - 1, 9) for y in np.linspace(0, h - 1, 7)]
    # compare lengths along the belt (the new target may lie anywhere): offsets between grid points
    old_off = np.array([cal.offset_mm([p], (h, w)) for p in grid])
    new_off = np.array([now.offset_mm([p], (h, w)) for p in grid])
    sgn = 1.0 if np.dot(old_off - old_off.mean(), new_off - new_off.mean()) >= 0 else -1.0
    diff = float(np.abs((old_off - old_off.mean()) - sgn * (new_off - new_off.mean())).max())
    verdict = "still holds" if diff <= args.tolerance_mm else "does NOT hold (camera moved or refocused?)"
    print(f"  against the target in this frame: the saved calibration {verdict}: lengths along the belt "
          f"differ by up to {diff:.1f} mm over the frame (tolerance {args.tolerance_mm:g} mm)")
    return 0 if diff <= args.tolerance_mm else 1


def cmd_latency(args) -> int:
    """How late the camera's frames arrive, from a running line: the timing process notes where each
    read puts its parcel's centre against the camera's centre line; frames that arrive later than
    the camera's `latency_ms` says show parcels that seem to have gone on by belt speed x the rest."""
    import json
    import urllib.request

    cfg, cam = _camera(args)
    if args.induct:
        return _latency_from_induct(args, cfg, cam)
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


def _frames(args, cam):
    """(capture_mono, grey frame) from --images DIR, --video FILE or the camera, --frames of them."""
    import time as _time

    from sorter.vision.sources import NoFrame, SourceError, open_source

    if args.images or args.video:
        spec = args.images or args.video
        try:
            src = open_source(spec if args.images else f"file:{spec}?fps=1000", {})
            src.open()
        except (SourceError, ValueError) as exc:
            raise SystemExit(f"{spec}: {exc}") from None
        if args.images:
            src.period = 0.0  # a folder is read as fast as it decodes, not paced like a camera
    else:
        src = open_camera(cam)
    n, end = 0, _time.monotonic() + args.timeout
    try:
        while n < args.frames and _time.monotonic() < end:
            try:
                t, img = src.read()
            except NoFrame:
                continue
            except SourceError:
                break  # the folder or video ended
            n += 1
            yield t, img.copy()
    finally:
        src.close()


def cmd_report(args) -> int:
    from sorter.vision.commission.report import ReportInput, build_report

    cfg, cam = _camera(args)
    cal, note = None, "not calibrated"
    if cam.calibration is not None:
        try:
            cal = Calibration.load(cam.calibration)
            note = str(cam.calibration)
        except CalibrationError as exc:
            note = f"calibration not used: {exc}"
    lat, lat_src = cam.latency_ms, "cameras[].latency_ms"
    if "latency_ms" not in cam.model_fields_set and cal is not None and cal.meta.get("latency_ms") is not None:
        lat, lat_src = float(cal.meta["latency_ms"]), "measured (calibration file)"
    inp = ReportInput(cam.name, cfg.line.belt_speed_mps, args.module_mm, args.exposure_ms, lat, lat_src, cal,
                      list(cam.symbologies), list(cam.engines),
                      args.images or args.video or cam.source, {"calibration": note})
    try:
        rep = build_report(_frames(args, cam), inp, args.output, keep_png=args.keep)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    from sorter.controller.cli.decode import _safe
    print(f"camera {cam.name}: {rep['frames']} frames -> {args.output}/report.html, report.json")
    for c in rep["codes"]:
        print(f"  {c['symbology']:10} {_safe(c['text'])[:40]:40} read in {100 * c['read_share']:5.1f} % "
              f"of frames, {c['ppm_median']} px/module")
    print(f"  focus median {rep['focus']['median']} (best {rep['focus']['best']}); "
          f"max exposure {rep['exposure']['max_exposure_ms']} ms at {cfg.line.belt_speed_mps} m/s")
    for a in rep["exposure"]["advice"]:
        print(f"  - {a}")
    return 0


def cmd_timing(args) -> int:
    """Diverter placement from the chutes' confirm eyes on a running line (controller/cli/calibrate_timing.py)."""
    import json
    import urllib.request

    from sorter.controller.cli.calibrate_timing import TimingError, propose, write_positions
    from sorter.controller.config.load import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    try:
        with urllib.request.urlopen(args.url.rstrip("/") + "/api/status", timeout=5) as r:
            status = json.loads(r.read())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{args.url}: no status from the running line ({exc}); is `sorter run` up?") from None
    line = status.get("line") or {}
    offsets = line.get("confirm_offsets") or {}
    speed = line.get("belt_speed_mps") or cfg.line.belt_speed_mps
    try:
        ref, props = propose(offsets, cfg.line.diverters, float(speed), args.slide_ms, args.tolerance_mm)
    except TimingError as exc:
        raise SystemExit(f"{args.url}: {exc}") from None
    changes = {p.diverter: p.proposed_mm for p in props if p.proposed_mm is not None}
    if args.json:
        print(json.dumps({"reference_ms": round(ref, 2), "belt_speed_mps": speed,
                          "diverters": [p.to_json() for p in props]}))
    else:
        print(f"reference: head at the diverter -> confirm eye {ref:.1f} ms ({'given' if args.slide_ms else 'median of the diverters'}), "
              f"belt {speed} m/s")
        for p in props:
            what = (f"move position_mm {p.position_mm:.0f} -> {p.proposed_mm:.0f}" if p.proposed_mm is not None
                    else p.note)
            print(f"  {p.diverter:6} {p.n:4} confirms, median {p.median_ms:7.1f} ms, error {p.error_mm:+6.1f} mm: {what}")
    if not changes:
        return 0
    if not args.accept:
        if not args.json:
            print("not written: run again with --accept to write these positions into the line file")
        return 0
    try:
        backup = write_positions(Path(args.config), changes)
    except TimingError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{args.config}: {', '.join(f'{k} position_mm {v:.0f}' for k, v in changes.items())} written"
          + (f"; previous file kept as backup {backup}" if backup else "") + "; restart the line to apply")
    return 0


def _latency_from_induct(args, cfg, cam) -> int:
    """Frame latency from parcels passing the induct eye and then the camera (line stopped for
    production: run plain parcels through, one at a time): the induct eye is polled over the
    line's I/O while the camera's frames are taken; see vision/commission/latency.py."""
    import asyncio
    import selectors
    import threading
    import time as _time

    from sorter.plc.line_io import DeviceRefused, LinkDown, open_line_io
    from sorter.vision.commission.latency import LatencyMeter, save_latency
    from sorter.vision.sources import NoFrame, SourceError

    if cam.calibration is None:
        raise SystemExit(f"camera {cam.name}: calibrate it first (the leading edge's pixel -> belt mm)")
    cal = Calibration.load(cam.calibration)
    meter = LatencyMeter(cal, cam.position_mm, cfg.line.induct.position_mm, cfg.line.belt_speed_mps * 1000)
    lock, stop = threading.Lock(), threading.Event()
    src = open_camera(cam)

    def frames():
        try:
            while not stop.is_set():
                try:
                    t, img = src.read()
                except NoFrame:
                    continue
                with lock:
                    meter.frame(t, img)
        except SourceError as exc:
            print(f"camera {cam.name}: {exc}", file=sys.stderr)
        finally:
            stop.set()

    async def edges() -> None:
        io = open_line_io(cfg, args.plc or cfg.plc.url)
        if not await io.connect():
            raise SystemExit(f"cannot connect to the line's I/O at {io.url}")
        sig, prev, end = cfg.line.induct.signal, None, _time.monotonic() + args.timeout
        try:
            while not stop.is_set() and _time.monotonic() < end and len(meter.samples) < args.parcels:
                values = await io.read_inputs()
                t = io.sample_mono.get(cfg.io[sig].table, _time.monotonic())
                if prev == 0 and values.get(sig) == 1:
                    with lock:
                        meter.induct_edge(t)
                prev = values.get(sig)
                await asyncio.sleep(0.001)
        except (DeviceRefused, LinkDown) as exc:
            print(f"line I/O: {exc}", file=sys.stderr)
        finally:
            io.close()

    th = threading.Thread(target=frames, name="latency-frames", daemon=True)
    th.start()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(edges())
    finally:
        loop.close()
        stop.set()
        th.join(5)
        src.close()
    got = meter.result()
    if got is None:
        raise SystemExit(f"camera {cam.name}: no parcel seen both at the induct eye and in a first frame")
    print(f"camera {cam.name}: frame latency {got['latency_ms']:.0f} ms (median of {got['n']} parcels, "
          f"spread {got['spread_ms']:.0f} ms)")
    if args.save:
        backup = save_latency(cam.calibration, got, "induct eye vs first frame with the leading edge")
        print(f"  saved into {cam.calibration}" + (f" (previous kept as {backup})" if backup else "")
              + ("; cameras[].latency_ms in the config takes precedence" if "latency_ms" in cam.model_fields_set else ""))
    return 0


def add_arguments(p: argparse.ArgumentParser, with_config=None) -> None:
    sub = p.add_subparsers(dest="calib_cmd", required=True)

    def common(sp):
        if with_config is not None:
            with_config(sp)
        else:
            sp.add_argument("--config", default=str(example_config()))
        sp.add_argument("camera", help="camera name in the config")
        sp.add_argument("--output", help="write here instead of calibration/CAMERA.json in the line's data_dir")
        return sp

    def add_config(sp):
        if with_config is not None:
            with_config(sp)
        else:
            sp.add_argument("--config", default=str(example_config()))
        return sp

    def frame_source(sp, required=True):
        src = sp.add_mutually_exclusive_group(required=required)
        src.add_argument("--image", help="a frame from the camera showing the target")
        src.add_argument("--grab", action="store_true", help="take a frame from the camera's source now")
        return sp

    sp = sub.add_parser("target", help="write a printable chessboard target (fits A4 at 100 %%)")
    sp.add_argument("file")
    sp.add_argument("--chessboard", type=lambda t: _pair(t, "x", int), default=(9, 6), help="inner corners COLSxROWS")
    sp.add_argument("--square-mm", type=float, default=20.0, help="square size (default %(default)s: fits A4)")
    sp.add_argument("--dpi", type=int, default=300)
    sp.add_argument("--force", action="store_true", help="write a target larger than A4")
    sp.set_defaults(calib_fn=cmd_target)

    sp = sub.add_parser("card", help="write the printable test card: A4 PDF + PNG (chessboard, Code 128, QR, "
                                     "Data Matrix of known module size, a ruler)")
    sp.add_argument("--output", required=True, help="folder for test-card.pdf, test-card.png, test-card.json")
    sp.set_defaults(calib_fn=cmd_card)

    sp = frame_source(common(sub.add_parser("from-card", help="calibrate from one image of the test card on the "
                                                              "belt: mm/px, belt mapping, px/module, reads")))
    sp.add_argument("--downstream", choices=["right", "left", "down", "up"], default="right",
                    help="the image direction the belt moves")
    sp.add_argument("--dry-run", action="store_true", help="only print, write no calibration")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(calib_fn=cmd_from_card)

    sp = common(sub.add_parser("report", help="N frames -> report.json, annotated PNGs and report.html: read "
                                              "reliability, focus, exposure advice, px/module, field of view"))
    src = sp.add_mutually_exclusive_group()
    src.add_argument("--images", help="a folder of frames (default: the camera itself)")
    src.add_argument("--video", help="a video file")
    sp.add_argument("--frames", type=int, default=30)
    sp.add_argument("--timeout", type=float, default=60.0, help="stop taking frames after this many seconds")
    sp.add_argument("--exposure-ms", type=float, help="the camera's exposure time, for the motion blur")
    sp.add_argument("--module-mm", type=float, default=0.33, help="narrowest module of the labels (default "
                    "%(default)s mm, 13 mil)")
    sp.add_argument("--keep", type=int, default=12, help="annotated PNGs kept (the first N frames)")
    sp.set_defaults(calib_fn=cmd_report)

    sp = add_config(sub.add_parser("timing", help="diverter positions from the chutes' confirm eyes on a running "
                                                  "line; --accept writes the corrections"))
    sp.add_argument("--url", default="http://127.0.0.1:8080", help="the running line's API")
    sp.add_argument("--slide-ms", type=float, help="known time from a parcel's head at its diverter to the confirm "
                    "eye (default: the median over the diverters)")
    sp.add_argument("--tolerance-mm", type=float, default=5.0, help="smaller errors are left alone")
    sp.add_argument("--accept", action="store_true", help="write the proposed positions into the line file "
                    "(atomically, the previous file kept as a dated backup)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(calib_fn=cmd_timing)

    sp = frame_source(common(sub.add_parser("chessboard", help="calibrate from a chessboard target lying on the belt")))
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
    sp.add_argument("--induct", action="store_true", help="measure instead from induct-eye edges (over the line's "
                    "I/O) against the first frame showing each parcel's leading edge")
    sp.add_argument("--plc", help="the line's I/O for --induct (default plc.url)")
    sp.add_argument("--parcels", type=int, default=10, help="--induct: parcels to measure")
    sp.add_argument("--timeout", type=float, default=120.0)
    sp.add_argument("--save", action="store_true", help="--induct: write the latency into the camera's calibration")
    sp.set_defaults(calib_fn=cmd_latency)

    sp = frame_source(common(sub.add_parser("check", help="show where pixels lie on the belt; with --image/--grab, "
                                                          "whether the target in a new frame still agrees")),
                      required=False)
    sp.add_argument("--pixel", type=_pair, action="append", help="X,Y (repeatable)")
    sp.add_argument("--chessboard", type=lambda t: _pair(t, "x", int), help="the target in the frame is a plain "
                    "chessboard COLSxROWS (default: the test card)")
    sp.add_argument("--square-mm", type=float, default=20.0)
    sp.add_argument("--tolerance-mm", type=float, default=2.0)
    sp.set_defaults(calib_fn=cmd_check)


def run(args) -> int:
    return args.calib_fn(args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="calibrate", description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
