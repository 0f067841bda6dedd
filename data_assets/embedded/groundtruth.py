"""Per-location ground truth, computed from the source's own labels clipped to the tile.

This is what GLEAM-X's explanation stage states as facts, so every number comes from the
vectors / masks / boxes of the tile's window, never from the rendered images. Each source labels
only some classes (Las Vegas: roads; Atlanta: buildings; NEON: trees). `annotated` lists them, and
everything about an unannotated class is null (or [] for roads): Las Vegas has unlabelled houses,
Atlanta unlabelled trees and roads, a Yellowstone crop an unlabelled road, so "0" would be a lie.
"""
from __future__ import annotations

import numpy as np

from data_assets.embedded import geometry as geo
from data_assets.embedded.sources import BUILDING, ROAD, TREE, Source

CLASSES = ("road", "building", "tree")  # the labelled classes, in schema order
CLASS_VALUE = {"road": ROAD, "building": BUILDING, "tree": TREE}
MIN_ROAD_M = 2.0  # a road clipped to less than this inside the tile is a corner touch, not a road in it
MIN_DOMINANT_SHARE = 0.15  # below this, no annotated class is "the most visible cover": dominant = "other"


# What each ground-truth key means (metadata.json "ground_truth_schema"; DATASET.md shows the same).
SCHEMA = {
    "region": "las_vegas | atlanta | yellowstone | osbs | soap: where the tile is",
    "annotated": "list of the classes (road, building, tree) this source labels; every value about another "
                 "class is null (roads: [], intersections: null) because it is unknown, not absent",
    "gsd_m": "metres per pixel of the saved satellite tile",
    "extent_m": "[width_m, height_m], ground footprint of the satellite tile",
    "land_cover": "{road, building, tree, other}: area fractions 0..1 of the annotated classes, null for the "
                  "others; other = 1 - sum of the annotated fractions (not one of the annotated classes)",
    "roads": "[{name: str|null, bearing_deg: [0,180), length_m}] centre-lines clipped to the tile; [] when "
             "roads are not annotated",
    "intersections": "int, junctions with >= 3 road arms inside the tile; null when roads are not annotated",
    "buildings": "{count, mean_area_m2, largest_area_m2}: footprints whose area centroid lies in the tile "
                 "(areas null when count is 0); all null when buildings are not annotated",
    "trees": "{count, per_hectare}: crown boxes whose centre lies in the tile; both null when trees are not "
             "annotated",
    "dominant": f"road | building | tree | other: the annotated class with the largest land_cover share if "
                f"that share is >= {MIN_DOMINANT_SHARE}, else other; never an unannotated class",
}


def annotated(src: Source) -> list[str]:
    return [c for c in CLASSES if c in src.annotated]


def land_cover(src: Source, win: geo.Window) -> dict[str, float | None]:
    """Area fractions of the annotated classes (null for the others); "other" = 1 - their sum,
    i.e. "none of the annotated classes", which may well hold unannotated roads, houses or trees."""
    x0, y0, x1, y1 = win
    counts = np.bincount(src.classes[y0:y1, x0:x1].ravel(), minlength=4).astype(float)
    frac = counts / counts.sum()
    known = annotated(src)
    cover = {c: (round(float(frac[CLASS_VALUE[c]]), 4) if c in known else None) for c in CLASSES}
    cover["other"] = round(1.0 - float(sum(frac[CLASS_VALUE[c]] for c in known)), 4)
    return cover


def roads_in(src: Source, win: geo.Window) -> list[dict]:
    out = []
    for name, line, _lanes in src.roads:
        segments = geo.clipped_segments(line, win)
        length, bearing = geo.length_and_bearing(segments, src.sx, src.sy)
        if length >= MIN_ROAD_M:
            out.append({"name": name, "bearing_deg": round(bearing, 1), "length_m": round(length, 1)})
    return out


def buildings_in(src: Source, win: geo.Window) -> dict:
    """Buildings whose area centroid lies in the tile; areas are whole-footprint areas."""
    if "building" not in src.annotated:
        return {"count": None, "mean_area_m2": None, "largest_area_m2": None}
    areas = [area for centroid, area in src.buildings if geo.inside(centroid, win)]
    if not areas:
        return {"count": 0, "mean_area_m2": None, "largest_area_m2": None}
    return {"count": len(areas), "mean_area_m2": round(float(np.mean(areas)), 1),
            "largest_area_m2": round(float(max(areas)), 1)}


def trees_in(src: Source, win: geo.Window) -> dict:
    if "tree" not in src.annotated:
        return {"count": None, "per_hectare": None}
    count = sum(geo.inside(c, win) for c in src.trees)
    hectares = (win[2] - win[0]) * src.sx * (win[3] - win[1]) * src.sy / 1e4
    return {"count": int(count), "per_hectare": round(count / hectares, 1)}


def dominant(cover: dict[str, float | None]) -> str:
    """The annotated class with the largest share, if it covers at least MIN_DOMINANT_SHARE of the
    tile; otherwise "other". Never an unannotated class (its share is null, i.e. unknown)."""
    known = {c: cover[c] for c in CLASSES if cover[c] is not None}
    best = max(known, key=known.get, default=None)  # ties go to the first class in schema order
    return best if best is not None and known[best] >= MIN_DOMINANT_SHARE else "other"


def ground_truth(src: Source, win: geo.Window, tile_px: int) -> dict:
    width_m, height_m = (win[2] - win[0]) * src.sx, (win[3] - win[1]) * src.sy
    cover = land_cover(src, win)
    roads_known = "road" in src.annotated
    return {
        "region": src.region,
        "annotated": annotated(src),
        "gsd_m": round(max(width_m, height_m) / tile_px, 4),
        "extent_m": [round(width_m, 2), round(height_m, 2)],
        "land_cover": cover,
        "roads": roads_in(src, win) if roads_known else [],
        "intersections": int(sum(geo.inside(j, win) for j in src.junctions)) if roads_known else None,
        "buildings": buildings_in(src, win),
        "trees": trees_in(src, win),
        "dominant": dominant(cover),
    }
