"""A Code 128 encoder: code set C for runs of digits, code set B for the rest.

python-barcode 0.16 drops a leading "99" from digit strings (it takes the data value 99 after
START C for a code-set switch), so a waybill such as 9977034003637 came out as 77034003637: a
wrong read the camera could never tell apart. This encoder is small enough to check by hand.
"""

from __future__ import annotations

import numpy as np
from barcode.charsets.code128 import CODES, STOP

START_B, START_C, CODE_B, CODE_C = 104, 105, 100, 99


def code128_values(text: str) -> list[int]:
    """Symbol values from start code to the last data symbol (no checksum)."""
    if not text or any(not 32 <= ord(c) <= 126 for c in text):
        raise ValueError(f"cannot encode {text!r} as Code 128 (printable ASCII only)")
    values: list[int] = []
    i, n, cur = 0, len(text), None
    while i < n:
        run = 0
        while i + run < n and text[i + run].isdigit():
            run += 1
        # set C pays off for 4+ digits (2+ when they are the whole text); keep an even count in C
        if run >= 4 or (run >= 2 and run == n):
            if run % 2:
                if cur is None:
                    values.append(START_B)
                    cur = "B"
                if cur != "B":
                    values.append(CODE_B)
                    cur = "B"
                values.append(ord(text[i]) - 32)
                i += 1
                run -= 1
            if cur is None:
                values.append(START_C)
            elif cur != "C":
                values.append(CODE_C)
            cur = "C"
            for k in range(0, run, 2):
                values.append(int(text[i + k: i + k + 2]))
            i += run
        else:
            if cur is None:
                values.append(START_B)
            elif cur != "B":
                values.append(CODE_B)
            cur = "B"
            values.append(ord(text[i]) - 32)
            i += 1
    return values


def code128_modules(text: str) -> np.ndarray:
    """Module pattern (1 = bar): start, data, mod-103 checksum, stop with its termination bar."""
    values = code128_values(text)
    check = (values[0] + sum(k * v for k, v in enumerate(values[1:], start=1))) % 103
    pattern = "".join(CODES[v] for v in values + [check]) + STOP + "11"
    return np.frombuffer(pattern.encode("ascii"), np.uint8) - ord("0")
