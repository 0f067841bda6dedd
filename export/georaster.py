"""Georeferenced rasters seen in metres: open, tile by ground size, cut RGB tiles, locate them.

Any raster rasterio reads works, in any CRS. A projected CRS is used as it is (its linear unit
converted to metres); a geographic or rotated one is viewed through a WarpedVRT in the local UTM
zone (pyproj's UTM query), so tile sizes and strides are true metres everywhere. Tile windows are
in the pixel grid of that metric view; centres and footprints go to WGS84 through pyproj.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import rasterio
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.geometry import Polygon

from data_assets.embedded.sources import stretch_limits, stretch_to_uint8
from data_assets.errors import DataError

WGS84 = CRS.from_epsg(4326)
STATS_MAX_SIDE = 2048  # stretch limits of non-8-bit rasters come from a read at most this big


@dataclass(frozen=True)
class TileWindow:
    row_off: int
    col_off: int
    height: int
    width: int


@dataclass
class MetricView:
    """An open raster in a metric CRS: `ds` is the dataset itself or its WarpedVRT."""
    path: Path
    ds: object  # rasterio DatasetReader or WarpedVRT
    source_crs: str
    metres_per_px: tuple[float, float]  # (x, y)
    bands: list[int]  # 1-based bands that make the RGB (or one grey band)
    limits: list[tuple[float, float]] | None  # per-band stretch for non-uint8 rasters

    @property
    def crs(self) -> str:
        return self.ds.crs.to_string()

    @cached_property
    def to_wgs84(self) -> Transformer:
        return Transformer.from_crs(self.ds.crs.to_wkt(), WGS84, always_xy=True)


def local_utm(ds) -> CRS:
    """The UTM zone holding the raster's centre (pyproj's CRS database, WGS84 datum)."""
    west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    lon, lat = (west + east) / 2, (south + north) / 2
    found = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    if not found:
        raise DataError(None, f"no UTM zone found for lon {lon:.5f}, lat {lat:.5f}")
    return CRS.from_epsg(int(found[0].code))


@contextlib.contextmanager
def open_metric(path: Path, resampling: str = "bilinear") -> Iterator[MetricView]:
    """Open `path` seen in metres. One-line DataError for unreadable or ungeoreferenced files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "raster file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError as e:
        raise DataError(path, f"not a raster rasterio can read ({e})") from None
    with src:
        if src.crs is None or src.transform.is_identity:
            raise DataError(path, "raster is not georeferenced (no CRS or no geotransform); "
                                  "a gallery needs to know where every pixel lies")
        rotated = src.transform.b != 0 or src.transform.d != 0
        crs = CRS.from_user_input(src.crs.to_wkt())
        bands = [1, 2, 3] if src.count >= 3 else [1]
        limits = _stretch_limits(src, bands) if src.dtypes[0] != "uint8" else None
        if crs.is_projected and not rotated:
            unit = crs.axis_info[0].unit_conversion_factor  # metres per CRS unit (feet rasters exist)
            mpp = (abs(src.transform.a) * unit, abs(src.transform.e) * unit)
            yield MetricView(path, src, src.crs.to_string(), mpp, bands, limits)
            return
        with WarpedVRT(src, crs=local_utm(src), resampling=Resampling[resampling], add_alpha=True) as vrt:
            mpp = (abs(vrt.transform.a), abs(vrt.transform.e))
            yield MetricView(path, vrt, src.crs.to_string(), mpp, bands, limits)


def _stretch_limits(src, bands: list[int]) -> list[tuple[float, float]]:
    """Per-band percentile stretch (the embedded dataset's, over valid non-zero pixels), computed on
    the whole raster (decimated when large) so every tile of it is scaled alike."""
    scale = max(1.0, max(src.width, src.height) / STATS_MAX_SIDE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    return [stretch_limits(src.read(b, out_shape=shape)) for b in bands]


def tile_windows(view: MetricView, tile_m: float, stride_m: float) -> list[TileWindow]:
    """Strided square (in metres) windows over the metric view; a raster smaller than one tile
    gives one window clipped to it."""
    w, h = view.ds.width, view.ds.height
    sx, sy = view.metres_per_px
    tw, th = min(w, max(1, round(tile_m / sx))), min(h, max(1, round(tile_m / sy)))
    step_x, step_y = max(1, round(stride_m / sx)), max(1, round(stride_m / sy))
    return [TileWindow(r, c, th, tw) for r in range(0, h - th + 1, step_y) for c in range(0, w - tw + 1, step_x)]


def valid_fraction(view: MetricView, win: TileWindow) -> float:
    """Share of the window holding data (not nodata, not outside a warped raster's footprint)."""
    mask = view.ds.dataset_mask(window=Window(win.col_off, win.row_off, win.width, win.height))
    return float((mask > 0).mean())


def read_rgb(view: MetricView, win: TileWindow) -> np.ndarray:
    """uint8 [H, W, 3] of a window: 3 bands as RGB or one band as grey; other dtypes stretched
    to 8 bit with the raster's limits (data_assets.embedded.sources.stretch_to_uint8)."""
    data = view.ds.read(view.bands, window=Window(win.col_off, win.row_off, win.width, win.height))
    if view.limits is not None:
        data = np.stack([stretch_to_uint8(band, *lim) for band, lim in zip(data, view.limits)])
    data = data.astype(np.uint8, copy=False)
    if data.shape[0] == 1:
        data = np.repeat(data, 3, axis=0)
    return np.ascontiguousarray(data.transpose(1, 2, 0))


def tile_geometry(view: MetricView, win: TileWindow) -> tuple[float, float, str, float]:
    """(centre lat, centre lon, footprint polygon WKT in WGS84 lon/lat, ground side metres)."""
    to_wgs84 = view.to_wgs84
    t = view.ds.transform
    corners = [(win.col_off, win.row_off), (win.col_off + win.width, win.row_off),
               (win.col_off + win.width, win.row_off + win.height), (win.col_off, win.row_off + win.height)]
    xs, ys = zip(*(t @ c for c in corners))
    lons, lats = to_wgs84.transform(xs, ys)
    cx, cy = t @ (win.col_off + win.width / 2, win.row_off + win.height / 2)
    lon, lat = to_wgs84.transform(cx, cy)
    ground_m = max(win.width * view.metres_per_px[0], win.height * view.metres_per_px[1])
    return float(lat), float(lon), Polygon(zip(lons, lats)).wkt, float(ground_m)
