"""VIGOR (Zhu et al., 2021): street-view panoramas of four US cities against satellite tiles.

    <root>/<City>/{panorama,satellite}/          City in Chicago, NewYork, SanFrancisco, Seattle
    <root>/splits/<City>/satellite_list.txt      one satellite file name a line
    <root>/splits/<City>/same_area_balanced_{train,test}.txt, pano_label_balanced.txt

A label line is 13 space-separated fields: the panorama name, then the positive satellite name and
its two offsets, then three semi-positive satellite names each with two offsets. Names carry the
position: `satellite_<lat>_<lon>.png`, `<panoid>,<lat>,<lon>,.jpg`.

Same-area: all four cities, train/test from the same_area files. Cross-area: train on NewYork +
Seattle, test on Chicago + SanFrancisco, every labelled panorama (pano_label_balanced.txt). The
gallery of a split is every satellite tile of its cities, so tiles without a positive panorama
become kind="gallery" rows of that split.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_assets.errors import DataError
from data_assets.ingest.common import gallery_row, pair_row, parse_float, require_dir, require_file, to_frame
from data_assets.ingest.config import SourceConfig

CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")
CROSS_AREA = {"train": ("NewYork", "Seattle"), "test": ("Chicago", "SanFrancisco")}
EXPECTS = "splits/<City>/satellite_list.txt plus <City>/{panorama,satellite}/ for " + ", ".join(CITIES)
LABEL_FIELDS = 13  # panorama + 4 x (satellite, offset, offset)


def looks_like(root: Path, source: SourceConfig | None = None) -> bool:
    return any((root / "splits" / c / "satellite_list.txt").is_file() and (root / c / "satellite").is_dir()
               for c in CITIES)


def read(root: Path, source: SourceConfig) -> pd.DataFrame:
    plan = _plan(source.vigor_mode, source.splits or ["train", "test"])
    for city in sorted({city for _, city, _ in plan}):
        _require_city(root, city, source.vigor_mode, plan)
    sat_lists = {city: _satellite_list(root, city) for _, city, _ in plan}
    rows = []
    for split, city, label_file in plan:
        sat_names = sat_lists[city]
        pairs = _label_rows(root, split, city, label_file)
        positives = {r["satellite_path"] for r in pairs}
        rows += pairs
        rows += [gallery_row(split, _location_id(city, name), f"{city}/satellite/{name}",
                             origin=f"splits/{city}/satellite_list.txt", **_satellite_latlon(name))
                 for name in sat_names if f"{city}/satellite/{name}" not in positives]
    return to_frame(rows)


def _plan(mode: str, splits: list[str]) -> list[tuple[str, str, str]]:
    """(split, city, label file) triples the protocol reads; VIGOR has no val split."""
    plan = []
    for split in ("train", "test"):
        if split not in splits:
            continue
        if mode == "same_area":
            plan += [(split, city, f"same_area_balanced_{split}.txt") for city in CITIES]
        else:
            plan += [(split, city, "pano_label_balanced.txt") for city in CROSS_AREA[split]]
    return plan


def _require_city(root: Path, city: str, mode: str, plan: list[tuple[str, str, str]]) -> None:
    needed_for = "/".join(sorted({split for split, c, _ in plan if c == city}))
    hint = (f"VIGOR {mode} needs city {city} for its {needed_for} split (a partial download? "
            f"set `splits` on this source to ingest only the splits whose cities are present)")
    require_dir(root / city / "panorama", hint)
    require_dir(root / city / "satellite", hint)
    require_dir(root / "splits" / city, hint)


def _satellite_list(root: Path, city: str) -> list[str]:
    path = require_file(root / "splits" / city / "satellite_list.txt", "VIGOR satellite list")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _label_rows(root: Path, split: str, city: str, label_file: str) -> list[dict]:
    path = require_file(root / "splits" / city / label_file, f"VIGOR labels for {city}")
    rel = f"splits/{city}/{label_file}"
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != LABEL_FIELDS:
            raise DataError(path, f"line {n}: expected {LABEL_FIELDS} space-separated fields (panorama, then "
                                  f"4 x satellite name + 2 offsets), found {len(fields)}")
        pano, sat_names = fields[0], fields[1::3]
        offsets = [[parse_float(fields[i]), parse_float(fields[i + 1])] for i in range(2, LABEL_FIELDS, 3)]
        if any(v is None for pair in offsets for v in pair):
            raise DataError(path, f"line {n}: satellite offsets must be numbers, got {line.strip()!r}")
        pano_lat, pano_lon = _panorama_latlon(pano)
        meta = {"city": city, "panorama_lat": pano_lat, "panorama_lon": pano_lon,
                "positive_offset": offsets[0], "semi_positive_offsets": offsets[1:]}
        rows.append(pair_row(split, "panorama", _location_id(city, sat_names[0]), f"{city}/panorama/{pano}",
                             f"{city}/satellite/{sat_names[0]}", origin=f"{rel} line {n}",
                             semi_positive_ids=[_location_id(city, s) for s in sat_names[1:]],
                             query_meta=meta, **_satellite_latlon(sat_names[0])))
    return rows


def _location_id(city: str, satellite_name: str) -> str:
    return f"{city}/{Path(satellite_name).stem}"


def _satellite_latlon(name: str) -> dict[str, float | None]:
    """`satellite_<lat>_<lon>.png` -> lat/lon; None where the name does not follow the pattern."""
    parts = Path(name).stem.split("_")
    ok = len(parts) == 3 and parts[0] == "satellite"
    return {"lat": parse_float(parts[1]) if ok else None, "lon": parse_float(parts[2]) if ok else None}


def _panorama_latlon(name: str) -> tuple[float | None, float | None]:
    """`<panoid>,<lat>,<lon>,.jpg` -> lat/lon; None where the name does not follow the pattern."""
    parts = name.rsplit(",", 3)
    return (parse_float(parts[1]), parse_float(parts[2])) if len(parts) == 4 else (None, None)
