"""Small planar geometry for the embedded dataset: clipping, lengths, bearings, junctions, UTM.

Everything works in source-pixel coordinates (x right, y down) of one image, with the metres per
pixel along x and y passed in (`sx`, `sy`), because the Las Vegas image is in degrees and its
pixels are not square on the ground. No GDAL/pyproj/shapely: the few formulas needed are here.
"""
from __future__ import annotations

import math

import numpy as np

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels (x1, y1 exclusive)

# WGS84 ellipsoid
_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)


def metres_per_degree(lat_deg: float) -> tuple[float, float]:
    """(metres per degree of longitude, of latitude) at a latitude on the WGS84 ellipsoid."""
    phi = math.radians(lat_deg)
    w = math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    n = _A / w  # prime-vertical radius
    m = _A * (1 - _E2) / w**3  # meridional radius
    return math.radians(1) * n * math.cos(phi), math.radians(1) * m


def utm_to_wgs84(easting: float, northing: float, zone: int, north: bool = True) -> tuple[float, float]:
    """Inverse transverse Mercator (Snyder 1987, eqs. 8-18..8-25): (lat, lon) in degrees, ~mm accurate."""
    k0 = 0.9996
    e2 = _E2
    ep2 = e2 / (1 - e2)
    x = easting - 500000.0
    y = northing if north else northing - 10000000.0
    mu = y / k0 / (_A * (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256))
    e1 = (1 - math.sqrt(1 - e2)) / (1 + math.sqrt(1 - e2))
    phi1 = (mu + (3 * e1 / 2 - 27 * e1**3 / 32) * math.sin(2 * mu)
            + (21 * e1**2 / 16 - 55 * e1**4 / 32) * math.sin(4 * mu)
            + (151 * e1**3 / 96) * math.sin(6 * mu) + (1097 * e1**4 / 512) * math.sin(8 * mu))
    s, c, t = math.sin(phi1), math.cos(phi1), math.tan(phi1)
    c1 = ep2 * c**2
    t1 = t**2
    n1 = _A / math.sqrt(1 - e2 * s**2)
    r1 = _A * (1 - e2) / (1 - e2 * s**2) ** 1.5
    d = x / (n1 * k0)
    lat = phi1 - (n1 * t / r1) * (d**2 / 2 - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * ep2) * d**4 / 24
                                  + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * ep2 - 3 * c1**2) * d**6 / 720)
    lon = (d - (1 + 2 * t1 + c1) * d**3 / 6
           + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * ep2 + 24 * t1**2) * d**5 / 120) / c
    lon0 = math.radians((zone - 1) * 6 - 180 + 3)
    return math.degrees(lat), math.degrees(lon0 + lon)


def clip_segment(p: np.ndarray, q: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray] | None:
    """Liang-Barsky: the part of segment p->q inside the window, or None."""
    x0, y0, x1, y1 = win
    d = q - p
    t0, t1 = 0.0, 1.0
    for den, num in ((-d[0], p[0] - x0), (d[0], x1 - p[0]), (-d[1], p[1] - y0), (d[1], y1 - p[1])):
        if den == 0:
            if num < 0:
                return None
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return p + t0 * d, p + t1 * d


def clipped_segments(line: np.ndarray, win: Window) -> list[tuple[np.ndarray, np.ndarray]]:
    """The segments of a polyline (N x 2 pixel coords) that fall inside a window."""
    out = []
    for p, q in zip(line[:-1], line[1:]):
        seg = clip_segment(p, q, win)
        if seg is not None and np.any(seg[0] != seg[1]):
            out.append(seg)
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


def _closest_on_segment(pt: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray]:
    d = q - p
    den = float(d @ d)
    t = 0.0 if den == 0 else float(np.clip((pt - p) @ d / den, 0.0, 1.0))
    c = p + t * d
    return float(np.hypot(*(pt - c))), c


def _segment_crossing(p1, p2, q1, q2) -> np.ndarray | None:
    r, s = p2 - p1, q2 - q1
    den = r[0] * s[1] - r[1] * s[0]
    if den == 0:
        return None
    w = q1 - p1
    t = (w[0] * s[1] - w[1] * s[0]) / den
    u = (w[0] * r[1] - w[1] * r[0]) / den
    if 0 <= t <= 1 and 0 <= u <= 1:
        return p1 + t * r
    return None


def _arms(line: np.ndarray, pt: np.ndarray, tol: float) -> int:
    """How many road arms leave `pt` along this polyline: 1 at an end, 2 through its middle, 0 if off it."""
    if min(_closest_on_segment(pt, p, q)[0] for p, q in zip(line[:-1], line[1:])) > tol:
        return 0
    at_end = min(np.hypot(*(pt - line[0])), np.hypot(*(pt - line[-1]))) <= tol
    return 1 if at_end else 2


def junctions(lines: list[np.ndarray], tol_px: float) -> list[np.ndarray]:
    """Points where roads meet with at least three arms (T, X, Y junctions); ends that merely continue
    one street (two arms) are not junctions. Candidates: crossings and ends touching another road."""
    cands: list[np.ndarray] = []
    for i, a in enumerate(lines):
        for j, b in enumerate(lines):
            if j <= i:
                continue
            for p1, p2 in zip(a[:-1], a[1:]):
                for q1, q2 in zip(b[:-1], b[1:]):
                    x = _segment_crossing(p1, p2, q1, q2)
                    if x is not None:
                        cands.append(x)
            for end, other in ((a[0], b), (a[-1], b), (b[0], a), (b[-1], a)):
                dist, c = min((_closest_on_segment(end, p, q) for p, q in zip(other[:-1], other[1:])),
                              key=lambda dc: dc[0])
                if dist <= tol_px:
                    cands.append((end + c) / 2)
    points: list[np.ndarray] = []
    for c in cands:  # merge candidates that describe the same junction
        if any(np.hypot(*(c - p)) <= 2 * tol_px for p in points):
            continue
        if sum(_arms(line, c, tol_px) for line in lines) >= 3:
            points.append(c)
    return points


def polygon_area_centroid(ring: np.ndarray) -> tuple[float, np.ndarray]:
    """Shoelace area (in squared input units, positive) and area centroid of a closed or open ring."""
    x, y = ring[:, 0], ring[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    if a == 0:
        return 0.0, ring.mean(axis=0)
    cx = ((x + xn) * cross).sum() / (6 * a)
    cy = ((y + yn) * cross).sum() / (6 * a)
    return abs(float(a)), np.array([cx, cy])


def inside(pt: np.ndarray, win: Window) -> bool:
    x0, y0, x1, y1 = win
    return bool(x0 <= pt[0] < x1 and y0 <= pt[1] < y1)


def overlaps(a: Window, b: Window) -> bool:
    """Positive-area intersection (touching edges do not overlap)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
