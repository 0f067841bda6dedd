"""What every adapter shares: the row shape it returns and a few listing/parsing helpers.

An adapter turns one dataset layout into a DataFrame with ROW_COLUMNS. Ids and paths are the
layout's own (location ids without the "<source>/" prefix, paths relative to the dataset root);
core.py adds the prefix, pair ids, hashes and the bookkeeping columns. `origin` says where a row
came from (a file and line) so that errors found later can point back at it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from data_assets.errors import DataError

ROW_COLUMNS = (
    "kind", "split", "modality", "location_id", "query_path", "satellite_path", "lat", "lon",
    "semi_positive_ids", "derived", "query_meta", "ground_truth", "origin",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def pair_row(split: str, modality: str, location_id: str, query_path: str, satellite_path: str,
             origin: str, *, lat: float | None = None, lon: float | None = None,
             semi_positive_ids: Iterable[str] = (), query_meta: dict[str, Any] | None = None,
             derived: bool = False) -> dict[str, Any]:
    return {
        "kind": "pair", "split": split, "modality": modality, "location_id": location_id,
        "query_path": query_path, "satellite_path": satellite_path, "lat": lat, "lon": lon,
        "semi_positive_ids": list(semi_positive_ids), "derived": derived,
        "query_meta": to_json(query_meta), "ground_truth": None, "origin": origin,
    }


def gallery_row(split: str, location_id: str, satellite_path: str, origin: str, *,
                lat: float | None = None, lon: float | None = None) -> dict[str, Any]:
    """A satellite image no query points at; it must stay in the evaluation gallery."""
    return {
        "kind": "gallery", "split": split, "modality": None, "location_id": location_id,
        "query_path": None, "satellite_path": satellite_path, "lat": lat, "lon": lon,
        "semi_positive_ids": [], "derived": False, "query_meta": None, "ground_truth": None,
        "origin": origin,
    }


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def to_json(obj: dict[str, Any] | None) -> str | None:
    return None if obj is None else json.dumps(obj, ensure_ascii=False, sort_keys=True)


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(path, f"folder not found: {what}")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(path, f"file not found: {what}")
    return path


def subdirs(path: Path) -> list[str]:
    """Names of the sub-folders of `path`, sorted; [] when `path` does not exist."""
    if not path.is_dir():
        return []
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def images(path: Path) -> list[str]:
    """Image file names directly inside `path`, sorted; hidden files and non-images skipped."""
    if not path.is_dir():
        return []
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_file()
                      and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)


def parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
