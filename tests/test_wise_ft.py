"""WiSE-FT: the interpolation itself, the model file it writes, and train.phaseN.wise_ft_alpha."""
from __future__ import annotations


import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from data_assets.errors import ConfigError
from gleam_models.checkpoint import weights_fingerprint
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.encoder import checkpoint_state, create_encoder, load_encoder, model_problems
from gleam_models.loss import ContrastiveLoss
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import train_phase
from gleam_models.wise_ft import wise_ft, write_wise_ft_model

SMALL = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}


def _states() -> tuple[dict, dict]:
    torch.manual_seed(0)
    pre, fine = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    fine[1].running_mean.normal_()
    fine[1].running_var.uniform_(0.5, 2.0)
    fine[1].num_batches_tracked.fill_(7)
    return pre.state_dict(), fine.state_dict()


def test_alpha_ends_are_exact_and_half_is_the_midpoint():
    pre, fine = _states()
    zero, one, half = (wise_ft(pre, fine, a) for a in (0.0, 1.0, 0.5))
    for key in fine:
        if fine[key].is_floating_point():
            assert torch.equal(zero[key], pre[key]) and torch.equal(one[key], fine[key])
            torch.testing.assert_close(half[key], (pre[key] + fine[key]) / 2)
    assert not torch.equal(half["1.running_mean"], fine["1.running_mean"])  # BatchNorm statistics mixed too
    assert all(int(s["1.num_batches_tracked"]) == 7 for s in (zero, one, half))  # integers: fine-tuned's


def test_mismatched_states_are_refused_by_name():
    pre, fine = _states()
    with pytest.raises(ConfigError, match=r"keys only in the fine-tuned state \(extra\.weight\)"):
        wise_ft(pre, {**fine, "extra.weight": torch.zeros(2)}, 0.5)
    with pytest.raises(ConfigError, match=r"0\.weight \(4, 3, 3, 3\)/torch.float32 vs \(4, 3, 1, 1\)"):
        wise_ft(pre, {**fine, "0.weight": torch.zeros(4, 3, 1, 1)}, 0.5)
    with pytest.raises(ConfigError, match=r"keys only in the pretrained state \(0\.bias\)"):
        wise_ft(pre, {k: v for k, v in fine.items() if k != "0.bias"}, 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"\[0, 1\]"):
            wise_ft(pre, fine, bad)


@pytest.fixture()
def pretrained_cfg(tmp_path) -> EncoderConfig:
    """A tiny encoder whose 'pretrained' weights are a file, as registry ImageNet weights are."""
    tiny = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL)
    torch.manual_seed(1)
    weights = tmp_path / "pretrained.safetensors"
    save_file({k: v.contiguous() for k, v in create_encoder(tiny).backbone.state_dict().items()}, str(weights))
    return tiny.model_copy(update={"weights": str(weights)})


def test_written_model_loads_like_a_phase_model_and_records_its_sources(pretrained_cfg, tmp_path):
    finetuned = create_encoder(pretrained_cfg)
    with torch.no_grad():
        for p in finetuned.parameters():
            p.add_(0.1)
    path = tmp_path / "fine.safetensors"
    save_file(checkpoint_state(finetuned, ContrastiveLoss(0.05)), str(path), metadata={"phase": "phase2"})

    meta = write_wise_ft_model(pretrained_cfg, path, 1.0, tmp_path / "a1.safetensors")
    assert weights_fingerprint(tmp_path / "a1.safetensors") == weights_fingerprint(path) == meta["wise_ft_finetuned"]
    write_wise_ft_model(pretrained_cfg, path, 0.0, tmp_path / "a0.safetensors")
    pretrained = create_encoder(pretrained_cfg).state_dict()
    assert all(torch.equal(v, pretrained[k]) for k, v in load_encoder(pretrained_cfg, tmp_path / "a0.safetensors").state_dict().items())

    out = tmp_path / "half" / "model.safetensors"
    write_wise_ft_model(pretrained_cfg, path, 0.5, out)
    assert model_problems(pretrained_cfg, out) == []  # the pipeline's own check of a phase-2 model
    with safe_open(str(out), framework="pt") as f:
        written = f.metadata()
    assert written["phase"] == "phase2" and written["wise_ft_alpha"] == "0.5"
    assert written["wise_ft_finetuned"] == weights_fingerprint(path) and len(written["wise_ft_pretrained"]) == 16
    assert float(load_file(str(out))["loss.logit_scale"]) == pytest.approx(float(ContrastiveLoss(0.05).logit_scale.detach()))


def test_phase_writes_the_interpolated_model_and_reuses_its_training(pretrained_cfg, tmp_path):
    dataset = make_synthetic_dataset(tmp_path / "data", n_locations=12, modalities=("uav", "street_map"),
                                     size=40, test_fraction=0.25)
    phase = dict(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1)
    cfg = TrainConfig(precision="fp32", progress=False, phase1=PhaseConfig(**phase), phase2=PhaseConfig(**phase))
    out, cache = tmp_path / "p2", tmp_path / "cache"
    trained = train_phase(pretrained_cfg, cfg, "phase2", dataset, tmp_path, out, cache)
    plain = load_file(str(out / "model.safetensors"))
    plain_fp = weights_fingerprint(out / "model.safetensors")

    mixed_cfg = cfg.model_copy(update={"phase2": cfg.phase2.model_copy(update={"wise_ft_alpha": 0.5})})
    summary = train_phase(pretrained_cfg, mixed_cfg, "phase2", dataset, tmp_path, out, cache)
    assert summary["fingerprint"] == trained["fingerprint"] and summary["seconds"] == trained["seconds"]  # not retrained
    assert summary["wise_ft"]["wise_ft_finetuned"] == plain_fp and summary["wise_ft_alpha"] == 0.5
    mixed = load_file(str(out / "model.safetensors"))
    pretrained = checkpoint_state(create_encoder(pretrained_cfg))
    for key, value in pretrained.items():
        expected = torch.lerp(value, plain[key], 0.5) if value.is_floating_point() else plain[key]
        torch.testing.assert_close(mixed[key], expected, rtol=0, atol=0)
    assert weights_fingerprint(out / "model.safetensors") != plain_fp

    train_phase(pretrained_cfg, cfg, "phase2", dataset, tmp_path, out, cache)  # back to null: the trained model
    assert weights_fingerprint(out / "model.safetensors") == plain_fp

    with pytest.raises(ConfigError, match="train.phase2.wise_ft_alpha: .*model.weights=none"):
        train_phase(pretrained_cfg.model_copy(update={"weights": "none"}), mixed_cfg, "phase2", dataset, tmp_path,
                    tmp_path / "p2none", cache)
