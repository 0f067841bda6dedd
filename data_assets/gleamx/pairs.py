"""Match / no-match pairs for GLEAM-X, drawn from the validated manifest.

Every query pair of the manifest gives one positive (the query with its own satellite tile) and
`negatives_per_positive` negatives: the same query with a wrong satellite tile of the SAME split
(no test location ever appears next to a training query). Negative kinds:
  geo    - the nearest other tiles by lat/lon; without coordinates, the neighbouring tiles in
           location-id order within the same region (tiles cut from one scene in raster order);
  visual - the wrong tiles most similar to the true tile under an injected frozen backbone;
           without one they become random, and the report says so;
  random - any other tile.
Every choice draws from an RNG seeded by (seed, pair id), so a pair's negatives and language do
not change when other pairs are added, capped or sharded.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from data_assets.errors import DataError
from data_assets.gleamx.config import GleamXDataConfig
from data_assets.io import resolve_inside, sha256_file
from data_assets.manifest import MODALITIES

EmbedFn = Callable[[list[Path], str], np.ndarray]
NEGATIVE_KINDS = ("geo", "visual", "random")
PAIR_COLUMNS = [
    "pair_id", "source_pair_id", "split", "modality", "label", "negative_kind", "language", "shard",
    "query_path", "satellite_path", "query_sha256", "satellite_sha256",
    "query_location_id", "satellite_location_id", "query_truth", "satellite_truth", "query_meta",
]


def stable_int(*parts: object) -> int:
    """A 64-bit integer from text parts, identical on every machine and Python run."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16], 16)


def shard_of(pair_id: str, num_shards: int) -> int:
    return stable_int("shard", pair_id) % num_shards


def _rel(dataset_root: str, rel: str) -> str:
    """Path relative to base_dir, as records store it."""
    return (Path(dataset_root) / rel).as_posix()


def locations_table(manifest: pd.DataFrame, base_dir: Path) -> pd.DataFrame:
    """One row per satellite location (pairs and gallery distractors), per split."""
    rows = manifest[manifest["kind"].isin(["pair", "gallery"])]
    # Sorted, so that index-based random picks do not depend on the manifest's row order.
    locs = rows.sort_values(["split", "location_id", "kind"]).drop_duplicates(["split", "location_id"]).copy()
    for r in locs.itertuples():
        resolve_inside(Path(base_dir) / r.dataset_root, r.satellite_path)  # refuse escaping paths early
    locs["sat_rel"] = [_rel(r.dataset_root, r.satellite_path) for r in locs.itertuples()]
    locs["region"] = [_region(r.ground_truth, r.source) for r in locs.itertuples()]
    return locs.reset_index(drop=True)


def _region(truth: str | None, source: str) -> str:
    if isinstance(truth, str) and truth:
        region = json.loads(truth).get("region")
        if region:
            return str(region)
    return source


def _haversine_km(lat0: float, lon0: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    p0, p = np.radians(lat0), np.radians(lat)
    a = np.sin((p - p0) / 2) ** 2 + np.cos(p0) * np.cos(p) * np.sin(np.radians(lon - lon0) / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def geo_ranking(locs: pd.DataFrame, true_idx: int) -> np.ndarray:
    """Indices of `locs` (one split) ordered from geographically nearest to farthest."""
    lat = pd.to_numeric(locs["lat"], errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(locs["lon"], errors="coerce").to_numpy(dtype=float)
    has = ~(np.isnan(lat) | np.isnan(lon))
    if has[true_idx] and has.sum() > 1:
        dist = np.full(len(locs), np.inf)
        dist[has] = _haversine_km(lat[true_idx], lon[true_idx], lat[has], lon[has])
        return np.argsort(dist, kind="stable")
    # No coordinates: neighbours in natural id order inside the same region, then everything else.
    ids = locs["location_id"].tolist()
    order = sorted(range(len(ids)), key=lambda i: _natural_key(ids[i]))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    other_region = (locs["region"].to_numpy() != locs["region"].iloc[true_idx]).astype(np.int64)
    return np.lexsort((np.abs(rank - rank[true_idx]), other_region))


def _natural_key(text: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def visual_rankings(locs: pd.DataFrame, base_dir: Path, embed_fn: EmbedFn, k: int) -> np.ndarray:
    """For each location of one split: its k most similar other tiles (cosine), best first."""
    import faiss

    paths = [Path(base_dir) / p for p in locs["sat_rel"]]
    emb = np.ascontiguousarray(embed_fn(paths, "satellite"), dtype=np.float32)
    if emb.shape[0] != len(paths):
        raise DataError(None, f"embed_fn returned {emb.shape[0]} rows for {len(paths)} satellite images")
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    _, nn = index.search(emb, min(k + 1, len(paths)))
    return nn


def _negative_kinds(rng: np.random.Generator, cfg: GleamXDataConfig, n: int, visual_ok: bool) -> list[str]:
    mix = cfg.negative_mix
    shares = np.array([mix.geo, mix.visual, mix.random], dtype=float)
    kinds = [str(k) for k in rng.choice(NEGATIVE_KINDS, size=n, p=shares / shares.sum())]
    return [("random" if (k == "visual" and not visual_ok) else k) for k in kinds]


def _pick_language(rng: np.random.Generator, cfg: GleamXDataConfig) -> str:
    langs = sorted(cfg.languages)
    p = np.array([cfg.languages[lang] for lang in langs], dtype=float)
    return str(rng.choice(langs, p=p / p.sum()))


def _cap_positives(pos: pd.DataFrame, cfg: GleamXDataConfig) -> pd.DataFrame:
    if cfg.max_pairs_per_modality_per_split is None:
        return pos
    keys = pos["pair_id"].map(lambda pid: stable_int(cfg.seed, "cap", pid))
    pos = pos.assign(_k=keys.values).sort_values("_k")
    pos = pos.groupby(["split", "modality"], sort=False).head(cfg.max_pairs_per_modality_per_split)
    return pos.drop(columns="_k")


def build_pairs(manifest: pd.DataFrame, base_dir: Path, cfg: GleamXDataConfig,
                embed_fn: EmbedFn | None = None) -> tuple[pd.DataFrame, dict]:
    """Positive and negative pairs with both locations' ground truth; returns (pairs, info)."""
    base_dir = Path(base_dir)
    pos = manifest[(manifest["kind"] == "pair") & manifest["modality"].isin(MODALITIES)]
    pos = _cap_positives(pos.sort_values("pair_id"), cfg).sort_values("pair_id")
    locs_all = locations_table(manifest, base_dir)
    k = cfg.negatives_per_positive
    use_visual = embed_fn is not None and cfg.negative_mix.visual > 0 and k > 0
    out: list[dict] = []
    for split, pos_split in pos.groupby("split", sort=True):
        locs = locs_all[locs_all["split"] == split].reset_index(drop=True)
        loc_rows = locs.to_dict("records")  # plain dicts: pandas row access is slow in this loop
        index_of = {lid: i for i, lid in enumerate(locs["location_id"])}
        geo = lru_cache(maxsize=None)(lambda i, _locs=locs: geo_ranking(_locs, i))
        visual = visual_rankings(locs, base_dir, embed_fn, k + 8) if use_visual and len(locs) > 1 else None
        for row in pos_split.itertuples(index=False):
            row = row._asdict()
            out.append(_pair_record(row, base_dir, cfg, label="match", kind=None,
                                    sat=loc_rows[index_of[row["location_id"]]], pair_id=row["pair_id"]))
            rng = np.random.default_rng(stable_int(cfg.seed, "neg", row["pair_id"]))
            semi = row.get("semi_positive_ids")
            semi = [] if semi is None else list(semi)
            taken = {index_of[lid] for lid in [row["location_id"], *semi] if lid in index_of}
            me = index_of[row["location_id"]]
            for kind in _negative_kinds(rng, cfg, k, visual is not None):
                choice = _choose_negative(kind, len(locs), me, taken, rng, geo, visual)
                if choice is None:
                    continue  # a split with a single location has no negatives to offer
                taken.add(choice)
                pid = hashlib.sha256(f"{row['pair_id']}|neg|{loc_rows[choice]['location_id']}".encode()).hexdigest()[:24]
                out.append(_pair_record(row, base_dir, cfg, label="no_match", kind=kind,
                                        sat=loc_rows[choice], pair_id=pid))
    pairs = pd.DataFrame(out, columns=PAIR_COLUMNS)
    info = {"visual_negatives": "real" if use_visual else
            ("replaced_by_random (no embed_fn)" if cfg.negative_mix.visual > 0 and k > 0 else "not_requested")}
    return pairs, info


def _choose_negative(kind: str, n_locs: int, me: int, taken: set[int], rng: np.random.Generator,
                     geo: Callable[[int], np.ndarray], visual: np.ndarray | None) -> int | None:
    """Index of the negative location; `taken` holds the true tile, semi-positives, earlier picks."""
    if len(taken) >= n_locs:
        return None
    if kind == "geo":
        return next(int(i) for i in geo(me) if int(i) not in taken)
    if kind == "visual" and visual is not None:
        for i in visual[me]:
            if i >= 0 and int(i) not in taken:
                return int(i)
    while True:  # rejection sampling: cheap because taken is tiny next to the split's locations
        i = int(rng.integers(n_locs))
        if i not in taken:
            return i


def _pair_record(row: dict, base_dir: Path, cfg: GleamXDataConfig, label: str, kind: str | None,
                 sat: dict, pair_id: str) -> dict:
    rng = np.random.default_rng(stable_int(cfg.seed, "lang", pair_id))
    q_sha = row.get("query_sha256") or sha256_file(resolve_inside(base_dir / row["dataset_root"], row["query_path"]))
    return {
        "pair_id": pair_id, "source_pair_id": row["pair_id"], "split": row["split"],
        "modality": row["modality"], "label": label, "negative_kind": kind,
        "language": _pick_language(rng, cfg), "shard": shard_of(pair_id, cfg.num_shards),
        "query_path": _rel(row["dataset_root"], row["query_path"]), "satellite_path": sat["sat_rel"],
        "query_sha256": q_sha, "satellite_sha256": sat["satellite_sha256"],
        "query_location_id": row["location_id"], "satellite_location_id": sat["location_id"],
        "query_truth": row.get("ground_truth"), "satellite_truth": sat["ground_truth"],
        "query_meta": row.get("query_meta"),
    }
