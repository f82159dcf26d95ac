"""The garbage collector's pauses in a real-time process.

A full (generation 2) collection walks every object the process holds: 15-22 ms for the timing
process's modules alone on this project's 2-core VM, longer than the fire-timing budget and than
twice plc.max_late_ms, so a collection that falls inside a Modbus round trip shows as a 'slow link'
spell and its parcels go to reject (six such spells of 16-25 ms in a 2-hour soak). Nearly every
object made while the process starts lives as long as the process, so once it has started they are
frozen out of the collector's walks (`gc.freeze`); the collections that remain are timed, so a pause
shows in the status rather than as a slow link.
"""

from __future__ import annotations

import gc
import time
from typing import Callable


class GcPauses:
    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.collections = self.full = 0
        self.longest_ms = 0.0
        self._started: float | None = None

    def install(self) -> None:
        """Collect what start-up left, freeze the rest, and time every collection from now on."""
        gc.collect()
        gc.freeze()
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        gc.unfreeze()

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:
            return
        ms = (self.clock() - self._started) * 1000.0
        self._started = None
        self.collections += 1
        self.longest_ms = max(self.longest_ms, ms)
        if info.get("generation") == 2:
            self.full += 1

    def counters(self) -> dict:
        return {"gc_collections": self.collections, "gc_full_collections": self.full,
                "gc_longest_pause_ms": round(self.longest_ms, 2), "gc_frozen_objects": gc.get_freeze_count()}
