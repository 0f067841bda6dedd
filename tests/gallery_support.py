"""Helpers for the gallery / localize tests: small georeferenced rasters and a tiny saved encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

SIZE_32 = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}


def textured(height: int, width: int, bands: int, seed: int, dtype=np.uint8) -> np.ndarray:
    """Smooth random texture (distinct everywhere, so every tile looks different)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((bands, height // 8 + 2, width // 8 + 2))
    up = np.kron(coarse, np.ones((1, 8, 8)))[:, :height, :width]
    fine = rng.random((bands, height, width)) * 0.3
    data = (up + fine) / 1.3
    top = 255 if dtype == np.uint8 else 2047
    return (1 + data * (top - 1)).astype(dtype)


def write_utm_rgb(path: Path, seed: int = 0, size: int = 200, gsd: float = 1.0,
                  origin=(500000.0, 4100000.0), epsg: int = 32633) -> Path:
    data = textured(size, size, 3, seed)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs=f"EPSG:{epsg}", transform=from_origin(origin[0], origin[1], gsd, gsd)) as ds:
        ds.write(data)
    return path


def write_wgs84_grey16(path: Path, seed: int = 1, size: int = 200, deg: float = 1e-5,
                       origin=(-115.2338, 36.1423)) -> Path:
    data = textured(size, size, 1, seed, dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                       crs="EPSG:4326", transform=from_origin(origin[0], origin[1], deg, deg)) as ds:
        ds.write(data)
    return path


def tiny_model(tmp_path: Path):
    """A small random MobileNetV2 at 32 px, saved as a GLEAM-C checkpoint (a real fingerprint)."""
    from export.gallery import load_model
    from gleam_models.checkpoint import save_model
    from gleam_models.config import EncoderConfig
    from gleam_models.encoder import create_encoder

    cfg = EncoderConfig(backbone="mobilenetv2_050", weights="none", input_size=SIZE_32, channels_last=False)
    ckpt = tmp_path / "model.safetensors"
    if not ckpt.is_file():
        import torch
        torch.manual_seed(0)
        save_model(ckpt, create_encoder(cfg), None)
    return load_model(cfg, ckpt), cfg, ckpt


def tiny_gallery(d: Path):
    """(d, model, cfg, raster, gallery): a tiny model and a gallery of one UTM raster, under d."""
    from export.gallery import GalleryConfig, build_gallery
    from export.localize import open_gallery

    model, cfg, _ = tiny_model(d)
    raster = write_utm_rgb(d / "map.tif", seed=3)
    build_gallery([raster], model, GalleryConfig(tile_m=64, stride_m=32), d / "gallery")
    return d, model, cfg, raster, open_gallery(d / "gallery")


def crop_frames(setup, tile_ids, folder: Path) -> list[Path]:
    """The map's own pixels under the given tiles (of a tiny_gallery), saved as PNG frames."""
    from PIL import Image

    _, _, _, raster, g = setup
    folder.mkdir(exist_ok=True)
    with rasterio.open(raster) as ds:
        rgb = ds.read().transpose(1, 2, 0)
    paths = []
    for n, tile_id in enumerate(tile_ids):
        t = g.tiles.set_index("tile_id").loc[tile_id]
        crop = rgb[t.row_off:t.row_off + t.height_px, t.col_off:t.col_off + t.width_px]
        paths.append(folder / f"frame_{n:02d}.png")
        Image.fromarray(crop).save(paths[-1])
    return paths
