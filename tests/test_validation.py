"""Validation stage: a tiny real dataset passes cleanly; each planted defect is caught and named."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_assets.errors import DataError
from data_assets.io import sha256_file
from data_assets.manifest import SCHEMA, read_manifest, write_manifest
from data_assets.validation import ValidateConfig, ValidationResult, load_report, validate_manifest

SIDE = 48  # px: above min_image_side=32
PAIRS_PER_GROUP = 4  # pairs per (split, modality); the floor below is 3
GROUPS = [("train", "uav"), ("train", "street_map"), ("test", "uav"), ("test", "street_map")]
ROWS = len(GROUPS) * PAIRS_PER_GROUP + 2  # + 2 gallery-only satellites in test


def cfg(**overrides) -> ValidateConfig:
    base = dict(max_bad_fraction=0.0, min_pairs_per_modality=3, min_image_side=32, max_image_side=1024,
                thumbnails=3, workers=2)
    return ValidateConfig(**{**base, **overrides})


def save_image(path: Path, seed: int, size=(SIDE, SIDE)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = random.Random(seed).randbytes(size[0] * size[1] * 3)  # noisy: a JPEG with real scan data
    Image.frombytes("RGB", size, noise).save(path)
    return path


def make_dataset(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """tmp_path/data/{query,satellite}/... and a manifest frame whose dataset_root is relative."""
    root = tmp_path / "data"
    rows = []
    n = 0
    for split, modality in GROUPS:
        for k in range(PAIRS_PER_GROUP):
            n += 1
            loc = f"loc{n:03d}"
            q = save_image(root / "query" / modality / f"{loc}.jpg", n)
            s = save_image(root / "satellite" / f"{loc}.png", 1000 + n)
            rows.append(dict(pair_id=f"p{n:03d}", kind="pair", source="tiny", dataset_root="data", split=split,
                             modality=modality, location_id=f"tiny/{loc}", query_path=str(q.relative_to(root)),
                             satellite_path=str(s.relative_to(root)), query_sha256=sha256_file(q),
                             satellite_sha256=sha256_file(s), lat=40.0 + n / 100, lon=-3.0 - n / 100,
                             semi_positive_ids=[], derived=False, query_meta="{}", ground_truth="{}"))
    for g in range(2):
        n += 1
        s = save_image(root / "satellite" / f"distractor{g}.png", 1000 + n)
        rows.append(dict(pair_id=f"g{g}", kind="gallery", source="tiny", dataset_root="data", split="test",
                         modality=None, location_id=f"tiny/distractor{g}", query_path=None,
                         satellite_path=str(s.relative_to(root)), query_sha256=None,
                         satellite_sha256=sha256_file(s), lat=None, lon=None, semi_positive_ids=[],
                         derived=False, query_meta=None, ground_truth="{}"))
    return root, pd.DataFrame(rows)


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return make_dataset(tmp_path)


def run(tmp_path: Path, df: pd.DataFrame, config: ValidateConfig | None = None, **kw) -> ValidationResult:
    manifest = write_manifest(df, tmp_path / "in" / "manifest.parquet")
    return validate_manifest(manifest, config or cfg(), tmp_path / "out", base_dir=tmp_path, **kw)


def quarantine(result: ValidationResult) -> pd.DataFrame:
    return pd.read_csv(result.quarantine_path, keep_default_na=False)


def assert_caught(result: ValidationResult, pair_id: str, check: str, reason_part: str) -> None:
    """The row is quarantined for `check` with a reason mentioning `reason_part`, and is gone."""
    q = quarantine(result)
    lines = q[(q["pair_id"] == pair_id) & (q["expectation"] == check)]
    assert len(lines) == 1, f"{pair_id} not quarantined by {check}:\n{q}"
    assert reason_part in lines["reason"].iat[0], lines["reason"].iat[0]
    assert pair_id not in set(read_manifest(result.manifest_path)["pair_id"])
    report = load_report(result.report_path)
    entry = next(e for e in report["expectations"] if e["name"] == check)
    assert entry["success"] is False and entry["unexpected_count"] >= 1
    assert any(ex["pair_id"] == pair_id for ex in entry["examples"])


def test_clean_dataset_passes(tmp_path, dataset):
    _, df = dataset
    result = run(tmp_path, df)
    assert result.passed and result.failures == []
    assert (result.rows_in, result.rows_out, result.bad_rows, result.bad_fraction) == (ROWS, ROWS, 0, 0.0)
    assert result.counts == {"queries": {"train": {"uav": 4, "street_map": 4}, "test": {"uav": 4, "street_map": 4}},
                             "gallery": {"test": {"satellite": 2}}}
    out = read_manifest(result.manifest_path)
    assert sorted(out["pair_id"]) == sorted(df["pair_id"])  # gallery rows survive too
    assert quarantine(result).empty
    report = load_report(result.report_path)
    assert report["passed"] and all(e["success"] for e in report["expectations"])
    names = {e["name"] for e in report["expectations"]}
    assert {"query_decodes", "satellite_exists", "no_train_test_leak", "unique_pair",
            "min_pairs:test/street_map"} <= names
    assert len(result.thumbnails) == 3 and all(p.is_file() for p in result.thumbnails)
    thumb = Image.open(result.thumbnails[0])
    assert thumb.height == 128 and thumb.width > 2 * 128  # query | satellite side by side
    html = result.docs_path.read_text()
    assert "PASSED" in html and "data:image/png;base64," in html and "expect_column_values_to_be_in_set" in html
    assert "http://" not in html and "https://" not in html  # self-contained, no CDN


@pytest.mark.parametrize("defect", ["missing", "truncated", "text", "tiny"])
def test_bad_query_file_is_caught(tmp_path, dataset, defect):
    root, df = dataset
    victim = df.iloc[5]
    path = root / victim["query_path"]
    if defect == "missing":
        path.unlink()
        check, reason = "query_exists", "does not exist"
    elif defect == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        check, reason = "query_decodes", "cannot be decoded"
    elif defect == "text":
        path.write_text("this is not a JPEG\n" * 20)
        check, reason = "query_decodes", "not an image"
    else:
        save_image(path, 7, size=(8, 8))
        check, reason = "size:query_width", "got 8"
    result = run(tmp_path, df)
    assert_caught(result, victim["pair_id"], check, reason)
    if defect == "tiny":
        assert_caught(result, victim["pair_id"], "size:query_height", "outside [32, 1024]")
    assert result.bad_rows == 1 and result.rows_out == ROWS - 1
    assert not result.passed  # max_bad_fraction=0 in these tests


def test_truncated_jpeg_passes_header_only_check(tmp_path, dataset):
    """decode_images=False reads headers only: documents what the full decode buys."""
    root, df = dataset
    path = root / df.iloc[5]["query_path"]
    path.write_bytes(path.read_bytes()[:-200])  # header intact, pixel data cut
    assert run(tmp_path, df, cfg(decode_images=False)).bad_rows == 0
    assert run(tmp_path, df, cfg(decode_images=True)).bad_rows == 1


def test_missing_satellite_is_caught(tmp_path, dataset):
    _, df = dataset
    df.loc[2, "satellite_path"] = "satellite/nowhere.png"
    assert_caught(run(tmp_path, df), df.loc[2, "pair_id"], "satellite_exists", "nowhere.png")


def test_path_escaping_root_is_caught(tmp_path, dataset):
    _, df = dataset
    df.loc[3, "query_path"] = "../../etc/passwd"
    assert_caught(run(tmp_path, df), df.loc[3, "pair_id"], "query_exists", "escapes the dataset root")


@pytest.mark.parametrize("column,value", [("lat", 120.0), ("lon", -200.0)])
def test_out_of_range_coordinates(tmp_path, dataset, column, value):
    _, df = dataset
    df.loc[4, column] = value
    assert_caught(run(tmp_path, df), df.loc[4, "pair_id"], f"range:{column}", str(value))


def test_bad_modality_and_split(tmp_path, dataset):
    _, df = dataset
    df.loc[1, "modality"] = "drone"
    df.loc[9, "split"] = "holdout"
    result = run(tmp_path, df)
    assert_caught(result, df.loc[1, "pair_id"], "in_set:modality", "'drone'")
    assert_caught(result, df.loc[9, "pair_id"], "in_set:split", "'holdout'")


def test_location_in_train_and_test_quarantines_all_its_rows(tmp_path, dataset):
    _, df = dataset
    train_row, test_row = df.index[df["split"] == "train"][0], df.index[df["split"] == "test"][0]
    df.loc[test_row, "location_id"] = df.loc[train_row, "location_id"]
    result = run(tmp_path, df)
    for row in (train_row, test_row):
        assert_caught(result, df.loc[row, "pair_id"], "no_train_test_leak", "both train and test")
    assert result.bad_rows == 2


def test_protocols_that_share_satellites_across_splits_are_not_leaks(tmp_path, dataset):
    """VIGOR same-area lists the same satellite tiles in train and test by design; ingest flags it."""
    _, df = dataset
    train_row, test_row = df.index[df["split"] == "train"][0], df.index[df["split"] == "test"][0]
    df.loc[test_row, ["location_id", "satellite_path"]] = df.loc[train_row, ["location_id", "satellite_path"]].values
    shared_gallery = df.iloc[[-1]].assign(split="train", pair_id="g-train")  # same tile in both galleries
    df = pd.concat([df, shared_gallery], ignore_index=True)
    manifest = write_manifest(df, tmp_path / "in" / "manifest.parquet",
                              metadata={"sources": [{"name": "tiny", "satellites_shared_across_splits": True}]})
    result = validate_manifest(manifest, cfg(), tmp_path / "out", base_dir=tmp_path)
    assert result.passed and result.bad_rows == 0, result.failures


def test_duplicates_keep_the_first_copy(tmp_path, dataset):
    _, df = dataset
    same_pair = df.iloc[[0]].assign(pair_id="copy-of-p001")
    same_id = df.iloc[[1]].assign(query_path="query/uav/other.jpg")  # pair_id p002 again
    result = run(tmp_path, pd.concat([df, same_pair, same_id], ignore_index=True))
    assert_caught(result, "copy-of-p001", "unique_pair", "duplicate pair")
    q = quarantine(result)
    assert "p001" not in set(q["pair_id"])  # the original stays
    assert set(q.loc[q["expectation"] == "unique_pair_id", "row"]) == {len(df) + 1}
    assert (read_manifest(result.manifest_path)["pair_id"] == "p002").sum() == 1
    report = load_report(result.report_path)
    entry = next(e for e in report["expectations"] if e["name"] == "unique_pair")
    assert (entry["unexpected_count"], entry["quarantined"]) == (2, 1)  # GX sees both copies


def test_null_required_fields(tmp_path, dataset):
    _, df = dataset
    df.loc[6, "query_path"] = None
    df.loc[7, "location_id"] = None
    # write_manifest refuses nulls in non-nullable columns, but a foreign file may hold them
    relaxed = pa.schema([f.with_nullable(True) for f in SCHEMA])
    path = tmp_path / "in" / "manifest.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(df, schema=relaxed, preserve_index=False), path)
    result = validate_manifest(path, cfg(), tmp_path / "out", base_dir=tmp_path)
    assert_caught(result, df.loc[6, "pair_id"], "not_null:query_path", "no query_path")
    assert_caught(result, df.loc[7, "pair_id"], "not_null:location_id", "is null")
    q = quarantine(result)
    assert set(q.loc[q["pair_id"] == df.loc[6, "pair_id"], "expectation"]) == {"not_null:query_path"}


def test_row_with_several_problems_is_listed_with_each(tmp_path, dataset):
    _, df = dataset
    df.loc[0, "lat"] = 95.0
    df.loc[0, "modality"] = "drone"
    q = quarantine(run(tmp_path, df))
    assert set(q.loc[q["pair_id"] == "p001", "expectation"]) == {"range:lat", "in_set:modality"}


def test_modality_under_floor_fails_the_table(tmp_path, dataset):
    _, df = dataset
    sparse = df[~((df["split"] == "test") & (df["modality"] == "street_map"))].copy()
    sparse = pd.concat([sparse, df[(df["split"] == "test") & (df["modality"] == "street_map")].head(2)])
    result = run(tmp_path, sparse)
    assert result.bad_rows == 0 and not result.passed
    assert [f["name"] for f in result.failures] == ["min_pairs:test/street_map"]
    report = load_report(result.report_path)
    assert report["table_failures"][0]["observed_value"] == 2
    assert "fewer than 3 valid street_map query pairs in test" in report["table_failures"][0]["reason"]


def test_floor_counts_rows_left_after_quarantine(tmp_path, dataset):
    root, df = dataset
    victims = df[(df["split"] == "train") & (df["modality"] == "uav")].head(2)
    for rel in victims["query_path"]:
        (root / rel).unlink()
    result = run(tmp_path, df, cfg(max_bad_fraction=0.5))
    assert result.bad_rows == 2
    assert [f["name"] for f in result.failures] == ["min_pairs:train/uav"]


def test_passed_flips_at_the_threshold(tmp_path, dataset):
    _, df = dataset
    df.loc[4, "lat"] = 120.0  # 1 bad row of 18
    assert run(tmp_path, df, cfg(max_bad_fraction=0.06)).passed
    result = run(tmp_path, df, cfg(max_bad_fraction=0.05))
    assert not result.passed and result.failures[0]["name"] == "max_bad_fraction"
    assert "query/street_map/loc005.jpg (range:lat)" in result.failures[0]["reason"]  # the CLI line names it
    assert result.bad_fraction == pytest.approx(1 / ROWS)
    assert load_report(result.report_path)["passed"] is False
    assert "FAILED" in result.docs_path.read_text()


def test_cache_skips_verified_files_until_they_change(tmp_path, dataset):
    root, df = dataset
    cache = tmp_path / "cache"
    assert run(tmp_path, df, cache_dir=cache).bad_rows == 0
    entries = json.loads((cache / "image_checks.json").read_text())["entries"]
    assert len(entries) == ROWS * 2 - 2  # every distinct image (gallery rows have no query)
    path = root / df.iloc[5]["query_path"]
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)  # same size, and the old mtime put back: looks unchanged
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(tmp_path, df, cache_dir=cache).bad_rows == 0  # proves the file was not reopened
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert_caught(run(tmp_path, df, cache_dir=cache), df.iloc[5]["pair_id"], "query_decodes", "not an image")


def test_rerun_replaces_outputs(tmp_path, dataset):
    root, df = dataset
    (root / df.iloc[5]["query_path"]).unlink()
    assert run(tmp_path, df).bad_rows == 1
    save_image(root / df.iloc[5]["query_path"], 3)
    result = run(tmp_path, df)
    assert result.bad_rows == 0 and quarantine(result).empty and result.passed


def test_unreadable_inputs_raise_data_error(tmp_path, dataset):
    _, df = dataset
    bad = tmp_path / "broken.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataError, match="Parquet"):
        validate_manifest(bad, cfg(), tmp_path / "out", base_dir=tmp_path)
    manifest = write_manifest(df, tmp_path / "in" / "manifest.parquet")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(DataError, match="not writable"):
        validate_manifest(manifest, cfg(), blocker / "out", base_dir=tmp_path)


def test_load_report_rejects_bad_files(tmp_path, dataset):
    with pytest.raises(DataError, match="not found"):
        load_report(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text(json.dumps({"passed": True}))
    with pytest.raises(DataError, match="threshold"):
        load_report(tmp_path / "partial.json")


def test_gallery_views_survive_but_do_not_count_towards_the_floor(tmp_path, dataset):
    """University-1652's gallery_drone extras (role=gallery) are kept, but are not queries."""
    _, df = dataset
    test_street = df.index[(df["split"] == "test") & (df["modality"] == "street_map")]
    df.loc[test_street[:2], "query_meta"] = json.dumps({"folder": "gallery_street", "role": "gallery"})
    result = run(tmp_path, df)
    assert result.bad_rows == 0 and result.rows_out == ROWS
    assert result.counts["queries"]["test"]["street_map"] == 2
    assert result.counts["gallery_views"] == {"test": {"street_map": 2}}
    assert [f["name"] for f in result.failures] == ["min_pairs:test/street_map"]


def test_invalid_json_metadata_is_caught(tmp_path, dataset):
    _, df = dataset
    df.loc[3, "ground_truth"] = "{roads: 3"
    assert_caught(run(tmp_path, df), df.loc[3, "pair_id"], "json:ground_truth", "not valid JSON")


def test_symlink_out_of_the_root_is_caught(tmp_path, dataset):
    root, df = dataset
    outside = save_image(tmp_path / "elsewhere" / "x.jpg", 5)
    link = root / df.loc[8, "query_path"]
    link.unlink()
    link.symlink_to(outside)
    assert_caught(run(tmp_path, df), df.loc[8, "pair_id"], "query_exists", "escapes the dataset root")


def test_gx_writes_nothing_to_home(tmp_path, dataset):
    """A fresh interpreter with HOME in tmp_path: GX must leave no ~/.great_expectations behind."""
    _, df = dataset
    manifest = write_manifest(df, tmp_path / "in" / "manifest.parquet")
    home = tmp_path / "home"
    home.mkdir()
    code = ("import sys; from pathlib import Path; from data_assets.validation import ValidateConfig, validate_manifest;"
            f"r = validate_manifest(Path({str(manifest)!r}), ValidateConfig(min_pairs_per_modality=3), "
            f"Path({str(tmp_path / 'out')!r}), base_dir=Path({str(tmp_path)!r})); sys.exit(0 if r.passed else 3)")
    env = {**os.environ, "HOME": str(home)}
    env.pop("GX_ANALYTICS_ENABLED", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(home.iterdir()) == []
