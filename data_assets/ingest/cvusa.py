"""CVUSA (Workman et al., 2015; the Zhai et al. 2017 subset): panoramas against Bing satellite tiles.

    <root>/splits/train-19zl.csv, <root>/splits/val-19zl.csv

Each CSV line (no header): satellite path, street panorama path, annotation path, all relative to
the root. The val file is the benchmark's test split. Location id = the satellite file's stem.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from data_assets.errors import DataError
from data_assets.ingest.common import pair_row, require_file, to_frame
from data_assets.ingest.config import SourceConfig

SPLIT_FILES = {"train": "splits/train-19zl.csv", "test": "splits/val-19zl.csv"}
EXPECTS = "splits/train-19zl.csv and splits/val-19zl.csv"


def looks_like(root: Path, source: SourceConfig | None = None) -> bool:
    return any((root / rel).is_file() for rel in SPLIT_FILES.values())


def read(root: Path, source: SourceConfig) -> pd.DataFrame:
    rows = []
    for split, rel in SPLIT_FILES.items():
        if split in (source.splits or ["train", "test"]):
            rows += _split_rows(root, split, rel)
    return to_frame(rows)


def _split_rows(root: Path, split: str, rel: str) -> list[dict]:
    path = require_file(root / rel, f"CVUSA {split} split list")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, fields in enumerate(csv.reader(f), start=1):
            fields = [x.strip() for x in fields]
            if not any(fields):
                continue
            if len(fields) < 2 or not fields[0] or not fields[1]:
                raise DataError(path, f"line {n}: expected 'satellite path, street path, annotation path', "
                                      f"got {','.join(fields)!r}")
            sat, street = fields[0], fields[1]
            meta = {"annotation_path": fields[2]} if len(fields) > 2 and fields[2] else None
            rows.append(pair_row(split, "panorama", Path(sat).stem, street, sat,
                                 origin=f"{rel} line {n}", query_meta=meta))
    return rows
