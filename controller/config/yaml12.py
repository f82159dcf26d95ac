"""YAML as the YAML 1.2 core schema reads it, on PyYAML (a YAML 1.1 library), for the line config
and the routing files.

YAML 1.1 changes what a technician wrote: `address: 025` becomes 21 (octal), `no`/`off` become
false, `1:30` becomes 90 (base 60) and `2026-12-01` a date. Here only `true`/`false`, `null`/`~`,
decimal, 0o and 0x integers and plain floats are implicit; everything else is text (pydantic then
takes `yes`/`on` for a boolean setting, as the person meant). The forms YAML 1.1 and 1.2 read
differently as numbers are refused outright, with the place and what to write instead, because
the file may be read elsewhere by a 1.1 tool too: a leading-zero integer (`025`), digits with
underscores (`1_000`) and base 60 (`1:30`). A Modbus address is never silently changed.

Duplicate keys are refused (a silent override is a commissioning bug).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))


class Core12Resolver(BaseResolver):
    """The implicit types of the YAML 1.2 core schema (nothing else is implicit)."""


Core12Resolver.yaml_implicit_resolvers = {}
for _tag, _rx, _first in (
    (BOOL_TAG, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (NULL_TAG, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (INT_TAG, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (FLOAT_TAG, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
):
    Core12Resolver.add_implicit_resolver(_tag, re.compile(_rx), list(_first))
Core12Resolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    t = text.strip()
    sign, digits = (-1, t[1:]) if t.startswith("-") else (1, t.lstrip("+"))
    try:
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        if re.fullmatch(r"[0-9]+", digits):
            return sign * int(digits, 10)
    except ValueError:
        pass
    raise ConstructorError(None, None, f"{text!r} is not an integer", node.start_mark)


def _float(loader: SafeConstructor, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    t = text.strip().lower()
    if t in (".inf", "+.inf"):
        return float("inf")
    if t == "-.inf":
        return float("-inf")
    if t == ".nan":
        return float("nan")
    try:
        if "_" not in t:     # Python's float() takes 1_0; YAML 1.2 does not
            return float(t)
    except ValueError:
        pass
    raise ConstructorError(None, None, f"{text!r} is not a number", node.start_mark)


def _bool(loader: SafeConstructor, node: yaml.ScalarNode) -> bool:
    text = loader.construct_scalar(node)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise ConstructorError(None, None, f"{text!r} is not true or false", node.start_mark)


def _mapping(loader: SafeConstructor, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:   # an unhashable key ([a, b]: x): construct_mapping says so with its place
            break
        if first is not None:
            raise ConstructorError(None, None, f"duplicate key {key!r} (first on line {first + 1})",
                                   key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


class Core12Constructor(SafeConstructor):
    """SafeConstructor with the 1.2 core's ints, floats and booleans, and no duplicate keys."""


Core12Constructor.add_constructor(INT_TAG, _int)
Core12Constructor.add_constructor(FLOAT_TAG, _float)
Core12Constructor.add_constructor(BOOL_TAG, _bool)
Core12Constructor.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# 1.1-only types are not implicit here; an explicit !!timestamp, !!binary ... stays refused as unknown
for _t in ("timestamp", "binary", "omap", "pairs", "set"):
    Core12Constructor.yaml_constructors.pop(f"tag:yaml.org,2002:{_t}", None)


class Loader12(Reader, Scanner, Parser, Composer, Core12Constructor, Core12Resolver):
    """The pure-Python loader (line numbers of every node; what the line config uses)."""

    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        Core12Constructor.__init__(self)
        Core12Resolver.__init__(self)


if hasattr(yaml, "CParser"):
    class FastLoader12(yaml.CParser, Core12Constructor, Core12Resolver):  # type: ignore[misc,name-defined]
        """LibYAML's parser (several times faster: route files are reloaded while the line runs)."""

        def __init__(self, stream):
            yaml.CParser.__init__(self, stream)
            Core12Constructor.__init__(self)
            Core12Resolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    FastLoader12 = Loader12


# plain scalars YAML 1.1 reads as other numbers than YAML 1.2 does, and what to write instead
_AMBIGUOUS = (
    (re.compile(r"[-+]?0[0-9]+"),
     lambda v: f"{v} has a leading zero: YAML 1.1 reads it as octal, YAML 1.2 as decimal; write "
               f"{int(v, 10)} for the number, or \"{v}\" in quotes for text"),
    (re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(?:\.[0-9_]*)?"),
     lambda v: f"{v}: YAML 1.1 reads digits with _ as a number, YAML 1.2 as text; write "
               f"{v.replace('_', '')} for the number, or \"{v}\" in quotes for text"),
    (re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"),
     lambda v: f"{v}: YAML 1.1 reads it as a base-60 number, YAML 1.2 as text; write \"{v}\" in "
               f"quotes for text, or the number itself"),
)


def ambiguous_scalars(root: yaml.Node | None) -> list[tuple[int, tuple[Any, ...], str]]:
    """(1-based line, key path, problem) for each plain scalar YAML 1.1 and 1.2 read as different
    values. Walked without recursion (a file may nest deep)."""
    out = []
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:     # an alias: the anchored node was walked already
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag in (INT_TAG, FLOAT_TAG, "tag:yaml.org,2002:str"):
                for rx, say in _AMBIGUOUS:
                    if rx.fullmatch(node.value):
                        out.append((node.start_mark.line + 1, path, say(node.value)))
                        break
        elif isinstance(node, yaml.MappingNode):
            for k, v in reversed(node.value):
                stack.append((v, path + (k.value if isinstance(k, yaml.ScalarNode) else "?",)))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in reversed(list(enumerate(node.value))):
                stack.append((v, path + (i,)))
    return out


class YamlProblem(Exception):
    """A YAML text that cannot be used: (1-based line or None, key path, problem) each."""

    def __init__(self, problems: list[tuple[int | None, tuple[Any, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(p for _, _, p in problems))


def load12(text: str, fast: bool = False) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of a YAML text read as YAML 1.2; YamlProblem for a syntax error, a
    duplicate key, nesting too deep, or scalars YAML 1.1 would read as other numbers."""
    data, root, ambiguous = load12_noting(text, fast)
    if ambiguous:
        raise YamlProblem(ambiguous)
    return data, root


def load12_noting(text: str, fast: bool = False) -> tuple[Any, yaml.Node | None, list]:
    """load12, but the scalars YAML 1.1 would read as other numbers are returned beside the data
    (read as YAML 1.2 reads them) instead of raised: a caller that validates the data can report
    them with its other mistakes, in one pass. YamlProblem for everything else."""
    try:
        loader = (FastLoader12 if fast else Loader12)(text)
    except yaml.reader.ReaderError as exc:   # a control character: the reader checks the whole text first
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise YamlProblem([(line, (), f"character #x{exc.character:04x} is not allowed in YAML"
                            if isinstance(exc.character, int) else str(exc).splitlines()[0])]) from None
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise YamlProblem([(None, (), "nested too deeply")]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlProblem([(mark.line + 1 if mark else None, (), problem)]) from None
        bad = ambiguous_scalars(root)
        if root is None:
            return None, None, bad
        try:
            data = loader.construct_document(root)
        except RecursionError:
            raise YamlProblem(bad + [(root.start_mark.line + 1, (), "nested too deeply")]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlProblem(bad + [(mark.line + 1 if mark else None, (), problem)]) from None
        return data, root, bad
    finally:
        loader.dispose()
