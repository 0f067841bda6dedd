"""Item 6: saved checkpoints never make a re-run a dead end; fingerprints hash content, not bytes."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from data_assets.io import sha256_file
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import run_fingerprint, train_phase
from orchestration.cli import app
from rel_support import MODS, TINY, read_lines, train_cfg


def test_identical_weights_in_different_bytes_give_one_fingerprint(tmp_path):
    tensors = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(3)}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(tensors, str(a), metadata={"phase": "phase1", "fingerprint": "x", "backbone": "y"})
    save_file(tensors, str(b), metadata={"backbone": "y", "fingerprint": "x", "phase": "phase1", "note": "resumed"})
    assert sha256_file(a) != sha256_file(b)
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"manifest")
    cfg = train_cfg()
    assert run_fingerprint(TINY, cfg, cfg.phase2, manifest, a) == run_fingerprint(TINY, cfg, cfg.phase2, manifest, b)


def test_a_changed_config_starts_fresh_instead_of_refusing(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", n_locations=8, modalities=MODS[:2], size=32)
    out = tmp_path / "out"
    first = train_phase(TINY, train_cfg(epochs=1), "phase1", data, tmp_path, out, tmp_path / "cache")
    (out / "summary.json").unlink()  # killed after its last checkpoint, then the user changes the lr
    changed = train_phase(TINY, train_cfg(epochs=1, lr=5e-4), "phase1", data, tmp_path, out, tmp_path / "cache")
    assert changed["fingerprint"] != first["fingerprint"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == [changed["fingerprint"]]
    assert [r["step"] for r in read_lines(out / "metrics.jsonl")] == list(range(1, changed["steps"] + 1))
    assert json.loads((out / "summary.json").read_text())["fingerprint"] == changed["fingerprint"]


def test_both_phases_take_no_resume():
    for command in ("gleamc-phase1", "gleamc-phase2"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "--no-resume" in result.output, result.output
