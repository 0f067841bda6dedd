"""The generic layout: a CSV or Parquet manifest inside the dataset root, one row per pair.

For street maps, SetVL-style ground photos, users' own data and the embedded default dataset.
Required columns: query_path, satellite_path, location_id, modality, split. Optional: lat, lon,
derived, semi_positive_ids (";"-separated in CSV, a list in Parquet), query_meta and ground_truth
(JSON strings, passed through untouched). A row whose query_path and modality are both empty is a
kind="gallery" row: a satellite image no query points at.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_assets.errors import DataError
from data_assets.ingest.common import to_frame
from data_assets.ingest.config import SourceConfig
from data_assets.io import resolve_inside
from data_assets.manifest import MODALITIES, SPLITS

REQUIRED = ("query_path", "satellite_path", "location_id", "modality", "split")
OPTIONAL = ("lat", "lon", "derived", "semi_positive_ids", "query_meta", "ground_truth")
EXPECTS = "a manifest file (manifest.csv / manifest.parquet, or `manifest_file`) with columns " + ", ".join(REQUIRED)
TRUE, FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f", ""}


def looks_like(root: Path, source: SourceConfig | None = None) -> bool:
    return manifest_file(root, source) is not None


def manifest_file(root: Path, source: SourceConfig | None = None) -> str | None:
    """The configured manifest file if present, else manifest.csv / manifest.parquet if present."""
    names = [source.manifest_file] if source is not None else []
    names += ["manifest.csv", "manifest.parquet"]
    return next((n for n in names if (root / n).is_file()), None)


def read(root: Path, source: SourceConfig) -> pd.DataFrame:
    rel = source.manifest_file
    path = resolve_inside(root, rel)
    table = _read_table(path)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise DataError(path, f"manifest is missing required columns: {', '.join(missing)} "
                              f"(found: {', '.join(map(str, table.columns)) or 'none'})")
    is_csv = path.suffix.lower() == ".csv"
    rows = []
    for i, rec in enumerate(table.to_dict("records")):
        where = f"line {i + 2}" if is_csv else f"row {i + 1}"  # CSV: as an editor numbers lines
        try:
            rows.append(_row(rec, is_csv) | {"origin": f"{rel} {where}"})
        except ValueError as e:
            raise DataError(path, f"{where}: {e}") from None
    return to_frame(rows)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path, "manifest file not found (set `manifest_file` on this source)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")  # Excel adds a BOM
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as e:  # pandas/pyarrow raise many types for a damaged file
        raise DataError(path, f"cannot be read as {suffix[1:].upper()} ({e})") from None
    raise DataError(path, "manifest file must end in .csv or .parquet")


def _row(rec: dict[str, Any], is_csv: bool) -> dict[str, Any]:
    """One manifest record -> one adapter row; ValueError says what is wrong with it."""
    query, modality, split = _text(rec["query_path"]), _text(rec["modality"]), _text(rec["split"])
    satellite, location = _text(rec["satellite_path"]), _text(rec["location_id"])
    if not satellite:
        raise ValueError("satellite_path is empty")
    if not location:
        raise ValueError("location_id is empty")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    gallery = not query and not modality
    if not gallery and modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not one of {', '.join(MODALITIES)} "
                         f"(leave both query_path and modality empty for a gallery-only satellite)")
    if not gallery and not query:
        raise ValueError(f"query_path is empty but modality is {modality!r} "
                         f"(a gallery-only row leaves both empty)")
    row = {
        "kind": "gallery" if gallery else "pair", "split": split, "modality": modality or None,
        "location_id": location, "query_path": query or None, "satellite_path": satellite,
        "lat": _coordinate(rec.get("lat"), "lat", 90.0), "lon": _coordinate(rec.get("lon"), "lon", 180.0),
        "semi_positive_ids": _id_list(rec.get("semi_positive_ids")), "derived": _flag(rec.get("derived")),
        "query_meta": _json_text(rec.get("query_meta"), "query_meta"),
        "ground_truth": _json_text(rec.get("ground_truth"), "ground_truth"),
    }
    return row


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _text(v: Any) -> str:
    return "" if _is_null(v) else str(v).strip()


def _coordinate(v: Any, name: str, limit: float) -> float | None:
    if _is_null(v) or _text(v) == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {v!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} {v!r} is not a finite number (leave it empty where unknown)")
    if not -limit <= x <= limit:
        raise ValueError(f"{name} {x} is outside [-{limit:g}, {limit:g}]")
    return x


def _flag(v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    text = _text(v).lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise ValueError(f"derived {v!r} is not a boolean (true/false)")


def _id_list(v: Any) -> list[str]:
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_text(x) for x in v if _text(x)]
    return [x.strip() for x in _text(v).split(";") if x.strip()]


def _json_text(v: Any, name: str) -> str | None:
    """Validate that it is JSON, but keep the user's exact string."""
    if _is_null(v) or (isinstance(v, str) and not v.strip()):
        return None
    if not isinstance(v, str):
        raise ValueError(f"{name} must be a JSON string, got {type(v).__name__}")
    try:
        json.loads(v)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} is not valid JSON ({e.msg} at char {e.pos})") from None
    return v
