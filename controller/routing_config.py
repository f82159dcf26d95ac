"""Config of routing (the `routing:` section of a line file): where the route table, the
manifest, the gazetteer and the carriers' formats are."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from controller.config_base import Strict


class RoutingConfig(Strict):
    routes: Path = Field(description="route table (YAML, or CSV): rules -> chutes")
    manifest: Path = Field(description="SQLite manifest database (waybill -> town / sort code / address)")
    towns: Path | None = Field(default=None, description="gazetteer (towns.yaml); default: the towns the rules name")
    carriers: Path | None = Field(default=None, description="carriers' waybill formats (carriers.yaml); default: built in")

    def resolve(self, base: Path) -> "RoutingConfig":
        """The same with every relative path made relative to `base` (the line file's folder)."""
        upd = {k: base / getattr(self, k) for k in ("routes", "manifest", "towns", "carriers")
               if getattr(self, k) is not None}
        return self.model_copy(update=upd)
