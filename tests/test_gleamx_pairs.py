"""GLEAM-X pairs: positives, hard negatives (geo / visual / random), splits, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_assets.gleamx import GleamXDataConfig, build_pairs
from data_assets.gleamx.pairs import geo_ranking, locations_table
from data_assets.manifest import read_manifest
from test_gleamx_support import make_dataset


def colour_embed(paths: list[Path], view: str) -> np.ndarray:
    """A real (if simple) image embedding: the normalised mean colour of each image."""
    assert view == "satellite"
    rows = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) - 128 for p in paths])
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def dataset(tmp_path):
    manifest, base = make_dataset(tmp_path)
    return read_manifest(manifest), base


def test_positives_and_negatives_stay_in_split(dataset):
    df, base = dataset
    cfg = GleamXDataConfig(negatives_per_positive=3, seed=1)
    pairs, info = build_pairs(df, base, cfg)
    pos = pairs[pairs["label"] == "match"]
    assert len(pos) == len(df) and (pos["query_location_id"] == pos["satellite_location_id"]).all()
    neg = pairs[pairs["label"] == "no_match"]
    assert len(neg) == 3 * len(df)
    assert (neg["query_location_id"] != neg["satellite_location_id"]).all()
    split_of = dict(zip(df["location_id"], df["split"]))
    assert all(split_of[loc] == s for loc, s in zip(pairs["satellite_location_id"], pairs["split"]))
    # no query gets the same wrong tile twice
    assert not neg.duplicated(["source_pair_id", "satellite_location_id"]).any()
    assert info["visual_negatives"].startswith("replaced_by_random")
    assert set(neg["negative_kind"]) <= {"geo", "random"}
    # both locations' ground truth travel with every pair
    for r in neg.itertuples():
        assert json.loads(r.query_truth) == json.loads(df.set_index("location_id").loc[r.query_location_id, "ground_truth"].iloc[0])


def test_deterministic_for_a_seed(dataset):
    df, base = dataset
    a, _ = build_pairs(df, base, GleamXDataConfig(negatives_per_positive=2, seed=5))
    b, _ = build_pairs(df.sample(frac=1.0, random_state=3), base, GleamXDataConfig(negatives_per_positive=2, seed=5))
    c, _ = build_pairs(df, base, GleamXDataConfig(negatives_per_positive=2, seed=6))
    key = ["pair_id", "satellite_location_id", "negative_kind", "language", "shard"]
    pd.testing.assert_frame_equal(a[key].sort_values("pair_id").reset_index(drop=True),
                                  b[key].sort_values("pair_id").reset_index(drop=True))
    assert not a[key].sort_values("pair_id").reset_index(drop=True).equals(c[key].sort_values("pair_id").reset_index(drop=True))


def test_geo_negatives_are_nearest_neighbours(dataset):
    df, base = dataset
    cfg = GleamXDataConfig(negatives_per_positive=1, negative_mix={"geo": 1, "visual": 0, "random": 0})
    pairs, _ = build_pairs(df, base, cfg)
    lat = dict(zip(df["location_id"], df["lat"]))
    for r in pairs[pairs["label"] == "no_match"].itertuples():
        others = [loc for loc, s in zip(df["location_id"], df["split"]) if s == r.split and loc != r.query_location_id]
        nearest = min(others, key=lambda loc: abs(lat[loc] - lat[r.query_location_id]))
        assert abs(lat[r.satellite_location_id] - lat[r.query_location_id]) == pytest.approx(
            abs(lat[nearest] - lat[r.query_location_id]))
        assert r.negative_kind == "geo"


def test_geo_fallback_without_latlon_uses_region_and_tile_order(tmp_path):
    manifest, base = make_dataset(tmp_path, n_locations=14, with_latlon=False, test_every=100)
    df = read_manifest(manifest)
    locs = locations_table(df, base)
    locs = locs[locs["split"] == "train"].reset_index(drop=True)
    me = int(np.flatnonzero(locs["location_id"] == "toy/loc07")[0])
    order = [locs["location_id"][i] for i in geo_ranking(locs, me)]
    # loc07 is las_vegas (TRUTHS cycle of 8), like loc01, loc08, loc09 (loc00 is test): same region
    # first, nearest in tile order first; then the other regions by tile order (loc06 is next to loc07).
    assert order[:5] == ["toy/loc07", "toy/loc08", "toy/loc09", "toy/loc01", "toy/loc06"]


def test_visual_negatives_follow_the_embedding(dataset):
    df, base = dataset
    cfg = GleamXDataConfig(negatives_per_positive=1, negative_mix={"geo": 0, "visual": 1, "random": 0})
    pairs, info = build_pairs(df, base, cfg, embed_fn=colour_embed)
    assert info["visual_negatives"] == "real"
    neg = pairs[pairs["label"] == "no_match"]
    assert set(neg["negative_kind"]) == {"visual"}
    sat = {r.location_id: base / r.dataset_root / r.satellite_path for r in df.itertuples()}
    for r in neg.itertuples():
        others = [loc for loc, s in zip(df["location_id"], df["split"]) if s == r.split and loc != r.query_location_id]
        others = sorted(set(others))
        e = colour_embed([sat[r.query_location_id]] + [sat[o] for o in others], "satellite")
        best = others[int(np.argmax(e[1:] @ e[0]))]
        assert r.satellite_location_id == best


def test_cap_and_language_ratio(dataset):
    df, base = dataset
    cfg = GleamXDataConfig(max_pairs_per_modality_per_split=2, languages={"zh": 1.0}, negatives_per_positive=1)
    pairs, _ = build_pairs(df, base, cfg)
    pos = pairs[pairs["label"] == "match"]
    assert pos.groupby(["split", "modality"]).size().max() == 2
    assert set(pairs["language"]) == {"zh"}
