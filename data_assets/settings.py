"""Base class for every config section: unknown keys are errors, not silently ignored.

Floats must be finite: YAML reads `.inf` / `.nan` as floats, and an `lr: .inf` would otherwise be
accepted and only show up as a diverged run hours later.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
