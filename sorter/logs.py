"""Logging, configured once per process: the `sorter` logger tree at the level of `--log-level`
(default INFO), other libraries at WARNING; short lines without a timestamp of our own when stderr
goes to journald (it stamps every line itself), and which process spoke in every line.

Every child process calls `setup()` with the level its parent was given, so INFO lines such as the
control audit and route reloads reach the journal from every process alike.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# libraries whose chatter is ours to report: pymodbus dumps raw frames and tracebacks on every link
# hiccup (the timing loop raises one alarm for it); python-barcode announces at import that Pillow is
# missing (we render labels with OpenCV)
QUIET = {"pymodbus": logging.CRITICAL, "pyBarcode": logging.WARNING}
_level = "INFO"  # as set up in this process: what spawn() hands each child


def to_journal() -> bool:
    """True when stderr is the journal stream systemd gave us (JOURNAL_STREAM=dev:inode)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in want.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup(level: str = "INFO", process: str = "sorter") -> None:
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: one of {', '.join(LEVELS)}")
    if to_journal():
        fmt = f"{process}: %(levelname)s %(name)s: %(message)s"
    else:
        fmt = f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, force=True)
    logging.getLogger("sorter").setLevel(level)
    for name, lib_level in QUIET.items():
        logging.getLogger(name).setLevel(lib_level)
    global _level
    _level = level


def level() -> str:
    """The level this process was set up with (a child is handed it by its parent)."""
    return _level
