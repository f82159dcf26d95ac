"""The reference of a line's config file, generated from the models so that it cannot drift.

`json_schema()` is the JSON Schema of a line file (`sorter config-schema`); `markdown()` is the
Markdown reference shipped as `config/README.md` (`sorter config-docs`): every section and every key
with its type, default, bounds and description, walked from the models (`Config` down), with the
types and bounds taken from the same JSON Schema.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sorter.controller.config.line import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REFERENCE_NAME = "README.md"      # in the examples package: config/README.md in the source tree
REGENERATE = "sorter config-docs --output config/README.md"

__all__ = ["json_schema", "markdown", "sections", "reference_path", "Section", "REGENERATE"]


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a line config file."""
    s = Config.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, "title": "sorter line configuration",
            **{k: v for k, v in s.items() if k != "title"}}


def reference_path() -> Path:
    """The shipped Markdown reference (config/README.md in the source tree)."""
    return Path(str(resources.files("sorter.examples") / REFERENCE_NAME))


# ---------------------------------------------------------------- the walk over the models
@dataclass(frozen=True)
class Section:
    """One model as it appears in a file: `line.diverters[]` is the DiverterConfig of each item."""

    path: str                      # "" for the top level
    model: type[BaseModel]
    container: str                 # "model", "list" (each item) or "mapping" (each value)
    field: FieldInfo | None        # the parent's field (None for the top level)
    depth: int                     # 0 for the top level, 1 for its sections ...


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """(model, container) when a field holds a model: directly, optional, in a list or as the values
    of a mapping."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _nested(args[0]) if len(args) == 1 else None
    if origin in (list, tuple) and typing.get_args(annotation):
        inner = typing.get_args(annotation)[0]
        return (inner, "list") if inspect.isclass(inner) and issubclass(inner, BaseModel) else None
    if origin is dict:
        inner = typing.get_args(annotation)[1]
        return (inner, "mapping") if inspect.isclass(inner) and issubclass(inner, BaseModel) else None
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation, "model"
    return None


def sections(model: type[BaseModel] = Config, path: str = "", container: str = "model",
             field: FieldInfo | None = None, depth: int = 0) -> list[Section]:
    """Every section, depth first in the models' field order, the top level first."""
    out = [Section(path, model, container, field, depth)]
    for name, f in model.model_fields.items():
        nested = _nested(f.annotation)
        if nested is None:
            continue
        sub, kind = nested
        sub_path = (f"{path}.{name}" if path else name) + {"model": "", "list": "[]", "mapping": ".<name>"}[kind]
        out += sections(sub, sub_path, kind, f, depth + 1)
    return out


# ---------------------------------------------------------------- rendering
def _slug(heading: str) -> str:
    """The anchor GitHub (and most renderers) give a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _title(sec: Section) -> str:
    return f"`{sec.path}`" if sec.path else "Top level"


def _html_safe(text: str) -> str:
    """`<` outside code spans escaped: `A0 <ch> <state>` is text, not an HTML tag to a renderer."""
    parts = str(text).split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def _cell(text: str) -> str:
    return _html_safe(" ".join(str(text).split())).replace("|", "\\|")


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _value(v: Any) -> str:
    """A default as it would be written in the YAML file."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _num(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    return s if s else '""'


class _Renderer:
    def __init__(self) -> None:
        self.sections = sections()
        self.path_of: dict[str, Section] = {}
        for sec in self.sections:
            self.path_of.setdefault(sec.model.__name__, sec)

    def link(self, model_name: str) -> str:
        sec = self.path_of.get(model_name)
        if sec is None:
            return model_name
        return f"[{_title(sec)}](#{_slug(_title(sec))})"

    def kind(self, prop: dict) -> str:
        """The type of a key, in words, from its JSON Schema."""
        if "$ref" in prop:
            name = prop["$ref"].rsplit("/", 1)[-1]
            sec = self.path_of.get(name)
            if sec is not None and sec.container == "model":
                return "section " + self.link(name)
            return self.link(name)
        if "anyOf" in prop:
            parts = [p for p in prop["anyOf"] if p.get("type") != "null"]
            text = " or ".join(self.kind(p) for p in parts)
            return text + (" or none" if len(parts) < len(prop["anyOf"]) else "")
        if "enum" in prop:
            return " | ".join(f"`{_value(v)}`" for v in prop["enum"])
        if "const" in prop:
            return f"`{_value(prop['const'])}`"
        t = prop.get("type")
        if t == "string":
            return "path" if prop.get("format") == "path" else "text"
        if t == "number":
            return "number"
        if t == "integer":
            return "integer"
        if t == "boolean":
            return "true/false"
        if t == "array":
            if "prefixItems" in prop:
                return "[" + ", ".join(self.kind(p) for p in prop["prefixItems"]) + "]"
            items = prop.get("items", {})
            if "$ref" in items:
                return "list of " + self.link(items["$ref"].rsplit("/", 1)[-1])
            return "list of " + self.kind(items)
        if t == "object":
            keys = prop.get("propertyNames", {"type": "string"})
            values = prop.get("additionalProperties", {})
            value = self.link(values["$ref"].rsplit("/", 1)[-1]) if "$ref" in values else self.kind(values)
            return f"mapping: {self.kind(keys)} → {value}"
        return "any"

    @staticmethod
    def bounds(prop: dict) -> str:
        parts = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        out: list[str] = []
        for p in parts:
            for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                              ("exclusiveMaximum", "<")):
                if key in p:
                    out.append(f"{sign} {_num(p[key])}")
            for lo, hi, unit in (("minLength", "maxLength", "characters"), ("minItems", "maxItems", "items")):
                a, b = p.get(lo) or None, p.get(hi)
                if a == 1 and b is None:
                    out.append("not empty")
                elif a is not None and a == b:
                    out.append(f"{a} {unit}")
                elif a is not None and b is not None:
                    out.append(f"{a}–{b} {unit}")
                elif a is not None:
                    out.append(f"at least {a} {unit}")
                elif b is not None:
                    out.append(f"at most {b} {unit}")
            if "pattern" in p:
                out.append(f"`{p['pattern']}`")
        return ", ".join(out)

    @staticmethod
    def default(f: FieldInfo) -> str:
        if f.is_required():
            return "**required**"
        v = f.get_default(call_default_factory=True)
        if isinstance(v, BaseModel):
            return "its defaults"
        return f"`{_value(v)}`"

    def table(self, sec: Section) -> list[str]:
        props = sec.model.model_json_schema()["properties"]
        rows = ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, f in sec.model.model_fields.items():
            prop = props[name]
            rows.append("| " + " | ".join(_cell(c) for c in (
                f"`{name}`", self.kind(prop), self.default(f), self.bounds(prop), f.description or "")) + " |")
        return rows

    def intro(self, sec: Section) -> list[str]:
        if sec.field is None:
            return []
        required = "Required" if sec.field.is_required() else "Optional"
        what = {"model": f"{required} section.",
                "list": f"{required} list; each item has the keys below.",
                "mapping": f"{required} mapping; each key is a name you choose, each value has the keys below."}
        out = [what[sec.container], ""]
        doc = sec.model.__doc__
        if doc:
            out += [_html_safe(inspect.cleandoc(doc)), ""]
        elif sec.field.description:
            d = " ".join(sec.field.description.split())
            if re.match(r"[a-z]+\b", d) and not re.match(r"\w*_", d):
                d = d[0].upper() + d[1:]
            out += [_html_safe(d) + ("" if d.endswith(".") else "."), ""]
        return out

    def render(self) -> str:
        lines = [
            f"<!-- Generated from the config models (controller/config/) by `{REGENERATE}`: do not edit by hand. -->",
            "",
            "# Line configuration reference",
            "",
            "Every key of a line's YAML file (the example lines in this folder are complete ones), generated "
            "from the models that validate it, so it says what the code accepts. Regenerate it with "
            f"`{REGENERATE}`; `sorter config-docs --check` fails when it is out of date, and "
            "`sorter config-schema` prints the same rules as a JSON Schema (for an editor's completion and "
            "checking).",
            "",
            "- Unknown keys are refused: a typo stops the line at load, with `file:line: key.path: problem` "
            "(`sorter check-config FILE`).",
            "- Besides each key's own bounds, the loader checks what keys refer to: every signal named anywhere "
            "is in `io:` with a suitable table, and no two signals share a point; diverters, chutes and "
            "alternates named exist; positions are in order (induct photo-eye ≤ scan zone < diverters < "
            "`end_mm`); each camera is in the scan zone.",
            "- Positions are belt millimetres, times are milliseconds (`_ms`) or seconds (`_s`); \"none\" is "
            "YAML `null` or the key left out.",
            "- Paths are relative to the config file. The routing files it names (route table, towns, "
            "carriers) are explained in their own comments; `sorter routes check` validates them.",
            "",
            "Sections: " + ", ".join(self.link(s.model.__name__) for s in self.sections[1:] if s.depth == 1) + ".",
            "",
        ]
        for sec in self.sections:
            lines += ["#" * min(2 + max(sec.depth - 1, 0), 4) + " " + _title(sec), ""]
            lines += self.intro(sec)
            lines += self.table(sec)
            lines.append("")
        return "\n".join(lines).rstrip("\n") + "\n"


def markdown() -> str:
    """The Markdown reference of a line config file (what config/README.md holds)."""
    return _Renderer().render()
