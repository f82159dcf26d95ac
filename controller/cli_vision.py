"""`sorter` subcommands for the vision area (registered by controller/cli.py)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, with_config) -> None:
    """Add this area's subcommands; `with_config(parser)` adds the common --config option."""
