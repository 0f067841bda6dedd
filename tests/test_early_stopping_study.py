"""benchmarks/early_stopping_study.py: val alone picks the epoch, every epoch's checkpoint is found
(or the run is refused), and seeds summarize picked vs last correctly."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_assets.errors import DataError
from data_assets.io import write_json

from pipeline_support import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("early_stopping_study")


def epoch(val_r1: float, cross_r1: float, val_ap: float = 50.0) -> dict:
    def cells(r1, ap):
        return {"uav": {"R@1": r1, "AP": ap, "n_queries": 6}, "ground": {"R@1": r1 + 10, "AP": ap, "n_queries": 6}}
    return {"weights": "w", "splits": {"val": cells(val_r1, val_ap), "test_cross": cells(cross_r1, 40.0)}}


def test_val_picks_the_epoch_ties_go_to_ap_then_the_earlier_epoch(study):
    # test_cross would pick epoch 0; only val counts
    assert study.pick_epoch({"0": epoch(10, 90), "1": epoch(30, 5), "2": epoch(20, 5)}) == "1"
    assert study.pick_epoch({"0": epoch(10, 9), "1": epoch(30, 5, val_ap=40), "2": epoch(30, 5, val_ap=60)}) == "2"
    assert study.pick_epoch({"0": epoch(10, 9), "2": epoch(30, 5), "1": epoch(30, 5)}) == "1"


def test_seeds_summarize_per_epoch_and_picked_against_last(study):
    doc = study.empty_study(None, "m", "c", [])
    seed0 = {"0": epoch(10, 40), "1": epoch(30, 30), "2": epoch(20, 20)}  # val picks 1: cross 30 vs last 20
    seed1 = {"0": epoch(10, 40), "1": epoch(20, 30), "2": epoch(40, 10)}  # val picks 2 = last: gain 0
    for seed, epochs in ((1, seed1), (0, seed0)):
        study.add_seed(doc, seed, {"config": "k", "phases": {p: {"epochs": epochs} for p in study.PHASES}})
    assert list(doc["seeds"]) == ["0", "1"]
    summary = doc["summary"]["phase1"]
    assert summary["picked_epochs"] == {"0": "1", "1": "2"}
    assert summary["picked"]["test_cross"]["uav"]["R@1"] == [20.0, 14.14, 2]
    assert summary["last"]["test_cross"]["uav"]["R@1"][0] == 15.0
    assert summary["picked_minus_last"]["test_cross"]["mean"]["R@1"] == [5.0, 7.07, 2]
    assert summary["epochs"]["2"]["val"]["mean"]["R@1"][0] == 35.0  # (25 + 45) / 2: modalities, then seeds
    assert list(summary["epochs"]) == ["0", "1", "2"]
    assert study.empty_study(doc, "m", "c", [])["seeds"]  # same manifest and config: kept
    assert not study.empty_study(doc, "m", "other", [])["seeds"]
    assert not study.empty_study(doc, "other", "c", [])["seeds"]


def checkpoint(root: Path, step: int, epoch_no: int, done: bool) -> None:
    write_json(root / f"step-{step:07d}" / "state.json", {"step": step, "epoch": epoch_no, "epoch_done": done})


def test_epoch_checkpoints_skip_mid_epoch_ones_and_refuse_a_pruned_run(study, tmp_path):
    root = tmp_path / "phase1" / "checkpoints" / "fp"
    checkpoint(root, 5, 0, False)  # checkpoint_every_steps inside epoch 1
    checkpoint(root, 10, 1, True)
    checkpoint(root, 15, 1, False)
    checkpoint(root, 20, 2, True)
    found = study.epoch_checkpoints(tmp_path / "phase1", "fp", 2)
    assert found == {1: root / "step-0000010", 2: root / "step-0000020"}
    with pytest.raises(DataError, match=r"epochs \[3\]"):
        study.epoch_checkpoints(tmp_path / "phase1", "fp", 3)


def test_every_seed_keeps_every_checkpoint(study, project_root):
    args = study.parse_args(["--params", str(project_root / "params.yaml"), "--set", "train.phase1.epochs=3"])
    project = study.seed_project(args, 4)
    assert project.cfg.train.seed == 4 and project.cfg.train.phase1.epochs == 3
    assert project.cfg.train.keep_checkpoints >= 1000
    assert study.config_key(project) != study.config_key(study.seed_project(args, 5))


def test_each_epoch_becomes_the_model_the_phase_would_write_ema_then_wise_ft(study, tmp_path):
    import torch
    from safetensors.torch import save_file

    from gleam_models.checkpoint import weights_fingerprint
    from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
    from gleam_models.encoder import create_encoder
    from gleam_models.recipe import ema_path
    from gleam_models.synthetic import make_synthetic_dataset
    from gleam_models.train import train_phase

    small = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}
    tiny = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=small)
    torch.manual_seed(1)
    weights = tmp_path / "pretrained.safetensors"  # WiSE-FT needs pretrained weights: a file, as ImageNet's are
    save_file({k: v.contiguous() for k, v in create_encoder(tiny).backbone.state_dict().items()}, str(weights))
    tiny = tiny.model_copy(update={"weights": str(weights)})
    dataset = make_synthetic_dataset(tmp_path / "d", n_locations=12, modalities=("uav", "ground"), size=32,
                                     test_fraction=0.0)
    pcfg = PhaseConfig(epochs=2, batch_size=8, lr=1e-2, warmup_steps=0, ema_decay=0.6, wise_ft_alpha=0.5)
    cfg = TrainConfig(precision="fp32", progress=False, keep_checkpoints=study.KEEP_EVERY_CHECKPOINT, phase1=pcfg)
    out = tmp_path / "phase1"
    summary = train_phase(tiny, cfg, "phase1", dataset, tmp_path, out, tmp_path / "cache")
    ckpts = study.epoch_checkpoints(out, summary["fingerprint"], 2)
    made = {e: study.delivered_model(tiny, pcfg, c / "model.safetensors", tmp_path / f"e{e}.safetensors", ema_path(c))
            for e, c in ckpts.items()}
    final = weights_fingerprint(out / "model.safetensors")
    assert weights_fingerprint(made[2]) == final  # the last epoch's derivation is the trainer's own model
    assert weights_fingerprint(made[1]) != final
    assert weights_fingerprint(ckpts[2] / "model.safetensors") != final  # raw weights: neither EMA nor mixed
