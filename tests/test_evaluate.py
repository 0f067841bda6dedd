"""evaluate_runs end to end on a tiny manifest of solid-colour images in tmp_path.

The embed function is the image's mean colour minus mid-grey, so an image painted at angle `a`
(see `colour`) embeds to the point at `a` on a circle, and every ranking below can be read off
the angles:

source "toy" (test split), satellites A 0, B 90, C 180 (pairs), D 120 (kind="gallery" distractor)
  uav:  qA 10 -> A, qA2 50 -> A, qB 115 -> B (semi-positive D), qC 185 -> C,
        gA 100 -> D with query_meta {"role": "gallery"} (gallery-only)
  street_map: sA 0 -> A
source "toy2" (test split): satellites E 30 (pair), F 180 (gallery); uav qE 5 -> E
val split (must be ignored): satellite G 185 (would beat C for qC), uav qG 185 -> G
test_cross split (its own galleries): satellite H 300, uav qH 305 -> H

uav, query->satellite (each source its own gallery; "toy" has semi-positives -> vigor protocol,
"toy2" none -> university1652, so the pooled protocol is "mixed"):
  qA: A(10) first -> rank 1.  qA2: B(40) before A(50) -> rank 2, B is no semi-positive -> miss.
  qB: D(5) before B(25) -> rank 2, but D is its semi-positive -> hit.  qC: C(5) -> rank 1.
  qE: E(25) before F -> rank 1 (in one gallery with toy's A, 5 away, it would be rank 2).
  R@1 = 3/5 = 60, R@5 = 100, hit rate 4/5 = 80, n_queries 5, n_gallery 4 + 2 = 6.
  R@1%: toy (vigor) 4 // 100 = 0 -> nobody; toy2 round(0.02) + 1 = 1 -> qE: 1/5 = 20.
  AP (University-1652, rank r > 1 alone gives 0.5/r) = (1 + 1/4 + 1/4 + 1 + 1)/5 = 70;
  mAP_plain = (1 + 1/2 + 1/2 + 1 + 1)/5 = 80.
uav, satellite->query: queries A, B, C (D has only a gallery-only view), E.
  gallery of toy: qA 10, qA2 50, qB 115, qC 185, gA 100.
  A: qA(10), qA2(50) -> true at ranks 1, 2 -> AP 1.   B: gA(10) before qB(25) -> rank 2, AP 1/4.
  C: qC(5) -> rank 1.   E: gallery {qE} -> rank 1.
  R@1 = 3/4 = 75, R@5 = 100, AP = (1 + 1/4 + 1 + 1)/4 = 81.25, mAP_plain 87.5, n_gallery 5 + 1 = 6.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from data_assets.errors import ConfigError, DataError, GleamError
from data_assets.manifest import write_manifest
from gleam_models.evaluate import EvalConfig, Run, evaluate_runs, figure_path, metrics_table, run_fingerprint
from gleam_models.metrics_file import headline, load_metrics
from gleam_models.figures import TRUE_COLOUR, tile_box


def colour(degrees: float) -> tuple[int, int, int]:
    r = math.radians(degrees)
    return 128 + round(100 * math.cos(r)), 128 + round(100 * math.sin(r)), 128


def embed_by_mean_colour(paths: list[Path], view: str) -> np.ndarray:
    rows = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) - 128 for p in paths]
    x = np.stack(rows)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embed_rotated(paths: list[Path], view: str) -> np.ndarray:
    """A worse model: queries seen rotated by 90 degrees."""
    x = embed_by_mean_colour(paths, view)
    return x if view == "satellite" else x @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=np.float32)


SATELLITES = [  # source, split, location, degrees, kind
    ("toy", "test", "A", 0, "pair"), ("toy", "test", "B", 90, "pair"), ("toy", "test", "C", 180, "pair"),
    ("toy", "test", "D", 120, "gallery"), ("toy2", "test", "E", 30, "pair"), ("toy2", "test", "F", 180, "gallery"),
    ("toy", "val", "G", 185, "pair"), ("toy", "test_cross", "H", 300, "pair"),
]
QUERIES = [  # source, split, modality, name, degrees, location, semi-positives, query_meta
    ("toy", "test", "uav", "qA", 10, "A", [], None),
    ("toy", "test", "uav", "qA2", 50, "A", [], '{"altitude": 150}'),
    ("toy", "test", "uav", "qB", 115, "B", ["toy/D"], None),
    ("toy", "test", "uav", "qC", 185, "C", [], None),
    ("toy", "test", "uav", "gA", 100, "D", [], '{"role": "gallery"}'),
    ("toy", "test", "street_map", "sA", 0, "A", [], None),
    ("toy2", "test", "uav", "qE", 5, "E", [], None),
    ("toy", "val", "uav", "qG", 185, "G", [], None),
    ("toy", "test_cross", "uav", "qH", 305, "H", [], None),
]


def paint(path: Path, degrees: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour(degrees)).save(path)


def build_manifest(root: Path, queries=QUERIES) -> Path:
    rows = []
    sat_path = {}
    for source, split, loc, deg, kind in SATELLITES:
        sat_path[(source, loc)] = f"satellite/{loc}.png"
        paint(root / source / sat_path[(source, loc)], deg)
        if kind == "gallery":
            rows.append(dict(pair_id=f"{source}-{loc}", kind="gallery", source=source, dataset_root=source,
                             split=split, location_id=f"{source}/{loc}", satellite_path=sat_path[(source, loc)],
                             satellite_sha256="0" * 64, derived=False))
    for source, split, modality, name, deg, loc, semi, meta in queries:
        paint(root / source / modality / f"{name}.png", deg)
        rows.append(dict(pair_id=f"{source}-{name}", kind="pair", source=source, dataset_root=source, split=split,
                         modality=modality, location_id=f"{source}/{loc}", query_path=f"{modality}/{name}.png",
                         satellite_path=sat_path[(source, loc)], satellite_sha256="0" * 64, derived=False,
                         semi_positive_ids=semi, query_meta=meta))
    return write_manifest(pd.DataFrame(rows), root / "manifest.parquet")


@pytest.fixture()
def toy(tmp_path):
    return build_manifest(tmp_path / "data"), tmp_path / "data"


def run(toy, tmp_path, runs, **cfg):
    """runs: {name: embed_fn}; each gets the weights fingerprint "fp-<name>"."""
    manifest, base = toy
    specs = {name: Run(fn, f"fp-{name}") for name, fn in runs.items()}
    return evaluate_runs(manifest, base, specs, EvalConfig(**cfg), tmp_path / "metrics.json", tmp_path / "figures")


def test_metrics_by_hand_and_json_shape(toy, tmp_path):
    calls = Counter()

    def counting(paths, view):
        calls.update((view, p.name) for p in paths)
        return embed_by_mean_colour(paths, view)

    out = run(toy, tmp_path, {"phase1": counting}, batch_size=2)
    assert json.loads((tmp_path / "metrics.json").read_text()) == out
    assert set(out["runs"]) == {"phase1"}
    assert out["runs"]["phase1"]["weights"] == "fp-phase1"
    assert out["manifest"]["sha256"] == hashlib.sha256(toy[0].read_bytes()).hexdigest()
    assert out["format"] == 2 and "AP" in out["definitions"]
    splits = out["runs"]["phase1"]["splits"]
    assert list(splits) == ["test", "test_cross"]  # default: same-area and cross-area where present
    assert set(splits["test"]) == {"uav", "street_map"}
    uav = splits["test"]["uav"]
    assert set(uav) == {"query_to_satellite", "satellite_to_query"}

    q2s = uav["query_to_satellite"]
    assert q2s["R@1"] == pytest.approx(60.0)
    assert q2s["R@5"] == pytest.approx(100.0) and q2s["R@10"] == pytest.approx(100.0)
    assert q2s["R@1%"] == pytest.approx(20.0)
    assert q2s["AP"] == pytest.approx(70.0)
    assert q2s["mAP_plain"] == pytest.approx(80.0)
    assert q2s["hit_rate"] == pytest.approx(80.0)
    assert q2s["protocol"] == "mixed"
    assert (q2s["n_queries"], q2s["n_gallery"]) == (5, 6)  # gA is not a query; distractors D, F count

    s2q = uav["satellite_to_query"]
    assert s2q["R@1"] == pytest.approx(75.0)
    assert s2q["AP"] == pytest.approx(81.25)
    assert s2q["mAP_plain"] == pytest.approx(87.5)
    assert (s2q["n_queries"], s2q["n_gallery"]) == (4, 6)  # gA is in the gallery
    assert "hit_rate" not in s2q

    street = splits["test"]["street_map"]
    assert street["query_to_satellite"]["R@1"] == 100.0
    assert street["query_to_satellite"]["n_gallery"] == 4
    assert street["satellite_to_query"]["n_gallery"] == 1

    cross = splits["test_cross"]
    assert set(cross) == {"uav"}
    assert cross["uav"]["query_to_satellite"]["n_gallery"] == 1  # its own gallery: H only
    assert cross["uav"]["query_to_satellite"]["R@1"] == 100.0

    # each distinct image embedded once; the val split's G and qG never
    assert max(calls.values()) == 1
    assert {n for v, n in calls if v == "satellite"} == {f"{x}.png" for x in "ABCDEFH"}
    assert {n for v, n in calls if v == "uav"} == {"qA.png", "qA2.png", "qB.png", "qC.png", "gA.png", "qE.png",
                                                   "qH.png"}


def test_floats_are_rounded_and_tables_show_the_split(toy, tmp_path):
    out = run(toy, tmp_path, {"phase1": embed_rotated}, figure_rows=0)
    text = (tmp_path / "metrics.json").read_text()
    values = [v for by_dir in out["runs"]["phase1"]["splits"]["test"].values()
              for m in by_dir.values() for v in m.values() if isinstance(v, float)]
    assert values and all(round(v, 4) == v for v in values)
    assert not re.search(r"\d\.\d{5,}", text)  # nothing like 33.333333333
    table = metrics_table(out)
    assert "| phase1 | test | uav | query_to_satellite |" in table
    assert "| phase1 | test_cross | uav | query_to_satellite |" in table
    assert headline(out)["phase1/test_cross/uav/q2s_R@1"] == out["runs"]["phase1"]["splits"]["test_cross"][
        "uav"]["query_to_satellite"]["R@1"]


def test_the_file_is_one_result_set_written_whole(toy, tmp_path):
    """Issue 10 item 2: an interrupted evaluation must not leave the old model's figures beside the
    new one's, and every run must say which weights it came from."""
    first = run(toy, tmp_path, {"phase1": embed_by_mean_colour, "phase2": embed_by_mean_colour}, figure_rows=0)
    before = (tmp_path / "metrics.json").read_text()

    def dies(paths, view):
        raise KeyboardInterrupt  # killed while embedding the second run

    with pytest.raises(KeyboardInterrupt):
        run(toy, tmp_path, {"phase1": embed_rotated, "phase2": dies}, figure_rows=0)
    assert (tmp_path / "metrics.json").read_text() == before  # untouched: not new phase1 + old phase2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # a later evaluation replaces the file whole: only the runs it was given, nothing kept
    out = run(toy, tmp_path, {"phase2": embed_rotated}, figure_rows=0)
    assert list(out["runs"]) == ["phase2"]
    assert out["runs"]["phase2"]["splits"]["test"]["uav"]["query_to_satellite"]["R@1"] < \
        first["runs"]["phase2"]["splits"]["test"]["uav"]["query_to_satellite"]["R@1"]


def test_consumers_refuse_figures_of_other_weights_or_another_manifest(toy, tmp_path):
    run(toy, tmp_path, {"phase1": embed_by_mean_colour}, figure_rows=0)
    path = tmp_path / "metrics.json"
    sha = hashlib.sha256(toy[0].read_bytes()).hexdigest()
    assert load_metrics(path, {"phase1": "fp-phase1"}, sha)["runs"]["phase1"]["weights"] == "fp-phase1"
    with pytest.raises(DataError, match="run 'phase1' was evaluated with weights fp-phase1, the model is other"):
        load_metrics(path, {"phase1": "other"})
    with pytest.raises(DataError, match="run 'phase2' was evaluated with weights missing"):
        load_metrics(path, {"phase2": "x"})
    with pytest.raises(DataError, match="another manifest"):
        load_metrics(path, manifest_sha256="0" * 64)
    path.write_text(json.dumps({"phase1": {"uav": {}}}))  # today's format: no weights, no manifest
    with pytest.raises(DataError, match="not a format-2 metrics file"):
        load_metrics(path)
    # a run without weights is refused before any work
    with pytest.raises(ConfigError, match="naming its weights"):
        evaluate_runs(toy[0], toy[1], {"p": embed_by_mean_colour}, EvalConfig(), path, tmp_path / "f")
    with pytest.raises(ConfigError, match="naming its weights"):
        evaluate_runs(toy[0], toy[1], {"p": Run(embed_by_mean_colour, "")}, EvalConfig(), path, tmp_path / "f")
    assert run_fingerprint(None, "mobilenetv2_100") == "imagenet:mobilenetv2_100"


def test_figure_outlines_the_true_tile(toy, tmp_path):
    run(toy, tmp_path, {"phase1": embed_by_mean_colour}, figure_rows=6, figure_k=5, figure_tile=32)
    path = figure_path(tmp_path / "figures", "phase1", "uav")
    assert path.is_file() and (tmp_path / "figures/phase1/street_map.png").is_file()
    assert path.stat().st_size < 50_000
    im = Image.open(path).convert("RGB")
    # 5 rows (qA, qA2, qB, qC, qE: manifest order, source after source); toy's gallery has only
    # 4 satellites, so the query column and 4 result columns
    assert im.size == (tile_box(0, 4, 32)[2] + 6, tile_box(4, 0, 32)[3] + 14 + 6)

    def edge(row, col):  # a pixel on the tile's outline
        x0, y0, _, _ = tile_box(row, col, 32)
        return im.getpixel((x0 + 1, y0 + 16))

    def centre(row, col):
        x0, y0, _, _ = tile_box(row, col, 32)
        return im.getpixel((x0 + 16, y0 + 16))

    assert edge(0, 1) == TRUE_COLOUR and centre(0, 1) == colour(0)  # qA: A first, true
    assert edge(1, 1) != TRUE_COLOUR and centre(1, 1) == colour(90)  # qA2: B first, wrong
    assert edge(1, 2) == TRUE_COLOUR and centre(1, 2) == colour(0)  # then A, true
    assert centre(2, 1) == colour(120) and edge(2, 2) == TRUE_COLOUR  # qB: distractor D, then B
    assert edge(4, 1) == TRUE_COLOUR and centre(4, 1) == colour(30)  # qE: its own source's E
    assert centre(4, 3) == (255, 255, 255)  # toy2 has only two satellites: nothing in column 3


def test_selected_modalities_directions_and_splits(toy, tmp_path):
    out = run(toy, tmp_path, {"p": embed_by_mean_colour}, modalities=["street_map"],
              directions=["satellite_to_query"], ks=[1], figure_rows=0, splits=["test"])
    assert out["runs"]["p"]["splits"] == {"test": {"street_map": {"satellite_to_query": {
        "R@1": 100.0, "R@1%": 100.0, "AP": 100.0, "mAP_plain": 100.0, "n_queries": 1, "n_gallery": 1,
        "protocol": "university1652"}}}}
    out = run(toy, tmp_path, {"p": embed_by_mean_colour}, figure_rows=0, splits=["val"], ks=[1])
    assert out["runs"]["p"]["splits"]["val"]["uav"]["query_to_satellite"]["n_gallery"] == 1
    # forcing the university1652 protocol on the semi-positive source: no hit rate, pessimistic ties
    out = run(toy, tmp_path, {"p": embed_by_mean_colour}, figure_rows=0, splits=["test"], protocol="university1652")
    q2s = out["runs"]["p"]["splits"]["test"]["uav"]["query_to_satellite"]
    assert "hit_rate" not in q2s and q2s["protocol"] == "university1652"
    assert q2s["R@1%"] == pytest.approx(60.0)  # galleries of 4 and 2: the top 1


def test_clear_errors_and_nothing_lost(toy, tmp_path):
    manifest, base = toy
    with pytest.raises(DataError, match="split 'train' has no query rows"):
        run(toy, tmp_path, {"p": embed_by_mean_colour}, splits=["train"])
    with pytest.raises(DataError, match="modality 'panorama' has no queries"):
        run(toy, tmp_path, {"p": embed_by_mean_colour}, modalities=["panorama"])
    with pytest.raises(ConfigError, match="run name"):
        run(toy, tmp_path, {"../escape": embed_by_mean_colour})
    with pytest.raises(ConfigError, match="no runs"):
        run(toy, tmp_path, {})
    with pytest.raises(ValidationError):
        EvalConfig(ks=[0])
    with pytest.raises(ValidationError):
        EvalConfig(modalities=["thermal"])

    (base / "toy/uav/qC.png").unlink()
    with pytest.raises(DataError, match=r"qC.png: image file does not exist \(1 of"):
        run(toy, tmp_path, {"p": embed_by_mean_colour})
    assert not (tmp_path / "metrics.json").exists()

    paint(base / "toy/uav/qC.png", 185)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match="metrics.json: metrics file is not valid JSON"):
        load_metrics(tmp_path / "metrics.json")
    run(toy, tmp_path, {"p": embed_by_mean_colour}, figure_rows=0)  # a broken old file is simply replaced
    assert load_metrics(tmp_path / "metrics.json")["format"] == 2

    def wrong_shape(paths, view):
        return np.zeros((len(paths) + 1, 3), np.float32)

    (tmp_path / "metrics.json").unlink()
    with pytest.raises(GleamError, match="returned shape"):
        run(toy, tmp_path, {"p": wrong_shape})


def test_only_gallery_rows_or_bad_meta(tmp_path):
    only_gallery = [q for q in QUERIES if q[3] == "gA"]
    manifest = build_manifest(tmp_path / "a", only_gallery)
    with pytest.raises(DataError, match="only gallery-only query rows"):
        evaluate_runs(manifest, tmp_path / "a", {"p": Run(embed_by_mean_colour, "fp")}, EvalConfig(),
                      tmp_path / "m.json", tmp_path / "f")
    bad_meta = [(*q[:7], "{oops") if q[3] == "qA" else q for q in QUERIES]
    manifest = build_manifest(tmp_path / "b", bad_meta)
    with pytest.raises(DataError, match="query_meta is not valid JSON"):
        evaluate_runs(manifest, tmp_path / "b", {"p": Run(embed_by_mean_colour, "fp")}, EvalConfig(),
                      tmp_path / "m.json", tmp_path / "f")
