"""The routing files the line last ran on, kept in the line's data_dir (last-good-routes/): a line whose route file is
broken on disk when it starts (a bad edit, a half-copied file, a disk error) sorts on the tables it
last ran with instead of not sorting at all, and says so.

Each good table is kept as copies of its files named by its version, and an index that names
them, written last and atomically: a crash while keeping leaves the previous copy in force.
The copies are loaded and checked like the files themselves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

from sorter.controller.routing.router import RoutingState, _signature, config_paths, load_routing

log = logging.getLogger("sorter.routing")
FOLDER = "last-good-routes"
INDEX = "index.json"


def folder_of(cfg) -> Path:
    from sorter.controller.config.vision import data_dir
    return data_dir(cfg) / FOLDER


def keep(cfg, state: RoutingState) -> None:
    """Keep copies of the files of `state` (just loaded and validated). A copy that does not load
    to the same version (a file changed since it was read) is not kept."""
    folder = folder_of(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / INDEX
    try:
        if json.loads(index_path.read_text(encoding="utf-8")).get("version") == state.version:
            return
    except (OSError, ValueError):
        pass
    names = {}
    for role, path in zip(("routes", "towns", "carriers"), config_paths(cfg)):
        if path is None:
            continue
        name = f"{state.version}-{role}{Path(path).suffix}"
        tmp = folder / (name + ".tmp")
        shutil.copyfile(path, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
        names[role] = name
    try:
        copy = _load(cfg, folder, names)
    except Exception as exc:  # noqa: BLE001 - the files changed under us: keep the previous copy
        log.warning("routing files changed while they were kept (%s); the previous copy stays", exc)
        return
    if copy.version != state.version:
        return
    tmp = folder / (INDEX + ".tmp")
    tmp.write_text(json.dumps({"version": state.version, "files": names, "kept_wall": time.time()}),
                   encoding="utf-8")
    os.replace(tmp, index_path)
    for old in folder.iterdir():  # copies of older versions
        if old.name != INDEX and old.name not in names.values():
            old.unlink(missing_ok=True)


def load_kept(cfg) -> tuple[RoutingState, float] | None:
    """The kept tables (and when they were kept), or None when there are none that load.
    The state watches the line's own files, so that a repaired file is picked up."""
    folder = folder_of(cfg)
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        state = _load(cfg, folder, index["files"])
    except Exception as exc:  # noqa: BLE001 - nothing kept, or the copy is damaged too
        log.info("no last good routing table in %s: %s", folder, exc)
        return None
    files = tuple(Path(p) for p in config_paths(cfg) if p is not None)
    return dataclasses.replace(state, files=files, signature=_signature(files)), float(index.get("kept_wall", 0))


def _load(cfg, folder: Path, names: dict) -> RoutingState:
    def path(role):
        return folder / names[role] if role in names else None
    return load_routing(path("routes"), {c.id for c in cfg.line.chutes}, path("towns"), path("carriers"))
