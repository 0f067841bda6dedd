"""Build the embedded default dataset: a small, real, deterministic cross-view dataset.

    summary = build_embedded_dataset(EmbeddedConfig(), Path("data/embedded"))

Sources are the SpaceNet and NEON files that ship inside registry packages (see sources.py).
Each tile of a source is one location with one satellite view and its queries:
  SpaceNet tile -> street_map (rendered from the real vectors) + panorama + ground (derived)
  NEON tile     -> uav (simulated oblique views)               + panorama + ground (derived)
The output directory is written as a whole (atomic_directory); a second call with the same
config, builder version and source files finds the fingerprint in metadata.json and returns.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from data_assets.embedded import views
from data_assets.embedded.config import EmbeddedConfig
from data_assets.embedded.datasheet import datasheet
from data_assets.embedded import groundtruth
from data_assets.embedded.sources import Source, load_sources, provenance
from data_assets.embedded.tiling import SplitPlan, Tile, plan_tiles, semi_positives
from data_assets.errors import ConfigError, DataError
from data_assets.io import atomic_directory, read_json, sha256_text
from data_assets.registry_assets import ASSETS

# bump whenever the output for a given config changes
# 2: ground truth gains "annotated"; unannotated classes are null, not 0; dominant is "other", never "bare"
# 3: semi_positive_ids filled (same split, same image, tile overlap >= semi_positive_min_overlap)
# 4: val and test_cross (cross-area) splits; evaluation tiles on a non-overlapping grid
BUILDER_VERSION = "4"
SOURCE_ASSETS = tuple(n for n in ASSETS if n.startswith(("spacenet_", "neon_")) and n != "neon_soap_031")
MANIFEST_COLUMNS = ["query_path", "satellite_path", "location_id", "modality", "split", "lat", "lon",
                    "derived", "semi_positive_ids", "query_meta", "ground_truth"]
MODALITY_ORDER = ("uav", "street_map", "panorama", "ground")
SPLIT_ORDER = ("train", "val", "test", "test_cross")

DERIVATIONS = {
    "satellite": "SpaceNet tiles: the real satellite image, percentile-stretched to 8 bit and resampled. "
                 "NEON tiles: the 10 cm orthophoto box-downsampled to satellite_gsd_m, blurred, desaturated, "
                 "lower contrast and tinted, then upsampled to tile_px.",
    "street_map": "Rendered from the source's real vectors clipped to the tile (roads as cased lines, width "
                  "from lane count; buildings as filled polygons). Not derived from imagery: derived=false.",
    "uav": "Simulated oblique drone photo: a pinhole-camera perspective warp of the 10 cm NEON orthophoto "
           "looking at the tile centre (heading, tilt, altitude in query_meta), kept inside the tile. "
           "Synthesised from the nadir view: derived=true.",
    "panorama": "Pseudo-panorama: polar transform of the tile's disc (columns = heading clockwise, top row = "
                "tile edge, bottom row = centre), random north column in query_meta. derived=true.",
    "ground": "Pinhole crop of the pseudo-panorama around a heading (yaw, fov in query_meta). derived=true.",
}


def _sub_rng(seed: int, *keys: str) -> np.random.Generator:
    """An RNG per (seed, key): a location's views do not depend on which other locations exist."""
    digest = hashlib.sha256("/".join((str(seed),) + keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def fingerprint(cfg: EmbeddedConfig, sources: list[dict]) -> str:
    payload = {"builder": BUILDER_VERSION, "config": cfg.model_dump(mode="json"),
               "sources": sorted(s["sha256"] for s in sources)}
    return sha256_text(json.dumps(payload, sort_keys=True))


# ---------------------------------------------------------------- tiles

def split_plan(cfg: EmbeddedConfig, src: Source) -> SplitPlan:
    if src.family == "spacenet":
        tile_m, stride_m, block_m = cfg.spacenet_tile_m, cfg.spacenet_stride_m, cfg.spacenet_block_m
    else:
        tile_m, stride_m, block_m = cfg.neon_tile_m, cfg.neon_stride_m, cfg.neon_block_m
    cross = 1.0 if src.key in cfg.cross_area_sources else cfg.cross_area_strip.get(src.key, 0.0)
    return SplitPlan(tile_m, stride_m, block_m, cfg.test_fraction, cfg.val_fraction, cross)


def make_tiles(cfg: EmbeddedConfig, sources: list[Source]) -> list[Tile]:
    """All kept tiles of all sources, each with its split."""
    keys = [s.key for s in sources]
    unknown = sorted((set(cfg.cross_area_sources) | set(cfg.cross_area_strip)) - set(keys))
    if unknown:
        raise ConfigError(f"embedded.cross_area_sources / cross_area_strip: unknown source {unknown[0]!r}; "
                          f"known: {keys}")
    tiles: list[Tile] = []
    for src in sources:
        def keep(win, src=src) -> bool:  # a map tile must show something
            return src.family != "spacenet" or \
                views.map_content_fraction(views.street_map(src, win, 64)) >= cfg.min_map_content
        tiles += plan_tiles(src, split_plan(cfg, src), _sub_rng(cfg.seed, "split", src.key), keep)
    return tiles


# ---------------------------------------------------------------- one location

def render_location(cfg: EmbeddedConfig, tile: Tile, semi: list[str]) -> tuple[list[dict], dict[str, bytes]]:
    """Every image of one location and its manifest rows (`semi`: its semi-positive location ids)."""
    src, win, loc = tile.source, tile.window, tile.location_id
    rng = _sub_rng(cfg.seed, "views", loc)
    files: dict[str, bytes] = {}
    rows: list[dict] = []
    jpeg = cfg.jpeg_quality
    sat_path = f"images/satellite/{loc}.jpg"
    files[sat_path] = views.encode(views.satellite(src, win, cfg.tile_px, cfg.satellite_gsd_m), "JPEG", jpeg)
    lat = lon = None
    if src.to_latlon is not None:
        lat, lon = (round(v, 7) for v in src.to_latlon(*tile.centre))
    gt = json.dumps(groundtruth.ground_truth(src, win, cfg.tile_px), ensure_ascii=False)
    base_meta = {"source_assets": list(src.assets), "source_window_px": list(win), "region": src.region}

    def add(modality: str, path: str, derived: bool, meta: dict) -> None:
        rows.append({"query_path": path, "satellite_path": sat_path, "location_id": loc, "modality": modality,
                     "split": tile.split, "lat": lat, "lon": lon, "derived": "true" if derived else "false",
                     "semi_positive_ids": ";".join(semi), "ground_truth": gt,
                     "query_meta": json.dumps({"view": modality, "derived": derived, **meta, **base_meta},
                                              ensure_ascii=False)})

    if src.family == "spacenet":
        path = f"images/street_map/{loc}.png"
        files[path] = views.encode(views.street_map(src, win, cfg.tile_px), "PNG", jpeg)
        add("street_map", path, False, {"derivation": None, "rendered_from": "vector labels",
                                        "style": "background, cased roads (3.5 m/lane), filled buildings"})
    else:
        for k in range(cfg.uav_views):
            heading = float(rng.uniform(0, 360))
            tilt = float(rng.uniform(*cfg.uav_tilt_deg))
            fill = float(rng.uniform(*cfg.uav_fill))
            img, altitude = views.drone_view(src, win, cfg.uav_px, heading, tilt, fill)
            path = f"images/uav/{loc}_{k}.jpg"
            files[path] = views.encode(img, "JPEG", jpeg)
            add("uav", path, True, {"derivation": "simulated oblique view: perspective warp of the orthophoto",
                                    "altitude_m": round(altitude, 2), "heading_deg": round(heading, 2),
                                    "tilt_deg": round(tilt, 2), "hfov_deg": 60.0})

    north = float(rng.uniform(0, 1))
    pano = views.panorama(src, win, *cfg.panorama_px, north_col_frac=north)
    path = f"images/panorama/{loc}.jpg"
    files[path] = views.encode(pano, "JPEG", jpeg)
    add("panorama", path, True, {"derivation": "polar transform of the aerial tile (pseudo-panorama)",
                                 "north_column_fraction": round(north, 4), "top_row": "tile edge",
                                 "bottom_row": "tile centre"})
    for k in range(cfg.ground_views):
        yaw = float(rng.uniform(0, 360))
        img = views.ground_photo(pano, yaw, cfg.ground_fov_deg, cfg.ground_px, north)
        path = f"images/ground/{loc}_{k}.jpg"
        files[path] = views.encode(img, "JPEG", jpeg)
        add("ground", path, True, {"derivation": "perspective crop of the derived pseudo-panorama",
                                   "yaw_deg": round(yaw, 2), "fov_deg": cfg.ground_fov_deg})
    return rows, files


# ---------------------------------------------------------------- summary / cache

def _counts(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {m: {s: int(((manifest.modality == m) & (manifest.split == s)).sum()) for s in SPLIT_ORDER}
            for m in MODALITY_ORDER}


def _semi_positive_stats(cfg: EmbeddedConfig, tiles: list[Tile], semi: dict[str, list[str]]) -> dict:
    """Mean / max number of semi-positives per location, overall and per region."""
    def stats(group: list[Tile]) -> dict:
        n = [len(semi[t.location_id]) for t in group]
        return {"locations": len(n), "mean": round(float(np.mean(n)), 3) if n else 0.0, "max": max(n, default=0)}
    regions = dict.fromkeys(t.source.region for t in tiles)
    return {"min_overlap": cfg.semi_positive_min_overlap,
            "rule": "other locations of the same split and the same source image whose tile overlaps this "
                    "tile by at least min_overlap of the tile area (0 disables); ids without the source prefix",
            "per_location": stats(tiles),
            "per_region": {r: stats([t for t in tiles if t.source.region == r]) for r in regions}}


def _cached_summary(out_dir: Path, fp: str) -> dict | None:
    """The previous build's summary if it is complete and has this fingerprint."""
    meta_path, manifest_path = out_dir / "metadata.json", out_dir / "manifest.csv"
    if not (meta_path.is_file() and manifest_path.is_file()):
        return None
    try:
        meta = read_json(meta_path)
    except ValueError:
        return None
    if meta.get("fingerprint") != fp:
        return None
    manifest = pd.read_csv(manifest_path, usecols=["query_path", "satellite_path"])
    paths = set(manifest.query_path) | set(manifest.satellite_path)
    if not all((out_dir / p).is_file() for p in paths):
        return None
    return {"cached": True, "fingerprint": fp, "locations": meta["locations"]["total"],
            "counts": meta["counts"], "out_dir": str(out_dir)}


def build_embedded_dataset(cfg: EmbeddedConfig, out_dir: Path) -> dict:
    """Build (or find cached) the embedded dataset in `out_dir`; returns a summary:
    {"cached", "fingerprint", "locations", "counts": {modality: {split: n_pairs}}, "seconds", "out_dir"}."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    source_prov = [provenance(name) for name in SOURCE_ASSETS]
    fp = fingerprint(cfg, source_prov)
    cached = _cached_summary(out_dir, fp)
    if cached is not None:
        return {**cached, "seconds": round(time.perf_counter() - start, 3)}

    sources = load_sources()
    tiles = make_tiles(cfg, sources)
    if not tiles:
        raise DataError(None, "embedded dataset: no tile survived the content filter; lower min_map_content")
    semi = semi_positives(tiles, cfg.semi_positive_min_overlap)
    with ThreadPoolExecutor(max_workers=2) as pool:  # PIL resampling / encoding release the GIL
        results = list(pool.map(lambda t: render_location(cfg, t, semi[t.location_id]), tiles))

    rows = [r for rs, _ in results for r in rs]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest = manifest.sort_values(["split", "modality", "location_id", "query_path"], kind="stable")
    counts = _counts(manifest)
    locations = {"total": len(tiles), **{s: sum(t.split == s for t in tiles) for s in SPLIT_ORDER},
                 "per_source": {src.key: {s: sum(t.source is src and t.split == s for t in tiles)
                                          for s in SPLIT_ORDER} for src in sources},
                 "per_region": {r: {s: sum(t.source.region == r and t.split == s for t in tiles)
                                    for s in SPLIT_ORDER} for r in dict.fromkeys(s.region for s in sources)},
                 "per_modality": {m: {s: int(manifest[(manifest.modality == m) & (manifest.split == s)]
                                             .location_id.nunique()) for s in SPLIT_ORDER}
                                  for m in MODALITY_ORDER}}
    metadata = {
        "name": "gleam-embedded", "builder_version": BUILDER_VERSION, "fingerprint": fp, "seed": cfg.seed,
        "config": cfg.model_dump(mode="json"), "counts": counts, "locations": locations,
        "pairs": len(manifest),
        "annotated_classes": {s.region: groundtruth.annotated(s) for s in sources},
        "split": {"method": "cross-area sources and strips, then spatial blocks",
                  "block_m": {"spacenet": cfg.spacenet_block_m, "neon": cfg.neon_block_m},
                  "tile_m": {"spacenet": cfg.spacenet_tile_m, "neon": cfg.neon_tile_m},
                  "cross_area_sources": cfg.cross_area_sources, "cross_area_strip": cfg.cross_area_strip,
                  "rule": "test_cross: the sources in cross_area_sources whole, and the eastern cross_area_strip "
                          "share of the others, with a one-tile gap no other tile enters; test and val: whole "
                          "spatial blocks (the block holding a tile's centre) of the remaining ground; val, test and "
                          "test_cross tiles lie on a grid stepped by the tile side, so they never overlap each "
                          "other; train: strided tiles of the remaining blocks, dropped where they overlap any "
                          "evaluation tile, so no evaluation tile shares a pixel with a train tile"},
        "semi_positives": _semi_positive_stats(cfg, tiles, semi),
        "derived": DERIVATIONS, "sources": source_prov,
        "ground_truth_schema": groundtruth.SCHEMA,  # computed from the source labels clipped to each tile
        "dominant_min_share": groundtruth.MIN_DOMINANT_SHARE,
    }
    with atomic_directory(out_dir) as tmp:
        for _, files in results:
            for rel, data in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        manifest.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "DATASET.md").write_text(datasheet(metadata), encoding="utf-8")
    return {"cached": False, "fingerprint": fp, "locations": len(tiles), "counts": counts,
            "seconds": round(time.perf_counter() - start, 3), "out_dir": str(out_dir)}
