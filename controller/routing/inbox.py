"""The manifest inbox: carriers' advice files dropped into a folder are imported as they arrive.

Centres receive pre-advice as files (the carriers' or the co-delivery platform's SFTP upload, a
shared folder); the simulated carriers send theirs the same way. Each complete `*.csv` or `*.json`
file is imported by the same code as `sorter manifest import`, then moved out of the way, so that
a file is imported once and a person can see what came in and what was refused:

    inbox/NAME.csv            waiting (taken oldest first)
    inbox/NAME.csv.part       still being written: never touched (rename it when complete)
    inbox/done/NAME.csv       imported, every row good
    inbox/refused/NAME.csv    not imported, or only partly: refused/NAME.csv.why says which lines

A file written in place (no `.part`) is taken only once it has not changed for `settle_s`, so a
slow upload is not imported half.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sorter.controller.routing.manifest import ImportReport, Manifest

log = logging.getLogger("sorter.routing.inbox")

CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")   # what `sorter manifest import` reads as JSON
DONE, REFUSED = "done", "refused"
_LINE = re.compile(r"line (\d+): (.*)", re.S)


def import_file(manifest: Manifest, path: str | Path, fmt: str | None = None, progress=None) -> ImportReport:
    """Import one advice file by its suffix (.json/.jsonl/.ndjson: JSON, else CSV), as `sorter
    manifest import` does."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() in JSON_SUFFIXES else "csv")
    return (manifest.import_json if fmt == "json" else manifest.import_csv)(path, progress=progress)


def is_advice_file(path: Path) -> bool:
    name = path.name
    # dot files and ~ files are editors' and uploaders' temporaries
    return not name.startswith((".", "~")) and path.suffix.lower() in CSV_SUFFIXES + JSON_SUFFIXES


def pending_files(folder: str | Path, settle_s: float = 0.0, now: float | None = None) -> list[Path]:
    """The complete advice files waiting in `folder`, oldest first (by modification time, then
    name); a file changed less than `settle_s` ago is not complete yet."""
    folder = Path(folder)
    now = time.time() if now is None else now
    out = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for e in entries:
        p = Path(e.path)
        if not is_advice_file(p):
            continue
        try:
            st = e.stat()
        except FileNotFoundError:   # taken by another poller meanwhile
            continue
        if not e.is_file() or now - st.st_mtime < settle_s:
            continue
        out.append((st.st_mtime_ns, p.name, p))
    return [p for *_, p in sorted(out)]


@dataclass
class InboxResult:
    """What the inbox did with one file."""
    name: str                 # the file's name as it was dropped
    status: str               # "done", "refused", or "error" (left in place, tried again next poll)
    report: ImportReport | None
    moved_to: Path | None = None
    why: str | None = None    # refused / error: the problems, one `file:line: problem` a line

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "moved_to": None if self.moved_to is None else str(self.moved_to),
                "imported": self.report.imported if self.report else 0,
                "bad": self.report.bad_count if self.report else 0, "why": self.why}


class ManifestInbox:
    """Imports the advice files dropped into `folder` into `manifest`.

    `manifest`: an open, writable `Manifest`, or its path (opened at the first poll, in the thread
    that polls: a SQLite connection stays in its thread). Use:

        inbox = ManifestInbox(manifest_inbox_folder(cfg.routing, sim=...), cfg.routing.manifest)
        results = inbox.poll()      # every 0.5 s, off the timing process; blocks while it imports
        ...
        inbox.close()

    `poll()` imports every complete file (see the module docstring) and returns an InboxResult per
    file it took. A file that cannot be moved after its import is remembered and not imported again
    by this inbox. A crash between import and move imports the file again at the next start: the
    newest advice of a waybill counts, so that is harmless. To wait until the files dropped so far
    are imported (e.g. before the simulated parcels start), call `wait_imported(folder, timeout)`.
    """

    def __init__(self, folder: str | Path, manifest: Manifest | str | Path, settle_s: float = 1.0,
                 show_bad: int = 50, cache_mb: int = 128):
        self.folder = Path(folder)
        self._manifest = manifest if isinstance(manifest, Manifest) else None
        self._path = None if self._manifest is not None else Path(manifest)
        self.settle_s, self.show_bad, self.cache_mb = settle_s, show_bad, cache_mb
        self._handled: set[tuple[str, int, int]] = set()   # (name, size, mtime_ns) imported but not moved
        self._failed: dict[str, str] = {}                  # name -> why its import failed (to be retried)
        self._lock = threading.Lock()
        self.last: list[InboxResult] = []
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self._path, cache_mb=self.cache_mb)
        return self._manifest

    def pending(self) -> list[Path]:
        return [p for p in pending_files(self.folder, self.settle_s) if _key(p) not in self._handled]

    def poll(self, limit: int | None = None) -> list[InboxResult]:
        """Import the complete files waiting (at most `limit`), oldest first."""
        with self._lock:
            out = []
            for path in self.pending()[:limit]:
                out.append(self._take(path))
            if out:
                self.last = out
            return out

    def _take(self, path: Path) -> InboxResult:
        key = _key(path)
        try:
            rep = import_file(self.manifest, path)
        except Exception as exc:   # the manifest is locked or the disk full: the file stays for the next poll
            why = f"{path}: import failed: {exc}"
            if self._failed.get(path.name) != why:   # said once, not every half second
                log.warning("manifest inbox: %s (tried again at each poll)", why)
            self._failed[path.name] = why
            return InboxResult(path.name, "error", None, None, why)
        self._failed.pop(path.name, None)
        bad = rep.error is not None or rep.bad_count > 0
        dest = _free_name(self.folder / (REFUSED if bad else DONE), path.name)
        why = None
        try:
            dest.parent.mkdir(exist_ok=True)
            os.replace(path, dest)
        except OSError as exc:
            self._handled.add(key)
            log.error("manifest inbox: %s imported (%s) but cannot be moved to %s: %s", path, rep.summary(),
                      dest.parent, exc)
            dest = None
        if bad:
            why = self._why(dest or path, rep)
            if dest is not None:
                try:
                    Path(f"{dest}.why").write_text(why + "\n", encoding="utf-8")
                except OSError as exc:
                    log.error("manifest inbox: cannot write %s.why: %s", dest, exc)
            log.warning("manifest inbox: %s refused:\n%s", path.name, why)
        else:
            log.info("manifest inbox: %s", rep.summary())
        return InboxResult(path.name, REFUSED if bad else DONE, rep, dest, why)

    def _why(self, where: Path, rep: ImportReport) -> str:
        if rep.error is not None:
            m = _LINE.fullmatch(rep.error)
            head = f"{where}:{m.group(1)}: {m.group(2)}" if m else f"{where}: {rep.error}"
            return f"{head}\n{where}: nothing imported; fix the file and drop it into the inbox again"
        lines = [f"{where}:{n}: {problem}" for n, problem in rep.bad_rows[:self.show_bad]]
        if rep.bad_count > len(lines):
            lines.append(f"{where}: ... {rep.bad_count - len(lines)} more bad rows")
        lines.append(f"{where}: {rep.imported + rep.updated} good rows imported, {rep.bad_count} bad rows not; drop a file with "
                     f"the corrected rows into the inbox")
        return "\n".join(lines)

    def close(self) -> None:
        if self._manifest is not None and self._path is not None:
            self._manifest.close()
            self._manifest = None


def wait_imported(folder: str | Path, timeout_s: float, poll=None, interval_s: float = 0.05) -> bool:
    """Wait until no advice file waits in `folder` (every one dropped so far has been imported and
    moved to done/ or refused/); True if so within `timeout_s`. `poll`: called on each round when
    nobody else polls the inbox (e.g. `inbox.poll`). Files still being written (`.part`) do not count."""
    end = time.monotonic() + timeout_s
    while True:
        if poll is not None:
            poll()
        if not pending_files(folder):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval_s)


def _key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (path.name, -1, -1)
    return (path.name, st.st_size, st.st_mtime_ns)


def _free_name(folder: Path, name: str) -> Path:
    """folder/name, or folder/STEM-2.SUFFIX ... when a file of that name was taken before."""
    dest = folder / name
    n = 2
    stem, suffix = os.path.splitext(name)
    while dest.exists() or Path(f"{dest}.why").exists():
        dest = folder / f"{stem}-{n}{suffix}"
        n += 1
    return dest
