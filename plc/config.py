"""Config of the line's I/O: the Modbus points (the I/O map) and the connection to them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from controller.config_base import Strict

SignalTable = Literal["coil", "discrete_input", "input_register", "holding_register"]


class Signal(Strict):
    """One named point in the I/O map."""

    table: SignalTable = Field(description="Modbus table the signal lives in")
    address: int = Field(ge=0, le=65535, description="0-based Modbus address")
    unit: int = Field(default=1, ge=0, le=247, description="Modbus unit (device) id")
    words: Literal[1, 2] = Field(default=1, description="registers: 2 for a 32-bit counter (high word first)")




class PlcConfig(Strict):
    mode: Literal["direct"] = "direct"
    url: str = Field(default="tcp://127.0.0.1:1502", description="tcp://HOST:PORT")
    timeout_s: float = Field(default=0.25, gt=0, le=10)
    poll_hz: float = Field(default=1000, ge=10, le=5000)
    reconnect_min_s: float = Field(default=0.2, gt=0, le=60)
    reconnect_max_s: float = Field(default=5.0, gt=0, le=600)


def verify_io(cfg) -> list[tuple[str, str]]:
    """Checks of the I/O map beyond what the models enforce: (key path, problem) pairs."""
    problems: list[tuple[str, str]] = []
    # two signals on one point would fire each other's diverter
    seen: dict[tuple[int, str, int], str] = {}
    for name, sig in cfg.io.items():
        for w in range(sig.words):
            key = (sig.unit, sig.table, sig.address + w)
            if key in seen:
                problems.append((f"io.{name}", f"overlaps io.{seen[key]} at {sig.table} {sig.address + w}"))
            seen[key] = name
    return problems
