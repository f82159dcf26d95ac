"""The base of every config model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are refused; a config object never changes once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
