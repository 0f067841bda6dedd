"""benchmarks/train_throughput.py: fine interleaving of the three pipelines inside one train_phase call."""
from __future__ import annotations

from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.synthetic import make_synthetic_dataset

from pipeline_support import load_benchmark


def test_rounds_alternate_skip_epoch_ends_and_stop_the_trainer(tmp_path):
    bench = load_benchmark("train_throughput")
    manifest = make_synthetic_dataset(tmp_path / "data", n_locations=24, modalities=("uav", "panorama"), size=48)
    model_cfg = EncoderConfig(backbone="mobilenetv2_050", weights="none", channels_last=True, input_size={
        "satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)})
    train_cfg = TrainConfig(progress=False, log_every_steps=1, phase1=PhaseConfig(batch_size=12, lr=1e-4))
    # 48 pairs / batch 12 = 4 steps per epoch: 2 warm-up + 5 timed rounds cross one epoch end
    out = bench.run(manifest, tmp_path / "data", model_cfg, train_cfg, tmp_path / "work", rounds=5, warmup=2)

    assert out["steps_per_epoch"] == 4 and out["dropped_epoch_end_rounds"] == 1
    rounds = out["rounds_detail"]
    assert len(rounds) == 5
    assert {tuple(r["order"]) for r in rounds} == {("trainer", "reference", "limit"), ("trainer", "limit", "reference")}
    for r in rounds:
        assert r["trainer"]["images"] == r["limit"]["images"] == r["reference"]["images"] == 24
        assert all(r[name]["seconds"] > 0 for name in bench.PIPELINES)
    s = out["summary"]
    ratios = s["trainer_vs_limit"]["per_round"]
    assert ratios == [r["trainer"]["images_per_s"] / r["limit"]["images_per_s"] for r in rounds]
    assert s["trainer_vs_limit"]["min"] <= s["trainer_vs_limit"]["median"] <= s["trainer_vs_limit"]["max"]
    assert not (tmp_path / "work" / "run" / "model.safetensors").exists()  # stopped before the end
