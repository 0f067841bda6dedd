"""The embedded default dataset: real SpaceNet / NEON imagery shipped in registry packages, cut into
a small cross-view dataset (uav, street_map, panorama, ground vs satellite) with per-location
ground truth. Entry point: build_embedded_dataset(EmbeddedConfig(), out_dir)."""
from data_assets.embedded.build import build_embedded_dataset
from data_assets.embedded.config import EmbeddedConfig

__all__ = ["EmbeddedConfig", "build_embedded_dataset"]
