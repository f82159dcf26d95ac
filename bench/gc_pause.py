"""How long a full garbage collection stalls the timing process, with what start-up made frozen
out of the collector's walks (controller/timing/gc_pauses.py) and without (the baseline), in the
same run: the timing process's and the simulated line's modules imported, as in those processes.

    python bench/gc_pause.py
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tables import table  # noqa: E402


def full_collections(n: int = 20) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out)


def main() -> None:
    import sorter.controller.timing.process  # noqa: F401 - what the timing process holds
    import sorter.plc.sim.line  # noqa: F401

    rows = []
    base = full_collections()
    rows.append(["not frozen (baseline)", len(gc.get_objects()), f"{base[len(base) // 2]:.2f}", f"{base[-1]:.2f}"])
    gc.freeze()
    later = [{"parcel": [i]} for i in range(2000)]  # what the loop makes after start-up and keeps a while
    frozen = full_collections()
    rows.append(["start-up frozen (gc.freeze)", len(gc.get_objects()), f"{frozen[len(frozen) // 2]:.2f}",
                 f"{frozen[-1]:.2f}"])
    del later
    table("A full garbage collection in the timing process (20 each)",
          ["start-up objects", "objects walked", "p50 ms", "max ms"], rows)


if __name__ == "__main__":
    main()
