"""GLEAM-C recipe options: backbone lr scale, layer-wise lr decay, EMA of the weights, their config errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from data_assets.errors import ConfigError
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.encoder import create_encoder
from gleam_models.loss import ContrastiveLoss
from gleam_models.recipe import param_groups
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import PairModel, run_fingerprint, train_phase
from orchestration.config import load_project

SMALL = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}
TINY = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _lr_scale_of(groups: list[dict], param: torch.nn.Parameter) -> float:
    (scale,) = [g["lr_scale"] for g in groups if any(p is param for p in g["params"])]
    return scale


@pytest.mark.parametrize("backbone, blocks", [("test_efficientnet", 6), ("mobilenetv2_100", 18)])
def test_layer_decay_scales_backbone_blocks_and_leaves_head_and_temperature(backbone, blocks):
    # timm's grouping: stem, then one group per block (blocks.<stage>.<block>), conv_head last when
    # the network has one (mobilenetv2: 17 blocks + conv_head; test_efficientnet: 5 blocks, no head conv)
    model = PairModel(create_encoder(TINY.model_copy(update={"backbone": backbone})), ContrastiveLoss())
    groups = param_groups(model, 0.05, temperature_lr_scale=10.0, backbone_lr_scale=0.1, layer_decay=0.5)
    bb = model.encoder.backbone
    deepest = bb.conv_head.weight if hasattr(bb, "conv_head") else bb.blocks[-1][-1].conv_pwl.weight
    assert _lr_scale_of(groups, deepest) == pytest.approx(0.1)
    assert _lr_scale_of(groups, bb.blocks[0][0].conv_dw.weight if backbone.startswith("mobilenet")
                        else bb.blocks[0][0].conv.weight) == pytest.approx(0.1 * 0.5 ** (blocks - 2))
    assert _lr_scale_of(groups, bb.conv_stem.weight) == pytest.approx(0.1 * 0.5 ** (blocks - 1))
    assert _lr_scale_of(groups, bb.bn1.weight) == pytest.approx(0.1 * 0.5 ** (blocks - 1))
    assert _lr_scale_of(groups, model.encoder.proj.weight) == 1.0
    assert _lr_scale_of(groups, model.loss.logit_scale) == 10.0
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(set(map(id, grouped))) == len(list(model.parameters()))  # each once
    assert all(g["weight_decay"] == (0.05 if g["params"][0].ndim > 1 else 0.0) for g in groups)
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] for p in g["params"])


def test_defaults_keep_the_old_groups_and_backbone_scale_alone_spares_the_head():
    model = PairModel(create_encoder(TINY), ContrastiveLoss())
    old = param_groups(model, 0.05)
    assert [(g["lr_scale"], g["weight_decay"]) for g in old] == [(1.0, 0.05), (1.0, 0.0), (1.0, 0.0)]
    assert [len(g["params"]) for g in old[:2]] == [sum(p.ndim > 1 for p in model.encoder.parameters()),
                                                   sum(p.ndim <= 1 for p in model.encoder.parameters())]
    scaled = param_groups(model, 0.05, backbone_lr_scale=0.1)
    assert {_lr_scale_of(scaled, p) for p in model.encoder.backbone.parameters()} == {0.1}
    assert _lr_scale_of(scaled, model.encoder.proj.weight) == 1.0


def test_lr_schedule_applies_the_group_scales(tmp_path):
    """A real (1-step) phase: each group's lr in the optimizer is the schedule's lr x its scale."""
    dataset = make_synthetic_dataset(tmp_path / "d", n_locations=8, modalities=("uav",), size=32, test_fraction=0.0)
    seen = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append([(g["lr"], g["lr_scale"]) for g in opt.param_groups]))
    cfg = _cfg(epochs=1, batch_size=8, lr=1e-3, warmup_steps=0, backbone_lr_scale=0.1, layer_decay=0.5)
    try:
        train_phase(TINY, cfg, "phase1", dataset, tmp_path, tmp_path / "out", tmp_path / "cache")
    finally:
        hook.remove()
    assert len(seen) == 1
    lrs = sorted({round(lr, 12) for lr, _ in seen[0]})
    assert all(lr == pytest.approx(1e-3 * scale) for lr, scale in seen[0])
    assert lrs[0] == pytest.approx(1e-4 * 0.5 ** 5) and lrs[-1] == pytest.approx(1e-3)  # stem .. head


def _cfg(**phase1) -> TrainConfig:
    return TrainConfig(precision="fp32", progress=False, log_every_steps=1, keep_checkpoints=10,
                       phase1=PhaseConfig(**phase1))


def test_ema_phase_writes_the_hand_computed_average_of_the_raw_weights(tmp_path):
    dataset = make_synthetic_dataset(tmp_path / "d", n_locations=12, modalities=("uav", "ground"), size=32,
                                     test_fraction=0.0)
    decay = 0.6
    # 24 pairs / batch 8: 3 optimizer steps, a checkpoint (raw weights) after each
    cfg = _cfg(epochs=1, batch_size=8, lr=1e-2, warmup_steps=0, checkpoint_every_steps=1, ema_decay=decay)
    out = tmp_path / "out"
    summary = train_phase(TINY, cfg, "phase1", dataset, tmp_path, out, tmp_path / "cache")
    assert summary["steps"] == 3 and summary["ema_decay"] == decay
    (ckpt_root,) = (out / "checkpoints").iterdir()
    raw = [load_file(str(ckpt_root / f"step-{s:07d}" / "model.safetensors")) for s in (1, 2, 3)]
    assert sorted(p.name for p in ckpt_root.glob("*.ema.safetensors")) == [f"step-{s:07d}.ema.safetensors"
                                                                         for s in (1, 2, 3)]
    written = load_file(str(out / "model.safetensors"))
    assert written.keys() == raw[-1].keys()
    moved = 0
    for key, final in written.items():
        if not final.is_floating_point():
            continue
        expected = raw[0][key]  # timm: the first update copies, then ema = d * ema + (1 - d) * weights
        for state in raw[1:]:
            expected = decay * expected + (1 - decay) * state[key]
        torch.testing.assert_close(final, expected, rtol=1e-5, atol=1e-6)
        moved += not torch.equal(final, raw[-1][key])
    assert moved > 10  # the written model is the EMA, not the raw final weights

    # killed after step 1's checkpoint (step 2's EMA file may already be there): resuming restores the EMA
    for name in ("model.safetensors", "summary.json"):
        (out / name).unlink()
    for s in (2, 3):
        shutil.rmtree(ckpt_root / f"step-{s:07d}")
    (ckpt_root / "step-0000003.ema.safetensors").unlink()
    train_phase(TINY, cfg, "phase1", dataset, tmp_path, out, tmp_path / "cache")
    resumed = load_file(str(out / "model.safetensors"))
    for key in written:
        torch.testing.assert_close(resumed[key], written[key], rtol=1e-5, atol=1e-6)


def test_recipe_options_enter_the_fingerprint_only_when_set(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"any bytes")
    base = PhaseConfig()
    fp = run_fingerprint(TINY, TrainConfig(), base, manifest, None)
    assert fp == run_fingerprint(TINY, TrainConfig(), base.model_copy(update={"wise_ft_alpha": 0.5}), manifest, None)
    changed = {run_fingerprint(TINY, TrainConfig(), base.model_copy(update=u), manifest, None)
               for u in ({"backbone_lr_scale": 0.1}, {"layer_decay": 0.75}, {"ema_decay": 0.99})}
    assert len(changed) == 3 and fp not in changed


@pytest.mark.parametrize("override, key", [("train.phase1.layer_decay=0", "train.phase1.layer_decay"),
                                           ("train.phase2.layer_decay=1.5", "train.phase2.layer_decay"),
                                           ("train.phase1.ema_decay=1", "train.phase1.ema_decay"),
                                           ("train.phase2.backbone_lr_scale=0", "train.phase2.backbone_lr_scale")])
def test_bad_recipe_values_are_one_line_config_errors(override, key):
    with pytest.raises(ConfigError) as err:
        load_project(PROJECT_ROOT / "params.yaml", [override])
    problems = str(err.value).splitlines()[1:]  # a header naming the file, then one line per problem
    assert len(problems) == 1 and problems[0].strip().startswith(f"{key}:")


def test_params_yaml_recipe_and_the_schema_defaults_change_nothing():
    from gleam_models.config import PhaseConfig
    from gleam_models.recipe import non_default_recipe

    cfg = load_project(PROJECT_ROOT / "params.yaml").cfg.train
    for phase in (cfg.phase1, cfg.phase2):  # README: recipe study (layer decay breaks the INT8 export)
        assert (phase.backbone_lr_scale, phase.layer_decay, phase.ema_decay) == (1.0, None, None)
    assert non_default_recipe(PhaseConfig()) == {}, "a config without the options must train as before"
