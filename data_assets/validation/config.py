"""Config for the validation stage (Great Expectations suite over manifest and images)."""
from __future__ import annotations

from pydantic import Field

from data_assets.settings import Section


class ValidateConfig(Section):
    max_bad_fraction: float = Field(default=0.02, ge=0.0, le=1.0)  # fail the stage above this share
    min_pairs_per_modality: int = Field(default=10, ge=0)  # per modality present, per split
    min_image_side: int = Field(default=32, ge=1)  # pixels; smaller images are quarantined
    max_image_side: int = Field(default=16384, ge=1)
    # images whose header declares more pixels are quarantined before decoding (memory bound)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    decode_images: bool = True  # fully decode every image (catches truncated files)
    thumbnails: int = Field(default=6, ge=0)  # sample pairs shown in Dagster metadata
    workers: int = Field(default=8, ge=1)  # threads that open/decode images (I/O bound, PIL frees the GIL)
