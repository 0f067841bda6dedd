"""Geometry for the embedded dataset, on the field's libraries.

- pyproj: projected CRS (UTM) -> WGS84 lat/lon (`Transformer`), ground distances on the WGS84
  ellipsoid (`Geod`) for the size of a pixel of a lat/lon image;
- shapely: clipping road centre-lines to a tile, road crossings, footprint areas and centroids;
- rasterio (in sources.py): GeoTIFF georeferencing and rasterising vector labels.

Everything works in source-pixel coordinates (x right, y down) of one image, with the metres per
pixel along x and y passed in (`sx`, `sy`), because the Las Vegas image is in degrees and its
pixels are not square on the ground. What no library offers is here: the axial (undirected) mean
bearing of a road and the arm count that tells a junction from a street that merely continues.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pyproj import CRS, Geod, Transformer
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels (x1, y1 exclusive)

WGS84 = Geod(ellps="WGS84")


@lru_cache(maxsize=None)
def _to_wgs84(epsg: int) -> Transformer:
    return Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)


def to_latlon(x: float, y: float, epsg: int) -> tuple[float, float]:
    """A point of a projected CRS (e.g. UTM easting/northing) as WGS84 (lat, lon) degrees."""
    lon, lat = _to_wgs84(epsg).transform(x, y)
    return lat, lon


def utm_to_wgs84(easting: float, northing: float, zone: int, north: bool = True) -> tuple[float, float]:
    """WGS84 / UTM (EPSG:326zz north, 327zz south) -> (lat, lon) degrees."""
    return to_latlon(easting, northing, (32600 if north else 32700) + zone)


def lonlat_pixel_size_m(lon: float, lat: float, dlon: float, dlat: float) -> tuple[float, float]:
    """Ground size (metres east-west, north-south) of a dlon x dlat degree pixel centred at (lon, lat),
    from geodesics on the WGS84 ellipsoid."""
    _, _, sx = WGS84.inv(lon - dlon / 2, lat, lon + dlon / 2, lat)
    _, _, sy = WGS84.inv(lon, lat - dlat / 2, lon, lat + dlat / 2)
    return sx, sy


def _lines(geom: BaseGeometry) -> list[LineString]:
    """The line parts of a clipping result (points where a line only touches the edge are dropped)."""
    if geom.is_empty:
        return []
    if isinstance(geom, LineString):
        return [geom]
    return [g for part in getattr(geom, "geoms", []) for g in _lines(part)]


def clipped_segments(line: np.ndarray, win: Window) -> list[tuple[np.ndarray, np.ndarray]]:
    """The straight pieces of a polyline (N x 2 pixel coords) that fall inside a window (shapely)."""
    out = []
    for part in _lines(LineString(line).intersection(box(*win))):
        pts = np.asarray(part.coords)[:, :2]
        out += [(p, q) for p, q in zip(pts[:-1], pts[1:]) if np.any(p != q)]
    return out


def length_and_bearing(segments: list[tuple[np.ndarray, np.ndarray]], sx: float, sy: float) -> tuple[float, float]:
    """Total length in metres and the length-weighted axial bearing (degrees clockwise from north, [0, 180))."""
    total, c2, s2 = 0.0, 0.0, 0.0
    for p, q in segments:
        east, north = (q[0] - p[0]) * sx, -(q[1] - p[1]) * sy
        length = math.hypot(east, north)
        theta = math.atan2(east, north)  # bearing of this segment
        total += length
        c2 += length * math.cos(2 * theta)  # doubled angles: a road has no direction
        s2 += length * math.sin(2 * theta)
    bearing = (math.degrees(math.atan2(s2, c2)) / 2) % 180.0
    return total, bearing


def _points(geom: BaseGeometry) -> list[np.ndarray]:
    if geom.is_empty:
        return []
    if isinstance(geom, Point):
        return [np.array(geom.coords[0][:2])]
    return [p for part in getattr(geom, "geoms", []) for p in _points(part)]


def _arms(line: LineString, pt: np.ndarray, tol: float) -> int:
    """How many road arms leave `pt` along this polyline: 1 at an end, 2 through its middle, 0 if off it."""
    p = Point(pt)
    if line.distance(p) > tol:
        return 0
    ends = line.boundary  # the two end points (empty for a closed ring)
    return 1 if not ends.is_empty and ends.distance(p) <= tol else 2


def junctions(lines: list[np.ndarray], tol_px: float) -> list[np.ndarray]:
    """Points where roads meet with at least three arms (T, X, Y junctions); ends that merely continue
    one street (two arms) are not junctions. Candidates: crossings and ends touching another road."""
    geoms = [LineString(line) for line in lines]
    cands: list[np.ndarray] = []
    for i, a in enumerate(geoms):
        for b in geoms[i + 1:]:
            cands += _points(a.intersection(b))  # crossings (shared stretches are not junctions)
            for end, other in [(Point(c), b) for c in (a.coords[0], a.coords[-1])] + \
                              [(Point(c), a) for c in (b.coords[0], b.coords[-1])]:
                if other.distance(end) <= tol_px:
                    nearest = other.interpolate(other.project(end))
                    cands.append((np.array(end.coords[0][:2]) + np.array(nearest.coords[0][:2])) / 2)
    points: list[np.ndarray] = []
    for c in cands:  # merge candidates that describe the same junction
        if any(np.hypot(*(c - p)) <= 2 * tol_px for p in points):
            continue
        if sum(_arms(g, c, tol_px) for g in geoms) >= 3:
            points.append(c)
    return points


def footprint(rings: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """Area (input units squared, holes removed) and area centroid of a polygon given as its
    exterior ring and hole rings (shapely)."""
    poly = Polygon(rings[0], holes=rings[1:])
    if poly.area == 0:
        return 0.0, np.asarray(rings[0]).mean(axis=0)
    return float(poly.area), np.array(poly.centroid.coords[0])


def inside(pt: np.ndarray, win: Window) -> bool:
    """The point lies in the half-open window (a point on a shared edge belongs to one tile only)."""
    x0, y0, x1, y1 = win
    return bool(x0 <= pt[0] < x1 and y0 <= pt[1] < y1)


def overlaps(a: Window, b: Window) -> bool:
    """Positive-area intersection of two integer windows (touching edges do not overlap)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
