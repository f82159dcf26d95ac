"""What a camera read, drawn on its frame: the kept no-read frames and the page's last image of a
camera show which label was read, and where."""

from __future__ import annotations

import cv2
import numpy as np

OUTLINE_BGR = (0, 200, 0)


def outline(img: np.ndarray, codes: list) -> np.ndarray:
    """A colour copy of `img` with each code's polygon drawn and its symbology and text beside it
    (non-ASCII shown as ?: OpenCV's fonts have no Chinese; the record has the real text)."""
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
    thick = max(2, round(max(out.shape[:2]) / 400))
    for sym, text, poly in codes:
        pts = np.asarray(poly, np.int32).reshape(-1, 1, 2)
        if len(pts) < 2:
            continue
        cv2.polylines(out, [pts], True, OUTLINE_BGR, thick, cv2.LINE_AA)
        x, y = int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())
        label = f"{sym}: {''.join(c if 32 <= ord(c) < 127 else '?' for c in str(text))[:32]}"
        cv2.putText(out, label, (x, max(14, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick / 2, OUTLINE_BGR,
                    max(1, thick // 2), cv2.LINE_AA)
    return out
