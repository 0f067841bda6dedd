"""Ingestion adapters against tiny fixture trees in each dataset's exact on-disk layout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from data_assets.errors import ConfigError, DataError
from data_assets.ingest import IngestConfig, SourceConfig, detect_adapter, ingest
from data_assets.ingest.core import CACHE_FILE
from data_assets.io import sha256_file
from data_assets.manifest import manifest_metadata, read_manifest

CITIES = ("Chicago", "NewYork", "SanFrancisco", "Seattle")


# ---------------------------------------------------------------- fixture builders

def image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    Image.new("RGB", (8, 8), ((seed * 37) % 256, (seed * 91) % 256, 128)).save(path, fmt)
    return path


def make_university(root: Path) -> Path:
    n = iter(range(1000))
    for loc in ("0001", "0002", "0003"):  # 0003: a train satellite without any view
        image(root / f"train/satellite/{loc}/{loc}.jpg", next(n))
    image(root / "train/drone/0001/image-01.jpeg", next(n))
    image(root / "train/drone/0001/image-02.jpeg", next(n))
    (root / "train/drone/0001/.DS_Store").write_bytes(b"\0")
    (root / "train/drone/0001/notes.txt").write_text("not an image")
    image(root / "train/drone/0002/image-01.jpeg", next(n))
    (root / "train/street/0001").mkdir(parents=True)  # empty street / google folders are real
    image(root / "train/street/0002/s1.jpg", next(n))
    image(root / "train/google/0001/g1.jpg", next(n))
    (root / "train/google/0002").mkdir(parents=True)
    for loc in ("0100", "0101", "0102", "0103"):  # 0102, 0103: distractors, no query
        image(root / f"test/gallery_satellite/{loc}/{loc}.jpg", next(n))
    for loc in ("0100", "0101"):
        image(root / f"test/query_satellite/{loc}/{loc}.jpg", next(n))
    for rel in ("0100/image-01.jpeg", "0100/image-02.jpeg", "0101/image-01.jpeg"):  # queries repeat in the gallery
        seed = next(n)
        image(root / "test/query_drone" / rel, seed)
        image(root / "test/gallery_drone" / rel, seed)
    image(root / "test/gallery_drone/0102/image-01.jpeg", next(n))
    image(root / "test/gallery_drone/0102/image-02.jpeg", next(n))
    image(root / "test/query_street/0100/q.jpg", next(n))
    image(root / "test/gallery_street/0100/q.jpg", next(n))
    image(root / "test/gallery_street/0102/d.jpg", next(n))
    image(root / "test/4K_drone/0100/4k-01.jpeg", next(n))
    return root


def sat_name(city: str, i: int) -> str:
    return f"satellite_{40 + CITIES.index(city) + i / 100:.4f}_{-87 - i / 100:.4f}.png"


def pano_name(city: str, i: int) -> str:
    return f"pano{i}{city[:3]},{40 + CITIES.index(city) + i / 100 + 0.0003:.6f},{-87 - i / 100:.6f},.jpg"


def label_line(city: str, pano: int, sats: list[int]) -> str:
    fields = [pano_name(city, pano)]
    for k, s in enumerate(sats):
        fields += [sat_name(city, s), f"{k + 1.5:.4f}", f"{-k - 0.25:.4f}"]
    return " ".join(fields)


def make_vigor(root: Path, skip_panorama: tuple[str, int] | None = None) -> Path:
    """Per city: satellites S0..S4; train panoramas P0 (pos S0), P1 (pos S1); test P2 (pos S2)."""
    for c in CITIES:
        for i in range(5):
            image(root / c / "satellite" / sat_name(c, i), i)
        for i in range(3):
            if (c, i) != skip_panorama:
                image(root / c / "panorama" / pano_name(c, i), 10 + i)
        splits = root / "splits" / c
        splits.mkdir(parents=True)
        (splits / "satellite_list.txt").write_text("".join(sat_name(c, i) + "\n" for i in range(5)))
        train = [label_line(c, 0, [0, 1, 2, 3]), label_line(c, 1, [1, 0, 2, 3])]
        test = [label_line(c, 2, [2, 1, 3, 0])]
        (splits / "same_area_balanced_train.txt").write_text("\n".join(train) + "\n")
        (splits / "same_area_balanced_test.txt").write_text("\n".join(test) + "\n")
        (splits / "pano_label_balanced.txt").write_text("\n".join(train + test) + "\n")
    return root


def make_cvusa(root: Path) -> Path:
    def line(i: int) -> str:
        return f"bingmap/19/{i:07d}.jpg,streetview/panos/{i:07d}.jpg,streetview/annotations/{i:07d}.png"
    for i in range(1, 6):
        image(root / f"bingmap/19/{i:07d}.jpg", i)
        image(root / f"streetview/panos/{i:07d}.jpg", 50 + i)
    (root / "splits").mkdir(parents=True)
    (root / "splits/train-19zl.csv").write_text("\n".join(line(i) for i in (1, 2, 3)) + "\n")
    (root / "splits/val-19zl.csv").write_text("\n".join(line(i) for i in (4, 5)) + "\n")
    return root


QUERY_META = '{"zoom": 17,  "tags": ["a", "b"]}'  # odd spacing: must come through byte for byte
GROUND_TRUTH = '{"roads": 3, "note": "路口"}'
GENERIC_ROWS = [
    {"query_path": "uav/a.jpg", "satellite_path": "sat/a.png", "location_id": "a", "modality": "uav",
     "split": "train", "lat": "36.1", "lon": "-115.2", "derived": "true", "semi_positive_ids": "b;c",
     "query_meta": QUERY_META, "ground_truth": GROUND_TRUTH},
    {"query_path": "maps/b.png", "satellite_path": "sat/b.png", "location_id": "b", "modality": "street_map",
     "split": "test", "lat": "", "lon": "", "derived": "", "semi_positive_ids": "", "query_meta": "",
     "ground_truth": ""},
    {"query_path": "", "satellite_path": "sat/c.png", "location_id": "c", "modality": "", "split": "test",
     "lat": "36.2", "lon": "-115.3", "derived": "", "semi_positive_ids": "", "query_meta": "",
     "ground_truth": GROUND_TRUTH},
]


def make_generic(root: Path, rows: list[dict] = GENERIC_ROWS, name: str = "manifest.csv") -> Path:
    for i, rel in enumerate(["uav/a.jpg", "maps/b.png", "sat/a.png", "sat/b.png", "sat/c.png"]):
        image(root / rel, i)
    pd.DataFrame(rows).to_csv(root / name, index=False)
    return root


def run(tmp_path: Path, *sources: SourceConfig, cache: bool = True, **cfg) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "out" / "manifest.parquet"
    summary = ingest(IngestConfig(sources=list(sources), **cfg), out, base_dir=tmp_path,
                     cache_dir=tmp_path / "cache" if cache else None)
    return read_manifest(out), summary


def jmeta(text) -> dict:
    """query_meta as a dict; {} where null (pandas reads a null string as NaN)."""
    return json.loads(text) if isinstance(text, str) else {}


def meta(row) -> dict:
    return jmeta(row["query_meta"])


# ---------------------------------------------------------------- University-1652

def test_university1652_rows_kinds_and_distractors(tmp_path):
    make_university(tmp_path / "U")
    df, summary = run(tmp_path, SourceConfig(adapter="university1652", root="U"))
    assert (summary["rows"], summary["pairs"], summary["gallery"], summary["missing_files"]) == (15, 12, 3, 0)
    train, test = df[df.split == "train"], df[df.split == "test"]
    assert len(train) == 6 and len(test) == 9
    assert sorted(train[train.kind == "pair"].modality) == ["ground", "ground", "uav", "uav", "uav"]
    folders = sorted(meta(r)["folder"] for _, r in train[train.kind == "pair"].iterrows())
    assert folders == ["drone", "drone", "drone", "google", "street"]
    # a train satellite without views stays as a gallery row
    assert train[train.kind == "gallery"].location_id.tolist() == ["university1652/0003"]
    # test: query_drone + query_street are queries against gallery_satellite
    queries = test[(test.kind == "pair") & test.query_meta.map(lambda m: "role" not in jmeta(m))]
    assert sorted(queries.query_path) == ["test/query_drone/0100/image-01.jpeg", "test/query_drone/0100/image-02.jpeg",
                                          "test/query_drone/0101/image-01.jpeg", "test/query_street/0100/q.jpg"]
    assert set(queries.satellite_path) == {"test/gallery_satellite/0100/0100.jpg", "test/gallery_satellite/0101/0101.jpg"}
    # the distractor satellites stay in the gallery
    gallery = test[test.kind == "gallery"]
    assert sorted(gallery.location_id) == ["university1652/0102", "university1652/0103"]
    assert gallery.modality.isna().all() and gallery.query_path.isna().all()
    # gallery_* views of ids without a query: satellite->query distractors, never queries
    role = test[test.query_meta.map(lambda m: jmeta(m).get("role") == "gallery")]
    assert sorted(zip(role.modality, role.query_path)) == [
        ("ground", "test/gallery_street/0102/d.jpg"),
        ("uav", "test/gallery_drone/0102/image-01.jpeg"), ("uav", "test/gallery_drone/0102/image-02.jpeg")]
    assert (role.kind == "pair").all() and set(role.location_id) == {"university1652/0102"}
    assert summary["counts"]["university1652"] == {"uav": {"train": 3, "test": 5}, "ground": {"train": 2, "test": 2},
                                                   "gallery": {"train": 1, "test": 2}}
    assert df.lat.isna().all() and not df.derived.any()
    assert (df.source == "university1652").all() and (df.dataset_root == "U").all()


def test_university1652_4k_drone_and_split_filter(tmp_path):
    make_university(tmp_path / "U")
    df, _ = run(tmp_path, SourceConfig(adapter="university1652", root="U", include_4k_drone=True, splits=["test"]))
    assert set(df.split) == {"test"} and len(df) == 10
    four_k = df[df.query_path.fillna("").str.startswith("test/4K_drone/")]
    assert four_k.modality.tolist() == ["uav"] and meta(four_k.iloc[0]) == {"folder": "4K_drone"}


def test_university1652_bad_layouts(tmp_path):
    root = make_university(tmp_path / "U")
    shutil.rmtree(root / "test/4K_drone")
    with pytest.raises(DataError, match="4K_drone.*include_4k_drone is set"):
        run(tmp_path, SourceConfig(adapter="university1652", root="U", include_4k_drone=True))
    image(root / "test/query_drone/0999/x.jpeg")
    with pytest.raises(DataError, match=r"query_drone/0999: no test/gallery_satellite/0999/ satellite image"):
        run(tmp_path, SourceConfig(adapter="university1652", root="U"))
    shutil.rmtree(root / "test/query_drone/0999")
    image(root / "train/satellite/0001/second.jpg")
    with pytest.raises(DataError, match=r"train/satellite/0001: expected exactly one satellite image, found 2"):
        run(tmp_path, SourceConfig(adapter="university1652", root="U"))
    shutil.rmtree(root / "train")
    with pytest.raises(DataError, match=r"U/train/satellite: folder not found"):
        run(tmp_path, SourceConfig(adapter="university1652", root="U"))
    df, _ = run(tmp_path, SourceConfig(adapter="university1652", root="U", splits=["test"]))
    assert len(df) == 9


# ---------------------------------------------------------------- VIGOR

def test_vigor_same_area(tmp_path):
    make_vigor(tmp_path / "V")
    df, summary = run(tmp_path, SourceConfig(adapter="vigor", root="V"))
    assert (summary["rows"], summary["pairs"], summary["gallery"]) == (40, 12, 28)
    pairs = df[df.kind == "pair"]
    assert (pairs.modality == "panorama").all()
    assert pairs.groupby("split").size().to_dict() == {"test": 4, "train": 8}
    assert df[df.kind == "gallery"].groupby("split").size().to_dict() == {"test": 16, "train": 12}
    row = pairs[pairs.query_path == f"Chicago/panorama/{pano_name('Chicago', 0)}"].iloc[0]
    assert row.satellite_path == f"Chicago/satellite/{sat_name('Chicago', 0)}"
    assert row.location_id == f"vigor/Chicago/{Path(sat_name('Chicago', 0)).stem}"
    assert list(row.semi_positive_ids) == [f"vigor/Chicago/{Path(sat_name('Chicago', i)).stem}" for i in (1, 2, 3)]
    assert (row.lat, row.lon) == (40.0, -87.0)
    m = meta(row)
    assert (m["city"], m["panorama_lat"], m["panorama_lon"]) == ("Chicago", 40.0003, -87.0)
    assert m["positive_offset"] == [1.5, -0.25]
    assert m["semi_positive_offsets"] == [[2.5, -1.25], [3.5, -2.25], [4.5, -3.25]]
    # train gallery of one city: the tiles no train panorama points at (S2, S3, S4)
    info = manifest_metadata(tmp_path / "out/manifest.parquet")["sources"][0]
    assert (info["vigor_mode"], info["satellites_shared_across_splits"]) == ("same_area", True)
    gal = df[(df.kind == "gallery") & (df.split == "train") & df.satellite_path.str.startswith("Seattle/")]
    assert sorted(gal.satellite_path) == [f"Seattle/satellite/{sat_name('Seattle', i)}" for i in (2, 3, 4)]
    assert gal.lat.notna().all() and gal.semi_positive_ids.map(len).eq(0).all()


def test_vigor_cross_area_and_partial_download(tmp_path):
    root = make_vigor(tmp_path / "V")
    df, summary = run(tmp_path, SourceConfig(adapter="vigor", root="V", vigor_mode="cross_area"))
    assert (summary["rows"], summary["pairs"], summary["gallery"]) == (20, 12, 8)
    cities = df.satellite_path.str.split("/").str[0]
    assert set(cities[df.split == "train"]) == {"NewYork", "Seattle"}
    assert set(cities[df.split == "test"]) == {"Chicago", "SanFrancisco"}
    assert summary["counts"]["vigor"]["panorama"] == {"train": 6, "test": 6}
    shutil.rmtree(root / "Chicago")  # a partial download: the test cities are incomplete
    with pytest.raises(DataError, match=r"Chicago/panorama: folder not found: VIGOR cross_area needs city Chicago for its test split"):
        run(tmp_path, SourceConfig(adapter="vigor", root="V", vigor_mode="cross_area"))
    with pytest.raises(DataError, match=r"VIGOR same_area needs city Chicago for its test/train split"):
        run(tmp_path, SourceConfig(adapter="vigor", root="V"))
    df, _ = run(tmp_path, SourceConfig(adapter="vigor", root="V", vigor_mode="cross_area", splits=["train"]))
    assert len(df) == 10 and set(df.split) == {"train"}


def test_vigor_bad_label_line(tmp_path):
    root = make_vigor(tmp_path / "V")
    label = root / "splits/Seattle/same_area_balanced_test.txt"
    label.write_text(label.read_text() + "pano,1,2,.jpg satellite_1_2.png 0.5\n")
    with pytest.raises(DataError, match=r"same_area_balanced_test.txt: line 2: expected 13 space-separated fields.*found 3"):
        run(tmp_path, SourceConfig(adapter="vigor", root="V"))


def test_missing_file_is_kept_with_null_hash(tmp_path):
    make_vigor(tmp_path / "V", skip_panorama=("Chicago", 2))
    df, summary = run(tmp_path, SourceConfig(adapter="vigor", root="V"))
    assert summary["rows"] == 40 and summary["missing_files"] == 1
    assert summary["missing_examples"][0].endswith(pano_name("Chicago", 2))
    row = df[df.query_path == f"Chicago/panorama/{pano_name('Chicago', 2)}"].iloc[0]
    assert pd.isna(row.query_sha256) and row.satellite_sha256
    assert df.drop(row.name).query_sha256.dropna().size == 11


# ---------------------------------------------------------------- CVUSA

def test_cvusa(tmp_path):
    make_cvusa(tmp_path / "C")
    df, summary = run(tmp_path, SourceConfig(adapter="cvusa", root="C"))
    assert summary["counts"] == {"cvusa": {"panorama": {"train": 3, "test": 2}}}
    assert (df.kind == "pair").all() and summary["gallery"] == 0
    row = df[df.location_id == "cvusa/0000004"].iloc[0]
    assert (row.split, row.satellite_path, row.query_path) == ("test", "bingmap/19/0000004.jpg",
                                                             "streetview/panos/0000004.jpg")
    assert meta(row) == {"annotation_path": "streetview/annotations/0000004.png"}
    assert row.satellite_sha256 == sha256_file(tmp_path / "C/bingmap/19/0000004.jpg")


def test_cvusa_path_escaping_root(tmp_path):
    root = make_cvusa(tmp_path / "C")
    with open(root / "splits/val-19zl.csv", "a") as f:
        f.write("../elsewhere/sat.jpg,streetview/panos/0000001.jpg,x.png\n")
    # the row is kept unhashed for validation to quarantine; the rest of the source is ingested
    df, summary = run(tmp_path, SourceConfig(adapter="cvusa", root="C"))
    bad = df[df.satellite_path == "../elsewhere/sat.jpg"]
    assert len(bad) == 1 and pd.isna(bad.iloc[0].satellite_sha256) and summary["escaping_paths"] == 1
    assert df[df.satellite_path != "../elsewhere/sat.jpg"].satellite_sha256.notna().all()


# ---------------------------------------------------------------- generic manifest

def test_generic_csv(tmp_path):
    make_generic(tmp_path / "G")
    df, summary = run(tmp_path, SourceConfig(adapter="manifest", root="G", name="maps"))
    assert (summary["rows"], summary["pairs"], summary["gallery"]) == (3, 2, 1)
    a, b, c = (df[df.location_id == f"maps/{x}"].iloc[0] for x in "abc")
    assert (a.kind, a.modality, a.split, a.lat, a.lon, bool(a.derived)) == ("pair", "uav", "train", 36.1, -115.2, True)
    assert list(a.semi_positive_ids) == ["maps/b", "maps/c"]
    assert a.query_meta == QUERY_META and a.ground_truth == GROUND_TRUTH
    assert (b.modality, b.split, bool(b.derived)) == ("street_map", "test", False)
    assert pd.isna(b.query_meta) and pd.isna(b.lat) and pd.isna(b.ground_truth)
    assert c.kind == "gallery" and pd.isna(c.modality) and pd.isna(c.query_path) and pd.isna(c.query_sha256)
    assert c.ground_truth == GROUND_TRUTH and c.satellite_sha256 == sha256_file(tmp_path / "G/sat/c.png")
    assert summary["counts"]["maps"] == {"uav": {"train": 1}, "street_map": {"test": 1}, "gallery": {"test": 1}}


def test_generic_parquet(tmp_path):
    rows = [dict(r) for r in GENERIC_ROWS]
    frame = pd.DataFrame(rows).assign(
        lat=[36.1, None, 36.2], lon=[-115.2, None, -115.3], derived=[True, False, False],
        semi_positive_ids=[["b", "c"], [], []], query_meta=[QUERY_META, None, None])
    root = make_generic(tmp_path / "G")
    frame.to_parquet(root / "pairs.parquet")
    df, _ = run(tmp_path, SourceConfig(adapter="manifest", root="G", manifest_file="pairs.parquet"))
    a = df[df.location_id == "manifest/a"].iloc[0]
    assert list(a.semi_positive_ids) == ["manifest/b", "manifest/c"] and bool(a.derived) and a.lat == 36.1
    assert a.query_meta == QUERY_META and len(df) == 3


@pytest.mark.parametrize("change, message", [
    ({"modality": "drone"}, r"manifest.csv: line 3: modality 'drone' is not one of uav, street_map, panorama, ground"),
    ({"split": "dev"}, r"line 3: split 'dev' is not one of train, val, test"),
    ({"lat": "north"}, r"line 3: lat 'north' is not a number"),
    ({"lon": "200"}, r"line 3: lon 200.0 is outside \[-180, 180\]"),
    ({"query_meta": "{not json"}, r"line 3: query_meta is not valid JSON"),
    ({"derived": "maybe"}, r"line 3: derived 'maybe' is not a boolean"),
    ({"query_path": ""}, r"line 3: query_path is empty but modality is 'street_map'"),
])
def test_generic_bad_rows(tmp_path, change, message):
    rows = [dict(r) for r in GENERIC_ROWS]
    rows[1].update(change)
    make_generic(tmp_path / "G", rows)
    with pytest.raises(DataError, match=message):
        run(tmp_path, SourceConfig(adapter="manifest", root="G"))


def test_generic_missing_columns_and_conflicts(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("modality", "split")} for r in GENERIC_ROWS]
    make_generic(tmp_path / "G", rows)
    with pytest.raises(DataError, match=r"manifest.csv: manifest is missing required columns: modality, split"):
        run(tmp_path, SourceConfig(adapter="manifest", root="G"))
    rows = [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[0], split="test")]
    make_generic(tmp_path / "G2", rows)
    with pytest.raises(DataError, match=r"listed twice with different values \(manifest.csv line 2: split train, "
                                        r"manifest.csv line 5: split test\)"):
        run(tmp_path, SourceConfig(adapter="manifest", root="G2"))
    rows = [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[0])]  # an exact repeat is harmless
    make_generic(tmp_path / "G3", rows)
    df, summary = run(tmp_path, SourceConfig(adapter="manifest", root="G3"))
    assert len(df) == 3 and summary["duplicate_rows_dropped"] == 1
    rows = [dict(r) for r in GENERIC_ROWS] + [dict(GENERIC_ROWS[1], query_path="maps/b2.png", satellite_path="sat/a.png")]
    make_generic(tmp_path / "G4", rows)
    with pytest.raises(DataError, match=r"location_id 'manifest/b' names two satellite images"):
        run(tmp_path, SourceConfig(adapter="manifest", root="G4"))


# ---------------------------------------------------------------- auto-detection, roots, merging

def test_detect_adapter(tmp_path):
    assert detect_adapter(make_university(tmp_path / "U")) == "university1652"
    assert detect_adapter(make_vigor(tmp_path / "V")) == "vigor"
    assert detect_adapter(make_cvusa(tmp_path / "C")) == "cvusa"
    assert detect_adapter(make_generic(tmp_path / "G")) == "manifest"
    (tmp_path / "E").mkdir()
    with pytest.raises(DataError) as e:
        detect_adapter(tmp_path / "E")
    for expected in ("no adapter recognises", "university1652: train/{satellite,drone}", "vigor: splits/<City>",
                     "cvusa: splits/train-19zl.csv", "manifest: a manifest file"):
        assert expected in str(e.value)
    shutil.move(tmp_path / "U", tmp_path / "E" / "University-Release")
    with pytest.raises(DataError, match=r"Did you mean .*University-Release\? It looks like university1652"):
        detect_adapter(tmp_path / "E")
    with pytest.raises(DataError, match=r"nowhere: dataset root does not exist"):
        detect_adapter(tmp_path / "nowhere")


def test_auto_sources_merge_into_one_manifest(tmp_path):
    make_university(tmp_path / "U")
    make_cvusa(tmp_path / "C")
    root = make_generic(tmp_path / "G")
    # no manifest.csv here: auto falls back to manifest.parquet
    pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False).to_parquet(root / "manifest.parquet")
    (root / "manifest.csv").unlink()
    df, summary = run(tmp_path, *(SourceConfig(adapter="auto", root=r) for r in ("U", "C")),
                      SourceConfig(adapter="auto", root=str(root), name="own"))  # absolute root too
    assert set(summary["counts"]) == {"university1652", "cvusa", "own"}
    assert summary["rows"] == 15 + 5 + 3 and df.pair_id.is_unique
    assert set(df[df.source == "own"].dataset_root) == {str(root)}
    info = manifest_metadata(tmp_path / "out/manifest.parquet")
    assert [s["adapter"] for s in info["sources"]] == ["university1652", "cvusa", "manifest"]
    assert [s["rows"] for s in info["sources"]] == [15, 5, 3] and info["counts"] == summary["counts"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["manifest.parquet"]  # no temp files left


def test_bad_roots_and_names(tmp_path):
    with pytest.raises(DataError, match=r"missing: dataset root does not exist or is not a folder \(ingest.sources\[0\].root\)"):
        run(tmp_path, SourceConfig(adapter="cvusa", root="missing"))
    (tmp_path / "E").mkdir()
    with pytest.raises(DataError, match=r"E/splits/train-19zl.csv: file not found: CVUSA train split list"):
        run(tmp_path, SourceConfig(adapter="cvusa", root="E"))
    with pytest.raises(DataError, match=r"E/manifest.csv: manifest file not found"):
        run(tmp_path, SourceConfig(adapter="manifest", root="E"))
    make_cvusa(tmp_path / "C")
    with pytest.raises(ConfigError, match=r"ingest.sources\[1\].name: source name 'cvusa' is used by an earlier source"):
        run(tmp_path, SourceConfig(adapter="cvusa", root="C"), SourceConfig(adapter="auto", root="C"))
    with pytest.raises(ValueError, match="without '/'"):
        SourceConfig(adapter="cvusa", root="C", name="a/b")


# ---------------------------------------------------------------- ids and hashes

def test_pair_ids_are_stable_and_hashes_cached(tmp_path):
    make_cvusa(tmp_path / "C")
    first, s1 = run(tmp_path, SourceConfig(adapter="cvusa", root="C"))
    assert (s1["files"], s1["files_hashed"], s1["hash_cache_hits"]) == (10, 10, 0)
    cache_file = tmp_path / "cache" / CACHE_FILE
    cache = json.loads(cache_file.read_text())
    target = str((tmp_path / "C/bingmap/19/0000001.jpg").resolve())
    assert cache["files"][target][2] == sha256_file(target) and len(cache["files"]) == 10
    # plant a value only the cache can know: the second run must take it from there, not re-hash
    cache["files"][target][2] = "f" * 64
    cache_file.write_text(json.dumps(cache))
    second, s2 = run(tmp_path, SourceConfig(adapter="cvusa", root="C"))
    assert (s2["files_hashed"], s2["hash_cache_hits"]) == (0, 10)
    assert second.set_index("pair_id").loc[first.pair_id[0], "satellite_sha256"] == "f" * 64
    assert second.pair_id.tolist() == first.pair_id.tolist()
    # a rewritten file (new size/mtime) is hashed again
    image(Path(target), seed=99).write_bytes(Path(target).read_bytes() + b"\0")
    third, s3 = run(tmp_path, SourceConfig(adapter="cvusa", root="C"))
    assert (s3["files_hashed"], s3["hash_cache_hits"]) == (1, 9)
    assert third.set_index("pair_id").loc[first.pair_id[0], "satellite_sha256"] == sha256_file(target)
    # the pair id depends on the source name, not on where the dataset lives
    shutil.move(tmp_path / "C", tmp_path / "moved")
    moved, _ = run(tmp_path, SourceConfig(adapter="cvusa", root="moved"), cache=False)
    renamed, _ = run(tmp_path, SourceConfig(adapter="cvusa", root="moved", name="cv2"), cache=False)
    assert moved.pair_id.tolist() == first.pair_id.tolist()
    assert not set(renamed.pair_id) & set(first.pair_id)


def test_hashes_survive_a_run_that_dies_after_hashing(tmp_path):
    make_cvusa(tmp_path / "C")
    blocked = tmp_path / "blocked"
    (blocked / "x").mkdir(parents=True)  # a non-empty folder where the manifest should go
    cfg = IngestConfig(sources=[SourceConfig(adapter="cvusa", root="C")])
    with pytest.raises(OSError):
        ingest(cfg, blocked, base_dir=tmp_path, cache_dir=tmp_path / "cache")
    summary = ingest(cfg, tmp_path / "ok.parquet", base_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert (summary["files_hashed"], summary["hash_cache_hits"]) == (0, 10)


def test_symlinks_out_of_the_root_are_refused(tmp_path):
    outside = image(tmp_path / "outside" / "secret.png")
    root = make_generic(tmp_path / "G")
    (root / "sat/c.png").unlink()
    (root / "sat/c.png").symlink_to(outside)
    # escaping rows are kept unhashed (the file outside is never read) for validation to quarantine
    df, summary = run(tmp_path, SourceConfig(adapter="manifest", root="G"))
    assert pd.isna(df[df.satellite_path == "sat/c.png"].iloc[0].satellite_sha256) and summary["escaping_paths"] == 1
    (root / "sat/c.png").unlink()
    shutil.move(root / "maps", tmp_path / "outside" / "maps")
    (root / "maps").symlink_to(tmp_path / "outside" / "maps")
    (root / "sat/c.png").write_bytes((tmp_path / "outside" / "secret.png").read_bytes())
    df, summary = run(tmp_path, SourceConfig(adapter="manifest", root="G"))
    assert pd.isna(df[df.query_path == "maps/b.png"].iloc[0].query_sha256) and summary["escaping_paths"] == 1


def test_hash_images_off_still_counts_missing(tmp_path):
    root = make_cvusa(tmp_path / "C")
    (root / "streetview/panos/0000002.jpg").unlink()
    df, summary = run(tmp_path, SourceConfig(adapter="cvusa", root="C"), hash_images=False)
    assert summary["missing_files"] == 1 and summary["files_hashed"] == 0
    assert df.query_sha256.isna().all() and len(df) == 5
