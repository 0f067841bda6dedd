"""Fine-tuning recipe options of a GLEAM-C phase: backbone lr, layer-wise lr decay, EMA of the weights.

    groups = param_groups(model, 0.05, temperature_lr_scale=1.0, backbone_lr_scale=0.1, layer_decay=0.75)
    ema = WeightsEma(model, 0.99); ...; ema.update(model, step)   # after every optimizer step

Every group carries `lr_scale`: the training loop sets its lr to the schedule's lr x lr_scale. The
backbone's blocks come from timm (param_groups_layer_decay: the model's group_matcher, else timm's
automatic grouping); the projection head and the temperature are not part of the backbone.

The options' defaults (RECIPE_FIELDS) train exactly as before and leave the run fingerprint and
summary.json as they were, so runs and figures made before the options existed stay valid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm.optim
import torch
from safetensors.torch import load_file
from timm.utils import ModelEmaV3
from torch import nn

from data_assets.errors import DataError
from data_assets.io import atomic_path
from gleam_models.config import PhaseConfig
from gleam_models.safetensors_io import save_file

RECIPE_FIELDS = ("backbone_lr_scale", "layer_decay", "ema_decay")


def non_default_recipe(pcfg: PhaseConfig) -> dict[str, Any]:
    """The recipe options this phase sets away from their defaults (for the fingerprint and summary)."""
    return {k: getattr(pcfg, k) for k in RECIPE_FIELDS if getattr(pcfg, k) != PhaseConfig.model_fields[k].default}


def backbone_lr_scales(backbone: nn.Module, backbone_lr_scale: float, layer_decay: float | None) -> dict[int, float]:
    """id(parameter) -> lr scale, for every trainable backbone parameter.

    layer_decay d: timm's blocks 0 (stem) .. L (deepest) get backbone_lr_scale x d ** (L - block)."""
    if layer_decay is None:
        return {id(p): backbone_lr_scale for p in backbone.parameters() if p.requires_grad}
    groups = timm.optim.param_groups_layer_decay(backbone, layer_decay=layer_decay)
    return {id(p): backbone_lr_scale * g["lr_scale"] for g in groups for p in g["params"]}


def param_groups(model: nn.Module, weight_decay: float, temperature_lr_scale: float = 1.0,
                 backbone_lr_scale: float = 1.0, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """AdamW groups of a PairModel: one per (lr scale, decay or not), then the temperature.

    No weight decay on biases, norm layers and the temperature (1-D / scalar parameters). The
    temperature (a log scale) gets its own group whose lr is `temperature_lr_scale` times the
    schedule's: with Adam it moves about lr per step, so at lr 1e-3 a few hundred steps would
    barely move it from its init. With the defaults this is [decay, no decay, temperature].
    """
    scales = backbone_lr_scales(model.encoder.backbone, backbone_lr_scale, layer_decay)
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    temperature = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("logit_scale"):
            temperature.append(p)
            continue
        scale, decay = scales.get(id(p), 1.0), p.ndim > 1
        group = groups.setdefault((scale, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0,
                                                   "lr_scale": scale})
        group["params"].append(p)
    ordered = [groups[key] for key in sorted(groups, key=lambda k: (-k[0], not k[1]))]
    if temperature:
        ordered.append({"params": temperature, "weight_decay": 0.0, "lr_scale": temperature_lr_scale})
    return ordered


class WeightsEma:
    """Exponential moving average of a model's state (timm ModelEmaV3), saved without pickle.

    Updated with the optimizer step count, as timm's own training script does: step 1 copies the
    weights, later steps mix in (1 - decay) of them. Floating tensors stay in the model's dtype
    (fp32 parameters here: no stochastic rounding, so a resumed run gives the same average)."""

    def __init__(self, model: nn.Module, decay: float):
        self.ema = ModelEmaV3(model, decay=decay)

    def update(self, model: nn.Module, step: int) -> None:
        self.ema.update(model, step=step)

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.ema.module.state_dict().items()}

    def save(self, path: Path) -> None:
        with atomic_path(Path(path)) as tmp:
            save_file(self.state(), tmp)

    def load(self, path: Path) -> None:
        try:
            self.ema.module.load_state_dict(load_file(str(path)), strict=True)
        except Exception as e:  # noqa: BLE001 - a missing or damaged file fails in several ways
            raise DataError(Path(path), f"EMA state of this checkpoint cannot be read ({e}); delete the "
                                        "checkpoint directory beside it to resume from the previous one") from None

    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged weights into `model` (the trainer does this once, after the last step)."""
        model.load_state_dict(self.ema.module.state_dict(), strict=True)


def ema_path(ckpt_dir: Path) -> Path:
    """The EMA state of checkpoints/<fp>/step-N/ lives beside it, written before the directory appears,
    so every complete checkpoint directory has its EMA file (a kill in between leaves only an orphan)."""
    return ckpt_dir.with_name(ckpt_dir.name + ".ema.safetensors")


def drop_orphan_emas(ckpt_root: Path) -> None:
    for path in Path(ckpt_root).glob("step-*.ema.safetensors"):
        if not path.with_name(path.name.removesuffix(".ema.safetensors")).is_dir():
            path.unlink(missing_ok=True)
