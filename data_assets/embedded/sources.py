"""Load the registry-shipped imagery and vectors into one shape: `Source`.

A Source is one georeferenced (or at least metric) image plus everything its package annotates,
all in that image's pixel coordinates: road centre-lines, building footprints, tree-crown boxes,
and a class raster (other / road / building / tree) from which area fractions are read.
Only what a source really annotates is filled in; `annotated` says which classes that is.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
import rasterio.features
import tifffile
from affine import Affine
from PIL import Image
from shapely import geometry as shp

from data_assets.embedded import geometry as geo
from data_assets.errors import DataError
from data_assets.io import sha256_file
from data_assets.registry_assets import ASSETS, asset_path

OTHER, ROAD, BUILDING, TREE = 0, 1, 2, 3  # class raster values
CLASS_NAMES = {OTHER: "other", ROAD: "road", BUILDING: "building", TREE: "tree"}

LICENCES = {
    "solaris": ("CC BY-SA 4.0", "SpaceNet (spacenet.ai; imagery Maxar/DigitalGlobe, labels SpaceNet partners), "
                                "redistributed in the solaris package by CosmiQ Works"),
    "deepforest": ("CC0 1.0", "NEON (National Ecological Observatory Network, Battelle/NSF) Airborne Observation "
                              "Platform orthophotos; tree-crown boxes from the DeepForest project (Weecology)"),
}


@dataclass
class Source:
    key: str  # short id used in location ids, e.g. "vegas", "yell2"
    region: str  # ground-truth "region" value
    family: str  # "spacenet" (street_map queries) or "neon" (uav queries)
    image: Image.Image  # "L" for SpaceNet panchromatic (stretched to 8 bit), "RGB" for NEON
    sx: float  # metres per pixel along x
    sy: float  # metres per pixel along y
    classes: np.ndarray  # uint8 class raster, same size as image
    annotated: tuple[str, ...]  # classes this source's labels cover; others are unknown (null in ground truth)
    assets: tuple[str, ...]  # registry asset names read
    roads: list[tuple[str | None, np.ndarray, int]] = field(default_factory=list)  # (name, polyline px, lanes)
    junctions: list[np.ndarray] = field(default_factory=list)  # road junction points, px
    buildings: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (area centroid px, area m2)
    building_rings: list[list[np.ndarray]] = field(default_factory=list)  # exterior + holes, px (for the map)
    trees: list[np.ndarray] = field(default_factory=list)  # tree-box centres, px
    to_latlon: Callable[[float, float], tuple[float, float]] | None = None  # px -> (lat, lon) where honest

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


# ---------------------------------------------------------------- provenance

def provenance(name: str) -> dict:
    """Where a registry file came from, its hash and its licence."""
    dist, rel, what = ASSETS[name]
    path = asset_path(name)
    licence, attribution = LICENCES[dist]
    return {"asset": name, "package": dist, "version": metadata.version(dist), "path_in_package": rel,
            "sha256": sha256_file(path), "bytes": path.stat().st_size, "description": what,
            "licence": licence, "attribution": attribution}


# ---------------------------------------------------------------- readers

def _geotiff(path: Path) -> tuple[Affine, int | None]:
    """(pixel -> CRS affine transform, EPSG code) of a GeoTIFF, read with rasterio (no pixels decoded)."""
    try:
        with rasterio.open(path) as ds:
            transform, crs = ds.transform, ds.crs
    except rasterio.errors.RasterioIOError as e:
        raise DataError(path, f"not a readable GeoTIFF ({e})") from None
    if crs is None or transform.is_identity:
        raise DataError(path, "GeoTIFF has no georeference (CRS and geotransform)")
    if transform.b != 0 or transform.d != 0:
        raise DataError(path, "rotated GeoTIFF (non north-up geotransform); unsupported")
    return transform, crs.to_epsg()


def _rasterize(shapes: list, size: tuple[int, int], transform: Affine = Affine.identity()) -> np.ndarray:
    """Class raster (uint8, h x w) of (geometry, class value) pairs, later pairs painted over earlier
    ones; a pixel takes a class when its centre lies inside (rasterio.features.rasterize)."""
    w, h = size
    if not shapes:
        return np.full((h, w), OTHER, dtype=np.uint8)
    return rasterio.features.rasterize(shapes, out_shape=(h, w), transform=transform, fill=OTHER, dtype="uint8")


def _stretch(raw: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> Image.Image:
    """16-bit panchromatic -> 8-bit grey with a percentile stretch over valid (non-zero) pixels."""
    return Image.fromarray(stretch_to_uint8(raw, *stretch_limits(raw, lo_pct, hi_pct)), "L")


def stretch_limits(raw: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """The (low, high) percentiles of the valid (non-zero) pixels: computed once per raster, so
    tiles cut from it (the satellite gallery reads windows) get the same stretch as the whole."""
    valid = raw[raw > 0]
    lo, hi = np.percentile(valid, [lo_pct, hi_pct]) if valid.size else (0.0, 1.0)
    return float(lo), float(hi)


def stretch_to_uint8(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    grey = np.clip((raw.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255.0, 0, 255)
    return grey.round().astype(np.uint8)


def _read_geojson(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["features"]
    except (ValueError, KeyError) as e:
        raise DataError(path, f"not a GeoJSON FeatureCollection ({e})") from None


def _read_voc_boxes(path: Path) -> list[tuple[float, float, float, float]]:
    """Pascal VOC <bndbox> list (xmin, ymin, xmax, ymax) in pixels."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(path, f"not valid Pascal VOC XML ({e})") from None
    boxes = []
    for box in root.iter("bndbox"):
        boxes.append(tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


def _projected_epsg(path: Path, epsg: int | None) -> int:
    """The EPSG code of a projected (metric) CRS, or a DataError naming the file."""
    if epsg is None or not 32601 <= epsg <= 32760:
        raise DataError(path, f"expected a WGS84 / UTM CRS, found EPSG:{epsg}")
    return epsg


# ---------------------------------------------------------------- SpaceNet

def load_vegas() -> Source:
    """Las Vegas: EPSG:4326 panchromatic image, road centre-lines and SpaceNet's road mask."""
    img_path = asset_path("spacenet_vegas_image")
    transform, epsg = _geotiff(img_path)
    if epsg != 4326:
        raise DataError(img_path, f"expected EPSG:4326, found EPSG:{epsg}")
    raw = tifffile.imread(img_path)
    h, w = raw.shape
    centre_lon, centre_lat = transform @ (w / 2, h / 2)
    sx, sy = geo.lonlat_pixel_size_m(centre_lon, centre_lat, transform.a, -transform.e)
    to_px = ~transform  # (lon, lat) -> (col, row)

    roads = []
    for f in _read_geojson(asset_path("spacenet_vegas_roads")):
        coords = f["geometry"]["coordinates"]
        lines = [coords] if f["geometry"]["type"] == "LineString" else coords
        props = f.get("properties") or {}
        for line in lines:
            roads.append((props.get("name") or None, np.array([to_px @ tuple(c[:2]) for c in line]),
                          int(props.get("lane_number") or 1)))
    mask = tifffile.imread(asset_path("spacenet_vegas_road_mask"))
    if mask.shape != raw.shape:
        raise DataError(asset_path("spacenet_vegas_road_mask"), f"mask {mask.shape} != image {raw.shape}")
    classes = np.where(mask > 0, ROAD, OTHER).astype(np.uint8)
    return Source(
        key="vegas", region="las_vegas", family="spacenet", image=_stretch(raw), sx=sx, sy=sy,
        classes=classes, annotated=("road",),
        assets=("spacenet_vegas_image", "spacenet_vegas_roads", "spacenet_vegas_road_mask"),
        roads=roads, junctions=geo.junctions([r[1] for r in roads], tol_px=1.0 / sx),
        to_latlon=lambda x, y: (transform @ (x, y))[::-1])


def load_atlanta() -> Source:
    """Atlanta: UTM 16N panchromatic image with building footprints (rasterised for area fractions)."""
    img_path = asset_path("spacenet_atlanta_image")
    transform, epsg = _geotiff(img_path)
    epsg = _projected_epsg(img_path, epsg)
    sx, sy = transform.a, -transform.e
    raw = tifffile.imread(img_path)
    h, w = raw.shape
    to_px = ~transform
    buildings, rings_px, shapes = [], [], []
    for f in _read_geojson(asset_path("spacenet_atlanta_buildings")):
        geom = f["geometry"]
        shapes.append((shp.shape(geom), BUILDING))  # holes stay unpainted
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for poly in polys:
            rings = [np.array([to_px @ (x, y) for x, y, *_ in ring]) for ring in poly]
            area_px, centroid = geo.footprint(rings)
            buildings.append((centroid, area_px * sx * sy))
            rings_px.append(rings)
    return Source(
        key="atlanta", region="atlanta", family="spacenet", image=_stretch(raw), sx=sx, sy=sy,
        classes=_rasterize(shapes, (w, h), transform), annotated=("building",),
        assets=("spacenet_atlanta_image", "spacenet_atlanta_buildings"),
        buildings=buildings, building_rings=rings_px,
        to_latlon=lambda x, y: geo.to_latlon(*(transform @ (x, y)), epsg))


# ---------------------------------------------------------------- NEON

def _neon(key: str, region: str, image_asset: str, trees_asset: str, gsd: float,
          to_latlon=None, image: Image.Image | None = None) -> Source:
    image = image if image is not None else _open_rgb(asset_path(image_asset))
    boxes = _read_voc_boxes(asset_path(trees_asset))
    centres = [np.array([(x0 + x1) / 2, (y0 + y1) / 2]) for x0, y0, x1, y1 in boxes]
    # in pixel coordinates: a box [x0, x1) x [y0, y1) covers exactly the pixels whose centres it holds
    classes = _rasterize([(shp.box(*b), TREE) for b in boxes], image.size)
    return Source(key=key, region=region, family="neon", image=image, sx=gsd, sy=gsd,
                  classes=classes, annotated=("tree",),
                  assets=(image_asset, trees_asset), trees=centres, to_latlon=to_latlon)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:  # PIL decodes the LZW GeoTIFF that tifffile needs imagecodecs for
            im.load()
            return im.convert("RGB")
    except OSError as e:
        raise DataError(path, f"image cannot be decoded ({e})") from None


def load_osbs() -> Source:
    path = asset_path("neon_osbs")
    transform, epsg = _geotiff(path)
    epsg = _projected_epsg(path, epsg)
    return _neon("osbs", "osbs", "neon_osbs", "neon_osbs_trees", transform.a,
                 to_latlon=lambda x, y: geo.to_latlon(*(transform @ (x, y)), epsg))


def load_sources() -> list[Source]:
    """Every source the embedded dataset is cut from.

    The YELL crops carry only their NEON 1 km tile origin in the file name (not where inside the tile
    the crop lies) and the SOAP PNGs carry no georeference: their lat/lon stay null. SOAP_031 has no
    tree annotation, so its ground truth could not be stated honestly: it is not used.
    """
    neon_gsd = 0.1  # NEON AOP RGB orthophotos are 10 cm
    return [
        load_vegas(),
        load_atlanta(),
        _neon("yell2", "yellowstone", "neon_yell_crop2", "neon_yell_crop2_trees", neon_gsd),
        _neon("yell1", "yellowstone", "neon_yell_crop", "neon_yell_crop_trees", neon_gsd),
        load_osbs(),
        _neon("soap061", "soap", "neon_soap_061", "neon_soap_061_trees", neon_gsd),
    ]

