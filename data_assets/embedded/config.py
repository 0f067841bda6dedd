"""Config for building the embedded default dataset from registry-shipped imagery."""
from __future__ import annotations

from pydantic import Field, model_validator

from data_assets.settings import Section


class EmbeddedConfig(Section):
    seed: int = 0  # every random choice (views, crops, split) derives from this
    tile_px: int = Field(default=256, ge=64)  # side of each saved satellite / map tile
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)  # share of locations held out
    # SpaceNet (street_map queries): 64 m tiles every 24 m, split by 128 m blocks
    spacenet_tile_m: float = Field(default=64.0, gt=0)  # ground side of a Las Vegas / Atlanta tile
    spacenet_stride_m: float = Field(default=24.0, gt=0)  # tile step; overlap is fine, the split handles it
    spacenet_block_m: float = Field(default=128.0, gt=0)  # spatial block side for the train/test split
    min_map_content: float = Field(default=0.02, ge=0, lt=1)  # keep a map tile only if this share is drawn
    # NEON (uav queries): 32 m tiles every 16 m of 10 cm orthophoto, split by 64 m blocks
    neon_tile_m: float = Field(default=32.0, gt=0)  # ground side of a NEON tile
    neon_stride_m: float = Field(default=16.0, gt=0)  # tile step
    neon_block_m: float = Field(default=64.0, gt=0)  # spatial block side
    satellite_gsd_m: float = Field(default=0.3, gt=0)  # NEON is degraded to this GSD to act as satellite
    # query views
    uav_views: int = Field(default=3, ge=1)  # simulated drone photos per NEON location
    uav_px: int = Field(default=256, ge=32)  # side of a drone photo
    uav_tilt_deg: tuple[float, float] = (10.0, 40.0)  # camera tilt from nadir, drawn uniformly
    uav_fill: tuple[float, float] = (0.75, 1.0)  # altitude as a share of the highest whose view stays in the tile
    panorama_px: tuple[int, int] = (128, 512)  # (height, width) of a derived panorama, 4:1
    ground_views: int = Field(default=2, ge=0)  # perspective crops of the panorama per location
    ground_px: int = Field(default=192, ge=32)  # side of a derived ground photo
    ground_fov_deg: float = Field(default=90.0, gt=10, lt=170)  # horizontal field of view of a ground photo
    jpeg_quality: int = Field(default=90, ge=50, le=100)  # photos are JPEG; maps are PNG
    # VIGOR-style semi-positives: same-split, same-image locations whose tile shares at least this
    # share of the tile area (strided tiles are near-duplicates of their neighbours); 0 disables
    semi_positive_min_overlap: float = Field(default=0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _ranges(self) -> "EmbeddedConfig":
        lo, hi = self.uav_tilt_deg
        if not 0 <= lo <= hi <= 50:  # with a 60 deg lens, more tilt would see the horizon
            raise ValueError("uav_tilt_deg must be (low, high) with 0 <= low <= high <= 50")
        lo, hi = self.uav_fill
        if not 0 < lo <= hi <= 1:
            raise ValueError("uav_fill must be (low, high) with 0 < low <= high <= 1")
        if self.spacenet_stride_m > self.spacenet_tile_m or self.neon_stride_m > self.neon_tile_m:
            raise ValueError("a stride larger than the tile would leave ground unused")
        return self
