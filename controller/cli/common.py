"""What every `sorter` subcommand shares: loading the line config, or exiting with its
`file:line: key.path: problem` lines and status 2."""

from __future__ import annotations

import sys

from sorter.controller.config.load import ConfigError, load_config


def load_or_exit(path: str):
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None
