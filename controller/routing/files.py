"""Reading the routing area's files (carriers, towns, routes) with errors that name file and line.

Every file is read as bytes once: the bytes give the content hash (the routing version) and the
text (UTF-8, or GBK/GB18030 for a CSV saved by Excel on a Chinese Windows PC). YAML is parsed
twice, into nodes (for line numbers) and into data, with duplicate keys refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from sorter.controller.config.load import _Loader, _construct_mapping

if hasattr(yaml, "CSafeLoader"):
    class _FastLoader(yaml.CSafeLoader):  # type: ignore[misc,name-defined]
        """LibYAML's parser (several times faster: reloads happen while the line runs), with the
        same refusal of duplicate keys."""

    _FastLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
else:  # pragma: no cover - PyYAML built without libyaml
    _FastLoader = _Loader


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


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileProblems([f"{path}: cannot read: {exc}"]) from exc


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_yaml(path: Path, raw: bytes) -> tuple[Any, yaml.Node | None]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblems([f"{path}:1: not UTF-8 text: {exc}"]) from exc
    try:
        root = yaml.compose(text, Loader=_FastLoader)
        data = yaml.load(text, Loader=_FastLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise FileProblems([f"{loc}: {problem}"]) from exc
    return data, root


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
