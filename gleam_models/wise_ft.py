"""WiSE-FT (Wortsman et al., 2022): interpolate fine-tuned weights with the pretrained ones.

    theta(alpha) = (1 - alpha) * theta_pretrained + alpha * theta_finetuned

alpha 0 is the pretrained encoder (ImageNet, `model.weights`), alpha 1 the fine-tuned one. Fine-tuning
on a small embedded dataset moves the encoder away from what ImageNet taught it; interpolating keeps
part of that knowledge (the paper's finding: better accuracy under distribution shift at little cost
in-distribution). Every floating tensor is interpolated, BatchNorm running statistics included;
integer buffers (num_batches_tracked) come from the fine-tuned model.

    write_wise_ft_model(model_cfg, Path("models/gleamc_phase2/model.safetensors"), 0.5, Path("out.safetensors"))

The written file is a GLEAM-C model like any phase's output (same keys, same metadata plus
`wise_ft_alpha`, `wise_ft_pretrained` and `wise_ft_finetuned`, the two sources' weights fingerprints).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from data_assets.errors import ConfigError
from data_assets.io import atomic_path
from gleam_models.checkpoint import state_fingerprint
from gleam_models.config import EncoderConfig
from gleam_models.encoder import ENCODER_PREFIX, GleamEncoder, checkpoint_state, create_encoder, read_checkpoint
from gleam_models.safetensors_io import save_file  # metadata in a fixed order: same weights, same bytes


def check_alpha(alpha: float, key: str = "wise_ft_alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) \
            or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"{key}: must be a number in [0, 1] (0 = pretrained, 1 = fine-tuned), got {alpha!r}")
    return float(alpha)


def wise_ft(pretrained_state: dict[str, torch.Tensor], finetuned_state: dict[str, torch.Tensor],
            alpha: float, origin: str = "wise_ft") -> dict[str, torch.Tensor]:
    """(1 - alpha) * pretrained + alpha * fine-tuned for every floating tensor; the rest from fine-tuned.

    Both states must hold the same keys with the same shapes and dtypes (else ConfigError naming
    them). alpha 0 and 1 give the two states exactly (torch.lerp is exact at both ends)."""
    alpha = check_alpha(alpha)
    _check_same_layout(pretrained_state, finetuned_state, origin)
    out = {}
    for key, tuned in finetuned_state.items():
        base = pretrained_state[key]
        if tuned.is_floating_point():
            work = torch.promote_types(tuned.dtype, torch.float32)  # bf16/fp16 weights: mix in fp32
            out[key] = torch.lerp(base.detach().cpu().to(work), tuned.detach().cpu().to(work), alpha).to(tuned.dtype)
        else:
            out[key] = tuned.detach().cpu().clone()
    return out


def _check_same_layout(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor], origin: str) -> None:
    only_pre = sorted(set(pretrained) - set(finetuned))
    only_fine = sorted(set(finetuned) - set(pretrained))
    differ = [f"{k} {tuple(pretrained[k].shape)}/{pretrained[k].dtype} vs {tuple(finetuned[k].shape)}/{finetuned[k].dtype}"
              for k in finetuned if k in pretrained
              and (pretrained[k].shape != finetuned[k].shape or pretrained[k].dtype != finetuned[k].dtype)]
    problems = [f"{len(items)} {label} ({', '.join(items[:4])}{', ...' if len(items) > 4 else ''})"
                for label, items in (("keys only in the pretrained state", only_pre),
                                     ("keys only in the fine-tuned state", only_fine),
                                     ("tensors differing in shape/dtype (pretrained vs fine-tuned)", differ))
                if items]
    if problems:
        raise ConfigError(f"{origin}: the pretrained and fine-tuned weights are not the same network: "
                          f"{'; '.join(problems)}. Were they built with the same model.backbone and model.embed_dim?")


def require_pretrained(model_cfg: EncoderConfig, key: str = "wise_ft_alpha") -> None:
    if model_cfg.weights.strip() in ("none", ""):
        raise ConfigError(f"{key}: interpolating with the pretrained weights needs pretrained weights, "
                          "but model.weights=none (random init); set model.weights or leave it null")


def pretrained_state(model_cfg: EncoderConfig, key: str = "wise_ft_alpha") -> dict[str, torch.Tensor]:
    """The encoder state (checkpoint key names) that `model.weights` gives before any training."""
    require_pretrained(model_cfg, key)
    return checkpoint_state(create_encoder(model_cfg))


def interpolate_checkpoint(pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor],
                           alpha: float, origin: str = "wise_ft") -> dict[str, torch.Tensor]:
    """A GLEAM-C checkpoint state: encoder tensors interpolated, the rest (loss temperature) fine-tuned."""
    tuned_encoder = {k: v for k, v in finetuned.items() if k.startswith(ENCODER_PREFIX)}
    base_encoder = {k: v for k, v in pretrained.items() if k.startswith(ENCODER_PREFIX)}
    mixed = wise_ft(base_encoder, tuned_encoder, alpha, origin)
    return {k: mixed.get(k, v) for k, v in finetuned.items()}


def wise_ft_metadata(alpha: float, pretrained: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor]) -> dict:
    return {"wise_ft_alpha": check_alpha(alpha), "wise_ft_pretrained": state_fingerprint(pretrained),
            "wise_ft_finetuned": state_fingerprint(finetuned)}


def apply_wise_ft(encoder: GleamEncoder, loss: torch.nn.Module | None, model_cfg: EncoderConfig, alpha: float,
                  key: str = "wise_ft_alpha") -> dict:
    """Replace a trained encoder's weights by their interpolation with `model.weights`, in place.

    Returns the metadata to record (alpha and the fingerprints of both sources, the fine-tuned one
    being that of the model file the trainer would have written without interpolation)."""
    pretrained = pretrained_state(model_cfg, key)
    finetuned = checkpoint_state(encoder, loss)  # on a CPU these share the parameters' memory
    metadata = wise_ft_metadata(alpha, pretrained, finetuned)  # so: before the parameters are overwritten
    mixed = interpolate_checkpoint(pretrained, finetuned, alpha, origin=key)
    encoder.load_state_dict({k.removeprefix(ENCODER_PREFIX): v for k, v in mixed.items()
                             if k.startswith(ENCODER_PREFIX)}, strict=True)
    return metadata


def write_wise_ft_model(model_cfg: EncoderConfig, finetuned_path: Path, alpha: float, out_path: Path) -> dict:
    """Interpolate a GLEAM-C model file with `model.weights` and write it (atomically) to out_path.

    Returns the metadata written; `out_path` loads wherever a phase's model.safetensors does."""
    finetuned, meta = read_checkpoint(Path(finetuned_path))
    pretrained = pretrained_state(model_cfg)
    mixed = interpolate_checkpoint(pretrained, finetuned, alpha, origin=str(finetuned_path))
    wise = wise_ft_metadata(alpha, pretrained, finetuned)  # state_fingerprint == weights_fingerprint of the file
    metadata = {**meta, **{k: str(v) for k, v in wise.items()}}
    with atomic_path(Path(out_path)) as tmp:
        save_file({k: v.contiguous() for k, v in mixed.items()}, str(tmp), metadata=metadata)
    return wise
