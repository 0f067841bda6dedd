"""Embed images with a GLEAM-C encoder: evaluation, similarity sampling, the GLEAM-X miner."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from data_assets.errors import ConfigError
from gleam_models.config import VIEWS, EncoderConfig
from gleam_models.data import ImageCache, to_nchw
from gleam_models.encoder import GleamEncoder


@torch.no_grad()
def embed_arrays(encoder: GleamEncoder, arrays: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """uint8 [H,W,3] arrays of one size -> float32 [N, D] unit vectors (eval mode, fp32)."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    channels_last = torch.channels_last if _is_channels_last(encoder) else torch.contiguous_format
    out = []
    try:
        for start in range(0, len(arrays), batch_size):
            x = to_nchw(list(arrays[start:start + batch_size])).to(device)
            x = encoder.normalize(x).contiguous(memory_format=channels_last)
            out.append(encoder(x).float().cpu())
    finally:
        encoder.train(was_training)
    if not out:
        return np.zeros((0, encoder.embed_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def _is_channels_last(encoder: GleamEncoder) -> bool:
    weights = [p for p in encoder.parameters() if p.ndim == 4]
    return bool(weights) and weights[0].is_contiguous(memory_format=torch.channels_last)


def make_embed_fn(encoder: GleamEncoder, model_cfg: EncoderConfig, cache_dir: Path,
                  batch_size: int = 64) -> Callable[[list[Path], str], np.ndarray]:
    """fn(absolute image paths, view) -> float32 [N, D] L2-normalised embeddings.

    `view` is "satellite" or a query modality; it picks the input size from model_cfg.input_size.
    Decoded, resized images are cached under cache_dir, shared with training.
    """
    cache = ImageCache(Path(cache_dir), ram_budget_mb=0)  # evaluation galleries can be large

    def embed(paths: list[Path], view: str) -> np.ndarray:
        if view not in VIEWS:
            raise ConfigError(f"embed view {view!r} is unknown; valid: {list(VIEWS)}")
        size = tuple(model_cfg.input_size[view])
        out = []
        for start in range(0, len(paths), batch_size * 8):  # bounded memory for big galleries
            arrays = [cache.get(Path(p), size) for p in paths[start:start + batch_size * 8]]
            out.append(embed_arrays(encoder, arrays, batch_size))
        return np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), dtype=np.float32)

    return embed
