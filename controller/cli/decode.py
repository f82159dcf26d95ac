"""``sorter decode IMAGE... [--json]``: decode barcodes in image files.

With ``--json`` one JSON object per image, one per line::

    {"file": "a.png", "reads": [{"symbology": "code128", "text": "...", "polygon": [[x, y], ...], "weak": false}],
     "ms": 12.3}

``weak``: a 1-D read that only one decoding attempt made (likelier wrong; a line sorts on it only
when its camera's ``weak_reads_sort`` is on).

``ms`` is the in-process decode time (image loading excluded).  A file that cannot be read gives
``{"file": "...", "error": "..."}``; the other files are still processed and the exit code is 1.
Without ``--json`` one readable line per read (text escaped, so a hostile barcode cannot inject
terminal control sequences).
"""

from __future__ import annotations

import json
import sys
from typing import Iterable

from sorter.vision.decode import _normalise_symbologies, decode_file

__all__ = ["run"]


def _safe(text: str) -> str:
    """Printable form for a terminal: control characters escaped, other text (CJK) kept."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def run(paths: list[str], as_json: bool, symbologies: Iterable[str] | None = None) -> int:
    out = sys.stdout
    rc = 0
    try:
        wanted = _normalise_symbologies(symbologies) if symbologies is not None else None
    except ValueError as exc:
        print(f"sorter decode: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        try:
            codes, ms = decode_file(path, wanted)
        except Exception as exc:  # unreadable file, corrupt image, ...
            rc = 1
            if as_json:
                out.write(json.dumps({"file": path, "error": str(exc)}, ensure_ascii=False) + "\n")
            else:
                out.write(f"{_safe(path)}: ERROR {_safe(str(exc))}\n")
            out.flush()
            continue
        if as_json:
            obj = {
                "file": path,
                "reads": [
                    {"symbology": c.symbology, "text": c.text, "polygon": [list(p) for p in c.polygon],
                     "weak": c.weak}
                    for c in codes
                ],
                "ms": round(ms, 2),
            }
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        else:
            if not codes:
                out.write(f"{_safe(path)}: no read ({ms:.1f} ms)\n")
            for c in codes:
                xs = [p[0] for p in c.polygon] or [0]
                ys = [p[1] for p in c.polygon] or [0]
                cx, cy = sum(xs) // len(xs), sum(ys) // len(ys)
                weak = " (weak: one attempt only)" if c.weak else ""
                out.write(f"{_safe(path)}: {c.symbology} {_safe(c.text)}{weak} at ({cx},{cy}) ({ms:.1f} ms)\n")
        out.flush()
    return rc


def main(argv: list[str] | None = None) -> int:  # standalone use: python -m vision.decode_cli
    import argparse

    ap = argparse.ArgumentParser(prog="sorter decode", description="Decode barcodes in image files.")
    ap.add_argument("images", nargs="+", metavar="IMAGE")
    ap.add_argument("--json", action="store_true", help="one JSON object per image per line")
    ap.add_argument("--symbology", action="append", help="limit to these symbologies (repeatable)")
    a = ap.parse_args(argv)
    return run(a.images, a.json, a.symbology)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
