"""A longer schemathesis run against a running `sorter run` than the test suite's
(tests/test_schemathesis.py): every operation of its OpenAPI schema, cases the schema allows and
cases it does not, with and without the token. Prints a table per operation: cases, status codes,
the largest answer, failures (a 5xx, an answer over 1 MB, a 4xx of 2 KB or more, a control POST
done without the token). Exits 1 on any failure.

    python bench/fuzz_api.py                  # 100 cases per operation and kind (~20 minutes)
    python bench/fuzz_api.py --examples 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemathesis import GenerationMode  # noqa: E402

from bench.tables import table  # noqa: E402
from tests.test_schemathesis import TOKEN, RunningSorter, fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=100, help="cases per operation, per kind (default %(default)s)")
    args = ap.parse_args()
    print(f"# API fuzzing ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{args.examples} cases per operation and kind)")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        app = RunningSorter(Path(tmp))
        try:
            app.wait_ready()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for token in (TOKEN, None):
                    t0 = time.perf_counter()
                    rows = fuzz(app.url, args.examples, mode, token, strict=False)
                    took = time.perf_counter() - t0
                    body = []
                    for r in rows:
                        codes = " ".join(f"{c}×{n}" for c, n in sorted(r["codes"].items()))
                        body.append([r["operation"], r["cases"], codes or r.get("skipped", "-")[:60],
                                     f"{r['max_bytes']:,}", len(r["failures"]),
                                     (r["failures"][0][:80] if r["failures"] else "")])
                        failures += len(r["failures"])
                    kind = "cases the schema allows" if mode == GenerationMode.POSITIVE else "cases it does not"
                    table(f"{kind}, {'with' if token else 'without'} the token ({sum(r['cases'] for r in rows):,} "
                          f"requests in {took:.0f} s)",
                          ["operation", "cases", "status codes", "largest answer (bytes)", "failures", "first failure"],
                          body)
            alive = app.alive()
        finally:
            left = app.stop()
    print(f"\nfailures: {failures}; sorter run {'stayed up' if alive else 'DIED'}; "
          f"children left behind: {len(left)}")
    return 1 if failures or not alive or left else 0


if __name__ == "__main__":
    raise SystemExit(main())
