"""`gleam explain` / `gleam gleamx-merge` on bad input: one clear message each, no traceback."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_support import gleam

PARAMS = "ingest:\n  sources:\n    - {adapter: manifest, root: data/embedded, name: embedded}\n"


@pytest.fixture()
def proj(tmp_path) -> Path:
    (tmp_path / "params.yaml").write_text(PARAMS)
    img = tmp_path / "images" / "uav"
    img.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img / "q.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "images" / "sat.png")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image")
    return tmp_path


def clean_error(result, *needles: str) -> str:
    err = result.stderr + result.stdout
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return err


def test_help_lists_explain_and_merge(tmp_path):
    out = gleam("--help", cwd=tmp_path).stdout
    assert "explain" in out and "gleamx-merge" in out
    assert "--pairs" in gleam("explain", "--help", cwd=tmp_path).stdout


def test_wrong_language_code(proj):
    clean_error(gleam("explain", "images/uav/q.png", "images/sat.png", "--lang", "fr", cwd=proj),
                "language 'fr'", "en, zh")


def test_missing_image(proj):
    clean_error(gleam("explain", "images/uav/q.png", "images/nope.png", cwd=proj), "nope.png")


def test_unreadable_image(proj):
    clean_error(gleam("explain", "images/uav/q.png", "images/broken.jpg", cwd=proj), "broken.jpg")


def test_missing_model(proj):
    clean_error(gleam("explain", "images/uav/q.png", "images/sat.png", "--model", "models/none", cwd=proj),
                "models/none", "model directory not found")
    clean_error(gleam("gleamx-merge", "--model", "models/none", cwd=proj), "model directory not found")


def test_missing_adapter(proj):
    model = proj / "models" / "gleamx"
    model.mkdir(parents=True)
    (model / "gleamx.json").write_text('{"format": "gleamx-adapter/1"}')
    clean_error(gleam("explain", "images/uav/q.png", "images/sat.png", cwd=proj), "adapter", "missing")


def test_unknown_modality_and_bad_pairs_csv(proj):
    clean_error(gleam("explain", "images/sat.png", "images/sat.png", cwd=proj), "--modality")
    (proj / "pairs.csv").write_text("query,satellite\na,b\n")
    clean_error(gleam("explain", "--pairs", "pairs.csv", cwd=proj), "pairs.csv", "query_path")


@pytest.mark.slow
def test_stage_trains_both_models_then_explain_and_merge_work(tmp_path):
    """gleamx_finetune on tiny parts: the explanation model and the label-only ablation; then
    `gleam explain` (single and --pairs) and `gleam gleamx-merge` on its output."""
    import json

    from gleamx_tiny import tiny_project
    from orchestration.config import load_project
    from orchestration.stages_gleamx import gleamx_finetune

    records, model_cfg, _ = tiny_project(tmp_path / "data", prefix="data/")
    (tmp_path / "params.yaml").write_text(PARAMS + textwrap_params(model_cfg))
    result = gleamx_finetune(load_project(tmp_path / "params.yaml"))
    for name in ("gleamx", "gleamx_label_only"):
        out = tmp_path / "models" / name
        assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "params.resolved.yaml").is_file()
        assert json.loads((out / "summary.json").read_text())["label_only"] == (name == "gleamx_label_only")
    assert result.summary["gleamx"]["steps"] == 2 and result.summary["seconds_total"] > 0
    again = gleamx_finetune(load_project(tmp_path / "params.yaml"))  # finished runs are not re-trained
    assert again.summary["gleamx"]["resumed_from"] is None and again.summary["seconds_total"] < result.summary["seconds_total"] + 5

    single = gleam("explain", "data/images/uav0.png", "data/images/sat0.png", "--modality", "uav", "--lang", "zh",
                   cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert single.stdout.startswith("verdict: ")
    (tmp_path / "pairs.csv").write_text("query_path,satellite_path,modality,language\n"
                                        "data/images/uav0.png,data/images/sat0.png,uav,en\n"
                                        "data/images/uav1.png,data/images/sat2.png,uav,zh\n")
    batch = gleam("explain", "--pairs", "pairs.csv", "--out", "answers.csv", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    import csv
    rows = list(csv.DictReader((tmp_path / "answers.csv").open()))
    assert len(rows) == 2 and {"verdict", "explanation", "explanation_stance", "new_tokens"} <= set(rows[0])
    merged = gleam("gleamx-merge", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "models" / "gleamx_merged" / "model.safetensors").is_file()
    via_merged = gleam("explain", "data/images/uav0.png", "data/images/sat0.png", "--modality", "uav", "--lang", "zh",
                       "--model", "models/gleamx_merged", cwd=tmp_path)
    assert via_merged.returncode == 0 and via_merged.stdout == single.stdout, via_merged.stderr


def textwrap_params(model_cfg) -> str:
    return (f"paths: {{data_dir: data, models_dir: models, metrics_dir: metrics, cache_dir: .cache}}\n"
            f"gleamx_model: {{lm_source: {model_cfg.lm_source}, vision_checkpoint: {model_cfg.vision_checkpoint}, "
            f"projector_hidden: 16, lora: {{r: 4, alpha: 8, dropout: 0.1}}}}\n"
            f"gleamx_train: {{steps: 2, batch_size: 4, train_subsample: null, progress: false, max_new_tokens: 6, "
            f"checkpoint_every_steps: 1}}\n")
