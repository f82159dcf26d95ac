"""`sorter` subcommands for the config reference (registered by controller/cli/main.py):

    sorter config-schema [--output FILE]          the JSON Schema of a line config file
    sorter config-docs [--output FILE] [--check]  the Markdown reference (config/README.md), generated
                                                  from the config models; --check: exit 1 if the
                                                  shipped one (or FILE) is not what would be generated
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _write(path: str, text: str) -> None:
    """Write atomically (a half-written reference is worse than an old one)."""
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    tmp.replace(out)


def cmd_schema(args) -> int:
    from sorter.controller.config.reference import json_schema

    return _emit(args.output, json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n",
                 "JSON Schema of a line config")


def cmd_docs(args) -> int:
    from sorter.controller.config.reference import REGENERATE, markdown, reference_path

    text = markdown()
    if args.check:
        path = Path(args.output) if args.output else reference_path()
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"{path}: cannot read the config reference: {exc}\n")
            return 1
        if current != text:
            fix = f"sorter config-docs --output {args.output}" if args.output else REGENERATE
            sys.stderr.write(f"{path}: out of date with the config models; regenerate it with `{fix}`\n")
            return 1
        print(f"{path}: up to date")
        return 0
    return _emit(args.output, text, "config reference")


def _emit(output: str | None, text: str, what: str) -> int:
    """`text` to the file `output` (atomically), or to stdout."""
    if output:
        _write(output, text)
        print(f"{output}: {what} written")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction, with_config=None) -> None:
    """Add this area's subcommands (they read no line config, so `with_config` is not used; it is
    accepted so that main.py can register every area the same way)."""
    sp = sub.add_parser("config-schema", help="print the JSON Schema of a line config file")
    sp.add_argument("--output", "-o", metavar="FILE", help="write it to FILE instead")
    sp.set_defaults(fn=cmd_schema)

    sp = sub.add_parser("config-docs", help="print the Markdown reference of a line config file (config/README.md)")
    sp.add_argument("--output", "-o", metavar="FILE", help="write it to FILE instead")
    sp.add_argument("--check", action="store_true",
                    help="exit 1 if the shipped config/README.md (or --output FILE) differs from what would be "
                         "generated")
    sp.set_defaults(fn=cmd_docs)
