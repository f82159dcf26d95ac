"""Config of routing: where the route table and the manifest are."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from controller.config_base import Strict


class RoutingConfig(Strict):
    routes: Path = Field(description="town -> chute rule file (YAML)")
    manifest: Path = Field(description="SQLite manifest database (waybill -> town)")
