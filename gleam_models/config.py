"""Config sections for GLEAM-C: the encoder, the two training phases, evaluation.

Placeholder shapes agreed with orchestration; the GLEAM-C implementation owns and extends them.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from data_assets.settings import Section


class EncoderConfig(Section):
    backbone: str = "mobilenetv2_100"  # any timm architecture name
    weights: str = "registry:mobilenet_v2"  # "registry:<name>", a local file path, "hub", or "none"
    embed_dim: int | None = None  # optional linear projection; None keeps pooled features


class PhaseConfig(Section):
    epochs: int = Field(default=1, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, ge=2)
    sampler: Literal["balanced_random", "similarity"] = "balanced_random"
    modalities: list[str] | None = None  # None = every modality in the manifest
    freeze: list[str] = []  # parameter-name prefixes kept frozen


class TrainConfig(Section):
    seed: int = 0
    phase1: PhaseConfig = PhaseConfig()
    phase2: PhaseConfig = PhaseConfig(sampler="similarity", lr=1e-4)


from gleam_models.evaluate import EvalConfig  # noqa: E402  (owned by the evaluation module)

__all__ = ["EncoderConfig", "PhaseConfig", "TrainConfig", "EvalConfig"]
