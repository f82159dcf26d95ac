"""What every benchmark script prints with: percentiles and markdown tables."""

from __future__ import annotations

import os
import sys

import numpy as np


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(f"{r[i]}") for r in rows)) for i, h in enumerate(header)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(f"{c}".ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def one_core() -> None:
    """Measure on one core, as a camera worker decodes: single-threaded OpenCV, pinned to the last core."""
    import cv2
    cv2.setNumThreads(1)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    except (AttributeError, OSError):
        pass
