"""A camera's commissioning report: N frames -> ``report.json``, annotated PNGs and ``report.html``.

Per code (symbology + text) seen in any frame: the share of frames that read it (a code on a
stopped test parcel or the test card should read in every frame; 80 % means the camera is at the
edge of what it resolves), its pixels per module; per frame: focus, exposure; and for the camera:
exposure advice at the line's belt speed, field of view on the belt in mm (through its calibration)
and the frame latency it is configured or calibrated with.

The HTML shows barcode texts, which are untrusted: everything is escaped.
"""

from __future__ import annotations

import html
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sorter.vision.commission.measures import FocusMeter, annotate, exposure_advice, frame_measures


@dataclass
class ReportInput:
    camera: str
    belt_speed_mps: float
    module_mm: float = 0.33
    exposure_ms: float | None = None
    latency_ms: float | None = None
    latency_source: str = ""
    calibration: object | None = None  # vision.geometry.Calibration
    symbologies: list[str] | None = None
    engines: list[str] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


def field_of_view_mm(cal, frame_size: tuple[int, int]) -> dict | None:
    """The belt area a frame covers, through the calibration: along and across the belt, mm."""
    if cal is None:
        return None
    w, h = frame_size
    fw, fh = cal.frame_size
    sx, sy = (fw / w, fh / h) if w and h else (1.0, 1.0)
    pts = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64) * (sx, sy)
    q = cal.to_plane(pts)
    a = np.asarray(cal.along)
    across = np.array([-a[1], a[0]])
    along_v, across_v = q @ a, q @ across
    return {"along_mm": round(float(np.ptp(along_v)), 1), "across_mm": round(float(np.ptp(across_v)), 1),
            "from_centre_mm": [round(float(along_v.min() - np.dot(cal.centre, a)), 1),
                               round(float(along_v.max() - np.dot(cal.centre, a)), 1)]}


def build_report(frames, inp: ReportInput, out_dir: str | Path, keep_png: int = 20, decode_fn=None) -> dict:
    """``frames``: an iterable of (capture_mono, grey frame). Writes the files, returns the report."""
    if decode_fn is None:
        from sorter.vision.decode import decode

        def decode_fn(img):
            kw = {}
            if inp.symbologies:
                kw["symbologies"] = inp.symbologies
            if inp.engines:
                kw["engines"] = inp.engines
            return decode(img, **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    focus = FocusMeter()
    per_frame, seen, ppms = [], {}, {}
    times, frame_size, n = [], None, 0
    for t, img in frames:
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        codes = decode_fn(img)
        m = frame_measures(img, codes, focus)
        frame_size = (img.shape[1], img.shape[0])
        n += 1
        times.append(t)
        for c in m["codes"]:
            key = (c["symbology"], c["text"])
            seen[key] = seen.get(key, 0) + 1
            if c["ppm"]:
                ppms.setdefault(key, []).append(c["ppm"])
        png = None
        if n <= keep_png:
            png = f"frame-{n:04d}.png"
            cv2.imwrite(str(out / png), annotate(img, m))
        per_frame.append({"frame": n, "t": round(t, 4), "focus": m["focus"], "mean": m["mean"],
                          "saturated_share": m["saturated_share"], "codes": len(m["codes"]), "ppm_min": m["ppm_min"],
                          "png": png, "histogram": m["histogram"]})
    if n == 0:
        raise ValueError(f"camera {inp.camera}: no frames")
    codes = [{"symbology": s, "text": t, "frames_read": k, "read_share": round(k / n, 4),
              "ppm_median": round(statistics.median(ppms[(s, t)]), 2) if ppms.get((s, t)) else None}
             for (s, t), k in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))]
    # the narrowest module actually seen: module mm = ppm x mm per px, when calibrated
    stats = {"mean": statistics.median(f["mean"] for f in per_frame),
             "saturated_share": statistics.median(f["saturated_share"] for f in per_frame)}
    advice = exposure_advice(inp.belt_speed_mps, inp.module_mm,
                             None if inp.exposure_ms is None else inp.exposure_ms / 1000, stats)
    fps = round((n - 1) / (times[-1] - times[0]), 2) if n > 1 and times[-1] > times[0] else None
    cal = inp.calibration
    report = {
        "camera": inp.camera, "source": inp.source, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "frames": n, "frame_size": list(frame_size), "fps": fps,
        "codes": codes,
        "focus": {"median": round(statistics.median(f["focus"] for f in per_frame), 1), "best": round(focus.best, 1),
                  "min": round(min(f["focus"] for f in per_frame), 1)},
        "exposure": {**advice, "mean_grey": round(stats["mean"], 1), "saturated_share": stats["saturated_share"]},
        "ppm_min": min((c["ppm_median"] for c in codes if c["ppm_median"]), default=None),
        "calibrated": cal is not None,
        "mm_per_px": (cal.meta.get("mm_per_px") if cal is not None else None),
        "field_of_view_mm": field_of_view_mm(cal, frame_size),
        "latency_ms": inp.latency_ms, "latency_source": inp.latency_source,
        "per_frame": per_frame, **inp.extra,
    }
    if report["ppm_min"] is not None and report["ppm_min"] < 2.0:
        report["exposure"]["advice"].append(f"the smallest code has {report['ppm_min']} px per module: "
                                            "under 2 reads unreliably (move the camera closer, or more pixels)")
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def render_html(r: dict) -> str:
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731 - every value, barcode texts above all
    rows = "".join(
        f"<tr><td>{e(c['symbology'])}</td><td class=t>{e(c['text'])}</td><td>{100 * c['read_share']:.1f} %</td>"
        f"<td>{e(c['ppm_median'])}</td></tr>" for c in r["codes"]) or "<tr><td colspan=4>no code read</td></tr>"
    fov = r.get("field_of_view_mm")
    fov_s = f"{fov['along_mm']} mm along x {fov['across_mm']} mm across the belt" if fov else "not calibrated"
    advice = "".join(f"<li>{e(a)}</li>" for a in r["exposure"]["advice"]) or "<li>exposure fine</li>"
    pngs = "".join(f'<figure><img src="{e(f["png"])}" alt="frame {f["frame"]}"><figcaption>frame {f["frame"]}: '
                   f'focus {e(f["focus"])}, {f["codes"]} codes</figcaption></figure>'
                   for f in r["per_frame"] if f["png"])[:200_000]
    ex = r["exposure"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Camera {e(r['camera'])}: commissioning report</title>
<style>body{{font:14px sans-serif;margin:1.5em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:left}}.t{{font-family:monospace}}
figure{{display:inline-block;margin:4px;width:340px}}img{{width:100%}}dt{{font-weight:bold}}</style></head>
<body><h1>Camera {e(r['camera'])}</h1>
<p>{e(r['created'])} &middot; source {e(r['source'])} &middot; {r['frames']} frames {e(r['frame_size'][0])}x{e(r['frame_size'][1])}
&middot; {e(r['fps'])} fps</p>
<h2>Reads</h2><table><tr><th>symbology</th><th>text</th><th>read in</th><th>px/module</th></tr>{rows}</table>
<h2>Image</h2><dl>
<dt>focus (variance of the Laplacian)</dt><dd>median {e(r['focus']['median'])}, best {e(r['focus']['best'])}, worst {e(r['focus']['min'])}</dd>
<dt>exposure</dt><dd>mean grey {e(ex['mean_grey'])}, saturated {100 * ex['saturated_share']:.2f} %;
exposure {e(ex['exposure_ms'])} ms, blur {e(ex['blur_modules'])} module at {e(ex['belt_speed_mps'])} m/s for
{e(ex['module_mm'])} mm modules; longest exposure under one module: {e(ex['max_exposure_ms'])} ms</dd>
<dt>advice</dt><dd><ul>{advice}</ul></dd>
<dt>smallest px/module</dt><dd>{e(r['ppm_min'])}</dd>
<dt>field of view</dt><dd>{e(fov_s)}; {e(r['mm_per_px'])} mm/px</dd>
<dt>frame latency</dt><dd>{e(r['latency_ms'])} ms ({e(r['latency_source'])})</dd></dl>
<h2>Frames</h2>{pngs}
</body></html>
"""
