"""The embedded default's gallery: the registry imagery the embedded dataset is cut from, as maps.

Rasters (data_assets/registry_assets.py):
- SpaceNet Las Vegas (EPSG:4326, viewed in UTM 11N) and Atlanta (UTM 16N) GeoTIFFs, uint16
  panchromatic, stretched exactly as the embedded dataset stretches them (whole-raster percentiles).
- NEON OSBS (GeoTIFF, UTM 17N).
- NEON YELL crops (PNG, no geotransform). Their file name carries only the NEON 1 km mosaic tile
  (site, easting, northing of its south-west corner), not where inside that tile the crop lies,
  which is why the embedded dataset leaves their lat/lon null. Here each gets a GeoTIFF copy placed
  NOMINALLY with its top-left pixel at the tile's north-west corner, 10 cm pixels, in the site's
  UTM zone. Distances inside a crop are then exact (known GSD, local UTM), the absolute position is
  off by an unknown offset of at most ~1.4 km, and frames of these crops are scored against the
  same nominal frame (truth "nominal_neon_tile": reported apart from "manifest" truth).
- NEON SOAP carries no georeference at all: left out (it has no test frames either).

Tile size per source = the embedded satellite tile's ground side (embedded.spacenet_tile_m,
embedded.neon_tile_m), so a gallery tile shows the same ground as the tiles the encoder was trained
on; the stride is gallery.embedded_stride_fraction of it (default 1/4: 16 m and 8 m), finer than the
dataset's own stride so a frame's position is resolved to a few metres. NEON tiles get the embedded
dataset's satellite degradation (data_assets.embedded.views.satellite), as in training.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data_assets.embedded.config import EmbeddedConfig
from data_assets.errors import DataError
from data_assets.io import atomic_path
from data_assets.registry_assets import asset_path
from export.gallery import GalleryConfig, ModelHandle, build_gallery

NEON_SITE_EPSG = {"YELL": 32612, "OSBS": 32617}  # NEON site -> its UTM zone (WGS84)
NEON_TILE_M = 1000.0  # NEON AOP mosaic tiles are 1 km, named by their south-west corner
NEON_GSD_M = 0.1
NEON_NAME = re.compile(r"^\d{4}_(?P<site>[A-Z]{4})_\d+_(?P<e>\d{6})_(?P<n>\d{7})_")


@dataclass(frozen=True)
class EmbeddedRaster:
    key: str  # the embedded dataset's source key (location ids start with it)
    family: str  # "spacenet" or "neon"
    path: Path  # a georeferenced raster rasterio reads
    truth: str  # "manifest" (true georeference) or "nominal_neon_tile"


def georeference_neon_png(png: Path, out: Path) -> Path:
    """A GeoTIFF copy of a NEON crop, placed nominally from its file name (see module docstring)."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    m = NEON_NAME.match(png.name)
    if not m or m["site"] not in NEON_SITE_EPSG:
        raise DataError(png, "no NEON site/tile origin in the file name (or unknown site); cannot georeference")
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    transform = from_origin(float(m["e"]), float(m["n"]) + NEON_TILE_M, NEON_GSD_M, NEON_GSD_M)
    with atomic_path(out) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=3,
                           dtype="uint8", crs=f"EPSG:{NEON_SITE_EPSG[m['site']]}", transform=transform,
                           compress="deflate") as ds:
            ds.write(rgb)
            ds.update_tags(georeference="nominal: top-left at the NEON 1 km tile's north-west corner",
                           source=png.name)
    return out


def embedded_rasters(work_dir: Path) -> list[EmbeddedRaster]:
    work_dir = Path(work_dir)
    rasters = [EmbeddedRaster("vegas", "spacenet", asset_path("spacenet_vegas_image"), "manifest"),
               EmbeddedRaster("atlanta", "spacenet", asset_path("spacenet_atlanta_image"), "manifest")]
    for key, asset in (("yell2", "neon_yell_crop2"), ("yell1", "neon_yell_crop")):
        png = asset_path(asset)
        tif = georeference_neon_png(png, work_dir / f"{png.stem}.nominal.tif")
        rasters.append(EmbeddedRaster(key, "neon", tif, "nominal_neon_tile"))
    rasters.append(EmbeddedRaster("osbs", "neon", asset_path("neon_osbs"), "manifest"))
    return rasters


def neon_satellite_hook(embedded: EmbeddedConfig):
    """NEON 10 cm tile -> the embedded dataset's degraded satellite look (views.satellite)."""
    from data_assets.embedded.sources import Source
    from data_assets.embedded.views import satellite

    def hook(img, gsd_m: float):
        src = Source(key="gallery", region="gallery", family="neon", image=img, sx=gsd_m, sy=gsd_m,
                     classes=np.zeros((1, 1), np.uint8), annotated=(), assets=())
        return satellite(src, (0, 0, *img.size), embedded.tile_px, embedded.satellite_gsd_m)
    return hook


def build_embedded_gallery(embedded: EmbeddedConfig, cfg: GalleryConfig, model: ModelHandle,
                           out_dir: Path, work_dir: Path, root: Path | None = None) -> dict:
    rasters = embedded_rasters(work_dir)
    hook = neon_satellite_hook(embedded)
    sizes, hooks = [], []
    for r in rasters:
        tile_m = embedded.spacenet_tile_m if r.family == "spacenet" else embedded.neon_tile_m
        sizes.append((tile_m, tile_m * cfg.embedded_stride_fraction))
        hooks.append(hook if r.family == "neon" else None)
    summary = build_gallery([r.path for r in rasters], model, cfg, out_dir, hooks=hooks, sizes_m=sizes, root=root)
    return {**summary, "sizes_m": {r.key: s for r, s in zip(rasters, sizes)},
            "left_out": {"soap061": "no georeference (SOAP PNGs carry none)"}}


def embedded_test_frames(manifest_path: Path, base_dir: Path, rasters: list[EmbeddedRaster],
                         modalities: list[str]) -> pd.DataFrame:
    """Test frames with a known true position: the manifest's lat/lon, or (YELL) the centre of the
    frame's source window through the same nominal transform the gallery raster uses."""
    import rasterio
    from pyproj import Transformer

    from data_assets.manifest import read_manifest, resolve_query

    df = read_manifest(manifest_path)
    df = df[(df.kind == "pair") & (df.split == "test") & df.modality.isin(modalities)]
    by_key = {r.key: r for r in rasters}
    rows = []
    for _, row in df.iterrows():
        key = row.location_id.split("/")[-1].rsplit("_x", 1)[0]
        raster = by_key.get(key)
        if pd.notna(row.lat) and pd.notna(row.lon):
            lat, lon, truth = float(row.lat), float(row.lon), "manifest"
        elif raster is not None and raster.truth == "nominal_neon_tile":
            x0, y0, x1, y1 = json.loads(row.query_meta)["source_window_px"]
            with rasterio.open(raster.path) as ds:
                x, y = ds.transform @ ((x0 + x1) / 2, (y0 + y1) / 2)
                lon, lat = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
            truth = raster.truth
        else:
            continue
        rows.append({"path": str(resolve_query(row, base_dir)), "modality": row.modality, "lat": lat,
                     "lon": lon, "truth": truth, "location_id": row.location_id})
    if not rows:
        raise DataError(manifest_path, f"no test frame of {modalities} has a known position")
    return pd.DataFrame(rows)
