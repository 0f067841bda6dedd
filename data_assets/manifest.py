"""The manifest: one table every stage after ingestion reads.

One row per (query image, satellite image) pair (`kind="pair"`), plus one row per satellite image
that no query points at (`kind="gallery"`: University-1652's 250 distractor ids, VIGOR satellite
tiles without a panorama). Gallery rows must stay in the evaluation gallery.

Paths are stored relative to `dataset_root`, so a dataset can move without rewriting the manifest;
`resolve_query` / `resolve_satellite` join them back and refuse paths that escape the root.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_assets.errors import DataError
from data_assets.io import atomic_path, resolve_inside

MODALITIES = ("uav", "street_map", "panorama", "ground")  # query views; satellite is the reference
# Splits. "val" is carved from the training area (every default is chosen on it); "test" is the
# same-area test split (held-out blocks of the training regions); "test_cross" is the cross-area
# test split: regions or imagery sources that no train/val location comes from (as VIGOR's
# cross-area protocol). Sources without a cross-area protocol simply have no "test_cross" rows.
SPLITS = ("train", "val", "test", "test_cross")
EVAL_SPLITS = ("test", "test_cross")  # evaluated by default, each with its own galleries
KINDS = ("pair", "gallery")

SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),  # stable: hash of source + both paths
        pa.field("kind", pa.string(), nullable=False),  # "pair" or "gallery" (satellite only)
        pa.field("source", pa.string(), nullable=False),  # dataset name, e.g. "university1652"
        pa.field("dataset_root", pa.string(), nullable=False),  # as configured (may be relative)
        pa.field("split", pa.string(), nullable=False),
        pa.field("modality", pa.string()),  # one of MODALITIES; null for gallery rows
        pa.field("location_id", pa.string(), nullable=False),  # "<source>/<id>", one per satellite
        pa.field("query_path", pa.string()),  # relative to dataset_root; null for gallery rows
        pa.field("satellite_path", pa.string(), nullable=False),
        pa.field("query_sha256", pa.string()),
        pa.field("satellite_sha256", pa.string()),  # null when the file is missing (validation quarantines it)
        pa.field("lat", pa.float64()),  # of the location, WGS84, where known
        pa.field("lon", pa.float64()),
        pa.field("semi_positive_ids", pa.list_(pa.string())),  # VIGOR: other location_ids
        pa.field("derived", pa.bool_(), nullable=False),  # query synthesised from another view
        pa.field("query_meta", pa.string()),  # JSON: per-view facts (drone altitude, heading, ...)
        pa.field("ground_truth", pa.string()),  # JSON: per-location facts (roads, buildings, cover)
    ]
)
COLUMNS = tuple(SCHEMA.names)


def empty_manifest() -> pd.DataFrame:
    return SCHEMA.empty_table().to_pandas()


def to_table(df: pd.DataFrame) -> pa.Table:
    """Coerce a frame to the manifest schema (missing optional columns become null)."""
    missing = [f.name for f in SCHEMA if f.name not in df.columns and not f.nullable]
    if missing:
        raise DataError(None, f"manifest is missing required columns: {', '.join(missing)}")
    df = df.copy()
    for f in SCHEMA:
        if f.name not in df.columns:
            df[f.name] = None
    return pa.Table.from_pandas(df[list(COLUMNS)], schema=SCHEMA, preserve_index=False)


def write_manifest(df: pd.DataFrame, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write atomically as Parquet; `metadata` (JSON-able) lands in the file's key-value metadata."""
    table = to_table(df)
    if metadata:
        table = table.replace_schema_metadata({b"gleam": json.dumps(metadata, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_manifest(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "manifest not found (run the stage that produces it first)")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(path, f"not a readable Parquet manifest ({e})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(path, f"manifest is missing columns: {', '.join(missing)}")
    return table.select(list(COLUMNS)).to_pandas()


def manifest_metadata(path: str | Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"gleam")
    return json.loads(raw) if raw else {}


def resolve_query(row: Any, base_dir: str | Path = ".") -> Path:
    return resolve_inside(Path(base_dir) / row["dataset_root"], row["query_path"])


def resolve_satellite(row: Any, base_dir: str | Path = ".") -> Path:
    return resolve_inside(Path(base_dir) / row["dataset_root"], row["satellite_path"])


def pairs(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["kind"] == "pair"]
