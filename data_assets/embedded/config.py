"""Config for building the embedded default dataset from registry-shipped imagery."""
from __future__ import annotations

from pydantic import Field

from data_assets.settings import Section


class EmbeddedConfig(Section):
    seed: int = 0  # every random choice (views, crops, split) derives from this
    tile_px: int = Field(default=256, ge=64)  # side of each saved satellite / map tile
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)  # share of locations held out
