"""`make test` runs the tests two at a time except those marked `line` (pyproject.toml): a test file
that starts the simulated line in real time without the mark would run beside another such test and
starve its cameras and timing process — the flaky failures this split exists to prevent."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# what starts the line in real time: the harness, the app's wiring, or `sorter sim` as a process
STARTS_THE_LINE = re.compile(r"SimHarness\(|SimWorld\(|\"sim\", \"--config\"|\[\"sim\", ")


def test_every_file_that_runs_the_line_is_marked_line():
    texts = {p.relative_to(TESTS).as_posix(): p.read_text(encoding="utf-8")
             for p in sorted(TESTS.rglob("test_*.py")) if p.name != Path(__file__).name}
    unmarked = [name for name, text in texts.items()
                if STARTS_THE_LINE.search(text) and "pytest.mark.line" not in text]
    assert unmarked == [], f"start the line in real time but are not marked `line`: {unmarked}"


def test_the_pattern_finds_the_ways_a_test_starts_the_line():
    for text in ('h = SimHarness(cfg, parcels=3)', 'start(["sim", "--config", str(cfg)])',
                 '[sys.executable, "-m", "sorter", "sim", "--config", str(cfg)]'):
        assert STARTS_THE_LINE.search(text), text
    assert not STARTS_THE_LINE.search('["sorter", "run", "--config", cfg]')
