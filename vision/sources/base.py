"""What every source shares: the errors its ``read`` raises and what a code reader's read holds.

In one module so that a worker's ``except NoFrame`` / ``except SourceError`` catches them whichever
kind of source raised them, and each kind imports them without importing the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Alloc = Callable[[int, int], np.ndarray] | None


class SourceError(Exception):
    """The source cannot deliver frames (gone, unreachable, ended)."""


class NoFrame(Exception):
    """No frame within the wait: the camera is idle (a triggered camera with no parcel).

    `watermark`, when the source knows it, is a capture time before which it will deliver no more
    frames (the simulated cameras send it as a heartbeat); None means the source cannot say.
    """

    def __init__(self, watermark: float | None = None):
        super().__init__("no frame")
        self.watermark = watermark


@dataclass
class Reads:
    """What a code reader sent: (symbology, text) pairs, already validated; `noread` lines counted."""

    codes: list[tuple[str, str]] = field(default_factory=list)
    noread: int = 0
