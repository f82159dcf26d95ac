"""Reading the routing area's files (carriers, towns, routes) with errors that name file and line.

Every file is read as bytes once: the bytes give the content hash (the routing version) and the
text (UTF-8, or GBK/GB18030 for a CSV saved by Excel on a Chinese Windows PC). YAML is parsed
twice, into nodes (for line numbers) and into data, with duplicate keys refused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sorter.controller.config.yaml12 import YamlProblem, load12


class FileProblems(Exception):
    """A file (or several) that cannot be used; `problems` holds one `file:line: problem` each."""

    def __init__(self, problems: list[str], what: str = "invalid file"):
        self.problems = list(problems)
        super().__init__(f"{what}:\n" + "\n".join(f"  {p}" for p in self.problems))


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM) if it decodes strictly, else GB18030
    (a superset of GBK/GB2312, what Excel on a Chinese Windows PC writes)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"


STABLE_READS = 6        # reads of a changing file before it is refused
STABLE_PAUSE_S = 0.05   # between them: an editor's save (truncate, then write) takes milliseconds


def read_bytes(path: Path, read: Callable[[Path], bytes] = Path.read_bytes,
               pause: Callable[[float], None] = time.sleep) -> bytes:
    """The file's content once two reads in a row agree: an editor saves in two steps (truncate,
    then write), and a reload that reads in between must not take the half-written file. A file
    that is still changing after STABLE_READS reads is refused (the next change retries it)."""
    try:
        last = read(path)
        for _ in range(STABLE_READS - 1):
            again = read(path)
            if again == last:
                return last
            last = again
            pause(STABLE_PAUSE_S)
    except OSError as exc:
        raise FileProblems([f"{path}: cannot read: {exc}"]) from exc
    raise FileProblems([f"{path}: changed while it was read ({STABLE_READS} reads differed): is it still "
                        f"being written? It is read again when it next changes"])


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_yaml(path: Path, raw: bytes) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of a routing YAML file, read as YAML 1.2 with LibYAML's parser (see
    controller/config/yaml12.py); every problem as `file:line: [key.path: ]problem`."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # the line of the byte, not of the file's start; the bytes themselves, not the codec's words
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start:exc.end].hex(" ")
        raise FileProblems([f"{path}:{line}: not UTF-8 text: bytes {bad} do not decode (save the file as "
                            f"UTF-8)"]) from exc
    try:
        return load12(text, fast=True)
    except YamlProblem as exc:
        raise FileProblems([f"{path}:{line or 1}: " + (".".join(str(k) for k in keys) + ": " if keys else "") + p
                            for line, keys, p in exc.problems]) from None


def line_of(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def mapping_nodes(node: yaml.Node | None) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
    """key -> (key node, value node) of a YAML mapping node ({} for anything else)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: (k, v) for k, v in node.value}


def item_nodes(node: yaml.Node | None, n: int) -> list[yaml.Node | None]:
    """The n item nodes of a YAML sequence node (the node itself when it is no sequence)."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value) + [node] * (n - len(node.value))
    return [node] * n


def resolve(base: Path, p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else base / p
