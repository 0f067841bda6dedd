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
import tifffile
from PIL import Image, ImageDraw

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

def _geotiff(path: Path) -> tuple[tuple[float, float], tuple[float, float], int | None]:
    """(origin x/y, pixel size x/y, EPSG code) from a GeoTIFF's tags, without decoding pixels."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            scale = page.tags["ModelPixelScaleTag"].value
            tie = page.tags["ModelTiepointTag"].value
            keys = tif.geotiff_metadata or {}
    except (KeyError, tifffile.TiffFileError) as e:
        raise DataError(path, f"not a GeoTIFF with pixel scale and tie point ({e})") from None
    if tie[0] != 0 or tie[1] != 0:
        raise DataError(path, "tie point is not the upper-left pixel; unsupported")
    epsg = keys.get("ProjectedCSTypeGeoKey") or keys.get("GeographicTypeGeoKey")
    return (tie[3], tie[4]), (scale[0], scale[1]), (int(epsg) if epsg is not None else None)


def _stretch(raw: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> Image.Image:
    """16-bit panchromatic -> 8-bit grey with a percentile stretch over valid (non-zero) pixels."""
    valid = raw[raw > 0]
    lo, hi = np.percentile(valid, [lo_pct, hi_pct])
    grey = np.clip((raw.astype(np.float32) - lo) / max(hi - lo, 1.0) * 255.0, 0, 255)
    return Image.fromarray(grey.round().astype(np.uint8), "L")


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


def _utm_zone(epsg: int) -> tuple[int, bool]:
    if 32601 <= epsg <= 32660:
        return epsg - 32600, True
    if 32701 <= epsg <= 32760:
        return epsg - 32700, False
    raise ValueError(f"EPSG:{epsg} is not WGS84 / UTM")


# ---------------------------------------------------------------- SpaceNet

def load_vegas() -> Source:
    """Las Vegas: EPSG:4326 panchromatic image, road centre-lines and SpaceNet's road mask."""
    img_path = asset_path("spacenet_vegas_image")
    (lon0, lat0), (dlon, dlat), epsg = _geotiff(img_path)
    if epsg != 4326:
        raise DataError(img_path, f"expected EPSG:4326, found EPSG:{epsg}")
    raw = tifffile.imread(img_path)
    h, w = raw.shape
    mx, my = geo.metres_per_degree(lat0 - dlat * h / 2)
    sx, sy = dlon * mx, dlat * my

    def to_px(lon: float, lat: float) -> tuple[float, float]:
        return (lon - lon0) / dlon, (lat0 - lat) / dlat

    roads = []
    for f in _read_geojson(asset_path("spacenet_vegas_roads")):
        coords = f["geometry"]["coordinates"]
        lines = [coords] if f["geometry"]["type"] == "LineString" else coords
        props = f.get("properties") or {}
        for line in lines:
            roads.append((props.get("name") or None, np.array([to_px(*c[:2]) for c in line]),
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
        to_latlon=lambda x, y: (lat0 - y * dlat, lon0 + x * dlon))


def load_atlanta() -> Source:
    """Atlanta: UTM 16N panchromatic image with building footprints (rasterised for area fractions)."""
    img_path = asset_path("spacenet_atlanta_image")
    (e0, n0), (sx, sy), epsg = _geotiff(img_path)
    zone, north = _utm_zone(epsg)
    raw = tifffile.imread(img_path)
    h, w = raw.shape
    canvas = Image.new("L", (w, h), OTHER)
    draw = ImageDraw.Draw(canvas)
    buildings, rings_px = [], []
    for f in _read_geojson(asset_path("spacenet_atlanta_buildings")):
        geom = f["geometry"]
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for poly in polys:
            rings = [np.array([((x - e0) / sx, (n0 - y) / sy) for x, y, *_ in ring]) for ring in poly]
            area_px, centroid = geo.polygon_area_centroid(rings[0])
            holes = sum(geo.polygon_area_centroid(r)[0] for r in rings[1:])
            buildings.append((centroid, (area_px - holes) * sx * sy))
            rings_px.append(rings)
            draw.polygon([tuple(p) for p in rings[0]], fill=BUILDING)
            for hole in rings[1:]:
                draw.polygon([tuple(p) for p in hole], fill=OTHER)
    return Source(
        key="atlanta", region="atlanta", family="spacenet", image=_stretch(raw), sx=sx, sy=sy,
        classes=np.asarray(canvas, dtype=np.uint8).copy(), annotated=("building",),
        assets=("spacenet_atlanta_image", "spacenet_atlanta_buildings"),
        buildings=buildings, building_rings=rings_px,
        to_latlon=lambda x, y: geo.utm_to_wgs84(e0 + x * sx, n0 - y * sy, zone, north))


# ---------------------------------------------------------------- NEON

def _neon(key: str, region: str, image_asset: str, trees_asset: str, gsd: float,
          to_latlon=None, image: Image.Image | None = None) -> Source:
    image = image if image is not None else _open_rgb(asset_path(image_asset))
    w, h = image.size
    canvas = Image.new("L", (w, h), OTHER)
    draw = ImageDraw.Draw(canvas)
    centres = []
    for x0, y0, x1, y1 in _read_voc_boxes(asset_path(trees_asset)):
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=TREE)  # VOC max is inclusive-ish; keep box area exact
        centres.append(np.array([(x0 + x1) / 2, (y0 + y1) / 2]))
    return Source(key=key, region=region, family="neon", image=image, sx=gsd, sy=gsd,
                  classes=np.asarray(canvas, dtype=np.uint8).copy(), annotated=("tree",),
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
    (e0, n0), (sx, _), epsg = _geotiff(path)
    zone, north = _utm_zone(epsg)
    return _neon("osbs", "osbs", "neon_osbs", "neon_osbs_trees", sx,
                 to_latlon=lambda x, y: geo.utm_to_wgs84(e0 + x * sx, n0 - y * sx, zone, north))


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

