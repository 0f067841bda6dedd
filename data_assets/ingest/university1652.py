"""University-1652 (Zheng et al., 2020): drone and ground views of 1,652 buildings, one satellite each.

    train/{satellite,drone,street,google}/<id>/*
    test/{query_drone,gallery_drone,query_satellite,gallery_satellite,query_street,gallery_street,4K_drone}/<id>/*

Train: every drone / street / google image is a pair with train/satellite/<id>. Test: query_drone
and query_street images pair with gallery_satellite/<id>; gallery_satellite ids without any query
(the 250 distractors) become kind="gallery" rows. gallery_drone / gallery_street images that are
not also query images (the distractor ids' views) become pair rows with query_meta
{"role": "gallery"}: they join the satellite->query gallery but are never used as queries.
query_satellite holds copies of the query ids' gallery_satellite images, so it adds nothing.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_assets.errors import DataError
from data_assets.ingest.common import gallery_row, images, pair_row, require_dir, subdirs, to_frame
from data_assets.ingest.config import SourceConfig

EXPECTS = "train/{satellite,drone}/<id>/ and test/{gallery_satellite,query_drone}/<id>/ image folders"

# (folder, modality); street and google are both ground-level photos, the folder goes in query_meta
TRAIN_QUERIES = [("drone", "uav"), ("street", "ground"), ("google", "ground")]
TEST_QUERIES = [("query_drone", "uav"), ("query_street", "ground")]
# (gallery folder, modality, the query folder whose images it repeats)
TEST_GALLERIES = [("gallery_drone", "uav", "query_drone"), ("gallery_street", "ground", "query_street")]


def looks_like(root: Path, source: SourceConfig | None = None) -> bool:
    return ((root / "train" / "satellite").is_dir() and (root / "train" / "drone").is_dir()) or (
        (root / "test" / "gallery_satellite").is_dir() and (root / "test" / "query_drone").is_dir())


def read(root: Path, source: SourceConfig) -> pd.DataFrame:
    splits = source.splits or ["train", "test"]  # University-1652 has no val split
    rows = []
    if "train" in splits:
        rows += _train_rows(root)
    if "test" in splits:
        rows += _test_rows(root, source.include_4k_drone)
    return to_frame(rows)


def _satellites(root: Path, rel: str) -> dict[str, str]:
    """id -> relative path of its one satellite image."""
    folder = require_dir(root / rel, f"University-1652 needs {rel}/<id>/")
    out = {}
    for loc in subdirs(folder):
        names = images(folder / loc)
        if len(names) != 1:
            raise DataError(folder / loc, f"expected exactly one satellite image, found {len(names)}")
        out[loc] = f"{rel}/{loc}/{names[0]}"
    return out


def _query_rows(root: Path, split: str, rel: str, modality: str, sats: dict[str, str], sat_rel: str,
                meta: dict) -> list[dict]:
    rows = []
    for loc in subdirs(root / rel):
        names = images(root / rel / loc)
        if names and loc not in sats:
            raise DataError(root / rel / loc, f"no {sat_rel}/{loc}/ satellite image to pair these views with")
        for name in names:
            rows.append(pair_row(split, modality, loc, f"{rel}/{loc}/{name}", sats.get(loc),
                                 origin=f"{rel}/{loc}", query_meta=meta))
    return rows


def _gallery_rows(split: str, sats: dict[str, str], with_queries: set[str], sat_rel: str) -> list[dict]:
    return [gallery_row(split, loc, path, origin=f"{sat_rel}/{loc}")
            for loc, path in sorted(sats.items()) if loc not in with_queries]


def _train_rows(root: Path) -> list[dict]:
    sat_rel = "train/satellite"
    sats = _satellites(root, sat_rel)
    require_dir(root / "train" / "drone", "University-1652 needs train/drone/<id>/")
    rows = []
    for folder, modality in TRAIN_QUERIES:  # street/google may be empty or absent: both are real
        rows += _query_rows(root, "train", f"train/{folder}", modality, sats, sat_rel, {"folder": folder})
    return rows + _gallery_rows("train", sats, {r["location_id"] for r in rows}, sat_rel)


def _test_rows(root: Path, include_4k_drone: bool) -> list[dict]:
    sat_rel = "test/gallery_satellite"
    sats = _satellites(root, sat_rel)
    require_dir(root / "test" / "query_drone", "University-1652 needs test/query_drone/<id>/")
    queries = list(TEST_QUERIES)
    if include_4k_drone:
        require_dir(root / "test" / "4K_drone", "include_4k_drone is set but the folder is missing")
        queries.append(("4K_drone", "uav"))
    rows = []
    for folder, modality in queries:
        rows += _query_rows(root, "test", f"test/{folder}", modality, sats, sat_rel, {"folder": folder})
    with_queries = {r["location_id"] for r in rows}
    for folder, modality, query_folder in TEST_GALLERIES:
        rows += _role_gallery_rows(root, folder, modality, query_folder, sats, sat_rel)
    return rows + _gallery_rows("test", sats, with_queries, sat_rel)


def _role_gallery_rows(root: Path, folder: str, modality: str, query_folder: str,
                       sats: dict[str, str], sat_rel: str) -> list[dict]:
    """gallery_* images that are not already query images: satellite->query distractors."""
    rows = []
    for loc in subdirs(root / "test" / folder):
        as_query = set(images(root / "test" / query_folder / loc))
        extra = [name for name in images(root / "test" / folder / loc) if name not in as_query]
        if extra and loc not in sats:
            raise DataError(root / "test" / folder / loc, f"no {sat_rel}/{loc}/ satellite image to pair these views with")
        for name in extra:
            rows.append(pair_row("test", modality, loc, f"test/{folder}/{loc}/{name}", sats[loc],
                                 origin=f"test/{folder}/{loc}",
                                 query_meta={"folder": folder, "role": "gallery"}))
    return rows
