"""Hostile manifests (missing columns, ../ escapes, NaN coordinates, duplicate ids, garbage files)
and property-based tests of the manifest parsers: every input is ingested, or refused with a
DataError naming the file - never a traceback - and an escaping row is quarantined, not fatal."""
from __future__ import annotations

import string
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_assets.errors import ConfigError, DataError
from data_assets.ingest import IngestConfig, ingest
from data_assets.ingest.config import SourceConfig
from data_assets.manifest import COLUMNS, read_manifest, write_manifest
from data_assets.validation.files import add_file_facts
from test_ingest import GENERIC_ROWS, make_generic


def _ingest(tmp_path: Path, rows: list[dict]) -> tuple[pd.DataFrame, dict]:
    make_generic(tmp_path / "G", rows)
    out = tmp_path / "out" / "manifest.parquet"
    summary = ingest(IngestConfig(sources=[SourceConfig(adapter="manifest", root="G")]), out, base_dir=tmp_path)
    return read_manifest(out), summary


def test_an_escaping_row_is_quarantined_with_its_reason_and_the_source_goes_on(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"not yours")
    rows = [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[0], location_id="x", query_path="../secret.png",
                                                    satellite_path="sat/a.png")]
    df, summary = _ingest(tmp_path, rows[:1] + rows[1:])
    assert len(df) == 4 and summary["escaping_paths"] == 1
    facts = add_file_facts(df, tmp_path, decode=True, workers=2, cache_dir=None)
    bad = facts[facts.query_path == "../secret.png"].iloc[0]
    assert not bad.query_exists and "escapes the dataset root" in bad.query_error and pd.isna(bad.query_sha256)
    good = facts[facts.query_path != "../secret.png"]
    assert good.satellite_decodes.all()


@pytest.mark.parametrize("change, message", [
    ({"lat": "nan"}, "lat 'nan' is not a finite number"), ({"lon": "inf"}, "lon 'inf' is not a finite number"),
    ({"split": "../train"}, "split '../train' is not one of"),
])
def test_bad_values_name_the_line(tmp_path, change, message):
    rows = [dict(r) for r in GENERIC_ROWS]
    rows[1].update(change)
    with pytest.raises(DataError, match=f"line 3: {message}"):
        _ingest(tmp_path, rows)


def test_missing_columns_and_duplicate_ids(tmp_path):
    with pytest.raises(DataError, match="missing required columns: location_id"):
        _ingest(tmp_path / "a", [{k: v for k, v in r.items() if k != "location_id"} for r in GENERIC_ROWS])
    twice = [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[1], satellite_path="sat/a.png")]
    with pytest.raises(DataError, match="names two satellite images"):
        _ingest(tmp_path / "b", twice)
    df, summary = _ingest(tmp_path / "c", [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[0])])
    assert summary["duplicate_rows_dropped"] == 1 and len(df) == 3


PATH = st.one_of(st.sampled_from(["uav/a.jpg", "maps/b.png", "sat/a.png", "sat/b.png", "sat/c.png", "../x.png",
                                  "/etc/hosts", "sat/../../x.png", "sat//a.png", "./sat/b.png", "missing.png"]),
                 st.text(string.ascii_letters + "./_-", max_size=12))
CELL = st.one_of(st.just(""), st.text(string.printable, max_size=8))
ROW = st.fixed_dictionaries({
    "query_path": PATH | st.just(""), "satellite_path": PATH, "location_id": st.sampled_from(["a", "b", "c", "d", ""]),
    "modality": st.sampled_from(["uav", "street_map", "panorama", "ground", "", "drone"]),
    "split": st.sampled_from(["train", "val", "test", "dev"]),
    "lat": st.one_of(CELL, st.sampled_from(["nan", "inf", "-91", "45.5", "1e400"])),
    "lon": st.one_of(CELL, st.sampled_from(["nan", "-180", "180.1", "7"])),
    "derived": st.sampled_from(["", "true", "no", "maybe"]), "semi_positive_ids": CELL,
    "query_meta": st.sampled_from(["", "{}", '{"a": 1}', "{bad"]), "ground_truth": st.sampled_from(["", "{}", "[1"]),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=6))
def test_any_generic_manifest_is_ingested_or_refused_with_a_data_error(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("m")
    try:
        df, summary = _ingest(tmp, rows)
    except (DataError, ConfigError) as e:
        assert str(e)
        return
    outside = [p for p in df.query_path.dropna().tolist() + df.satellite_path.tolist()
               if p.startswith(("..", "/")) or "/../" in p]
    assert summary["escaping_paths"] >= (1 if outside else 0)
    for column in ("query", "satellite"):  # nothing outside the root was ever read (hashed)
        escaping = df[f"{column}_path"].fillna("").str.startswith(("..", "/"))
        assert df.loc[escaping, f"{column}_sha256"].isna().all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_as_a_parquet_manifest_is_a_data_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "manifest.parquet"
    path.write_bytes(data)
    with pytest.raises(DataError, match="manifest"):
        read_manifest(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drop=st.sets(st.sampled_from(COLUMNS)), n=st.integers(0, 3))
def test_manifest_write_read_round_trip_or_names_missing_columns(tmp_path_factory, drop, n):
    frame = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "kind": ["pair"] * n, "source": ["s"] * n,
                          "dataset_root": ["r"] * n, "split": ["train"] * n, "modality": ["uav"] * n,
                          "location_id": [f"s/{i}" for i in range(n)], "query_path": ["q.png"] * n,
                          "satellite_path": ["s.png"] * n, "derived": [False] * n, "lat": [float("nan")] * n})
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    path = tmp_path_factory.mktemp("w") / "manifest.parquet"
    required = {"pair_id", "kind", "source", "dataset_root", "split", "location_id", "satellite_path", "derived"}
    if drop & required:
        with pytest.raises(DataError, match="missing required columns"):
            write_manifest(frame, path)
        return
    back = read_manifest(write_manifest(frame, path))
    assert list(back.columns) == list(COLUMNS) and len(back) == n
