"""Config for building the embedded default dataset from registry-shipped imagery."""
from __future__ import annotations

from pydantic import Field, model_validator

from data_assets.settings import Section


class EmbeddedConfig(Section):
    seed: int = 0  # every random choice (views, crops, split) derives from this
    tile_px: int = Field(default=256, ge=64)  # side of each saved satellite / map tile
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)  # share of evaluation-grid tiles held out as test
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)  # share held out as val (defaults are chosen on it)
    # cross-area test split ("test_cross"): sources held out whole (their ground and imagery are never
    # trained on), and for other sources the eastern share of the image held out, one tile apart
    cross_area_sources: list[str] = ["yell1", "osbs", "soap061"]
    cross_area_strip: dict[str, float] = {"vegas": 0.25, "atlanta": 0.25}
    # SpaceNet (street_map queries): 36 m tiles every 12 m (train; evaluation tiles every 36 m), 72 m blocks.
    # 36 m because evaluation tiles must not overlap: the two ~400 m images give only ~45 of them per split set
    spacenet_tile_m: float = Field(default=36.0, gt=0)  # ground footprint (side) of a Las Vegas / Atlanta tile
    spacenet_stride_m: float = Field(default=12.0, gt=0)  # train tile step; overlap is fine, the split handles it
    spacenet_block_m: float = Field(default=72.0, gt=0)  # spatial block side for the train/test split
    min_map_content: float = Field(default=0.02, ge=0, lt=1)  # keep a map tile only if this share is drawn
    # NEON (uav queries): 32 m tiles every 16 m of 10 cm orthophoto, split by 64 m blocks
    neon_tile_m: float = Field(default=32.0, gt=0)  # ground footprint (side) of a NEON tile
    neon_stride_m: float = Field(default=16.0, gt=0)  # train tile step
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
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError("test_fraction + val_fraction must leave ground for training (< 1)")
        bad = {k: v for k, v in self.cross_area_strip.items() if not 0 <= v < 1}
        if bad:
            raise ValueError(f"cross_area_strip shares must be in [0, 1): {bad}; hold a source out whole "
                             "with cross_area_sources")
        both = set(self.cross_area_sources) & set(self.cross_area_strip)
        if both:
            raise ValueError(f"{sorted(both)} both held out whole and by strip; list each source once")
        return self
