"""The `gleam` CLI on bad input: one clear message naming the file and the reason, no traceback."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from PIL import Image

from pipeline_support import gleam


def write_params(root: Path, sources: str, extra: str = "") -> Path:
    (root / "params.yaml").write_text(textwrap.dedent(f"""\
        ingest:
          sources:
        {textwrap.indent(textwrap.dedent(sources), '    ')}
        {extra}"""))
    return root / "params.yaml"


def assert_clean_error(result, *needles: str) -> None:
    err = result.stderr + result.stdout
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"


def test_help_lists_every_stage_with_examples(tmp_path):
    result = gleam("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ["embedded-dataset", "ingested-manifest", "validated-manifest", "pipeline"]:
        assert command in result.stdout
    sub = gleam("ingested-manifest", "--help", cwd=tmp_path)
    assert "Example" in sub.stdout and "--set" in sub.stdout


def test_missing_dataset_root(tmp_path):
    write_params(tmp_path, "- {adapter: university1652, root: /nonexistent/University-Release}")
    assert_clean_error(gleam("ingested-manifest", cwd=tmp_path), "/nonexistent/University-Release", "error:")


def test_layout_that_matches_no_adapter(tmp_path):
    (tmp_path / "ds" / "random_folder").mkdir(parents=True)
    write_params(tmp_path, "- {adapter: auto, root: ds}")
    assert_clean_error(gleam("ingested-manifest", cwd=tmp_path), "no adapter recognises this layout")


def test_manifest_path_escaping_the_root(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "manifest.csv").write_text("query_path,satellite_path,location_id,modality,split\n"
                                     "../../etc/passwd,sat.png,a,uav,train\n")
    write_params(tmp_path, "- {adapter: manifest, root: ds}")
    # the row is kept (unhashed: the file outside is never read) and validation quarantines it with
    # the reason, instead of the whole source being refused
    ingested = gleam("ingested-manifest", cwd=tmp_path)
    assert ingested.returncode == 0 and "../../etc/passwd" in ingested.stderr and "escapes" in ingested.stderr
    assert_clean_error(gleam("validated-manifest", cwd=tmp_path), "../../etc/passwd", "query_exists")
    assert "escapes the dataset root" in (tmp_path / "data" / "validated" / "quarantine.csv").read_text()


def test_bad_config_value_names_the_key(tmp_path):
    write_params(tmp_path, "- {adapter: manifest, root: ds}")
    result = gleam("ingested-manifest", "--set", "ingest.workers=0", cwd=tmp_path)
    assert_clean_error(result, "ingest.workers", "greater than or equal to 1")
    # a list value is quoted whole: the CLI prints errors through rich, whose markup would eat "[fr]"
    listed = gleam("ingested-manifest", "--set", "gleamx_model.fact_hint_languages=[fr]", cwd=tmp_path)
    assert_clean_error(listed, "fact_hint_languages=[fr]", "got 'fr'")


def test_corrupt_images_are_named_and_the_stage_fails(tmp_path):
    ds = tmp_path / "ds"
    (ds / "img").mkdir(parents=True)
    lines = ["query_path,satellite_path,location_id,modality,split"]
    for i in range(12):
        split = "train" if i < 6 else "test"
        for kind in ("q", "s"):
            Image.new("RGB", (64, 64), (i * 20, 40, 90 if kind == "q" else 10)).save(ds / "img" / f"{kind}{i}.jpg")
        lines.append(f"img/q{i}.jpg,img/s{i}.jpg,loc{i},uav,{split}")
    good = (ds / "img" / "q0.jpg").read_bytes()
    (ds / "img" / "q1.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (ds / "img" / "q2.jpg").write_text("this is not an image")  # not an image at all
    (ds / "manifest.csv").write_text("\n".join(lines) + "\n")
    write_params(tmp_path, "- {adapter: manifest, root: ds}",
                 "validate: {min_pairs_per_modality: 1, max_bad_fraction: 0.05}\n")
    assert gleam("ingested-manifest", cwd=tmp_path).returncode == 0
    result = gleam("validated-manifest", cwd=tmp_path)
    assert_clean_error(result, "q1.jpg", "q2.jpg", "quarantine")
    quarantine = (tmp_path / "data" / "validated" / "quarantine.csv").read_text()
    assert "q1.jpg" in quarantine and "q2.jpg" in quarantine
