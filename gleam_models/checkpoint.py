"""Training checkpoints: one directory per checkpoint, written atomically, enough to resume exactly.

    checkpoints/step-0000120/
        model.safetensors   encoder + loss temperature (the same format as the final model)
        optimizer.pt        AdamW state, GradScaler state, similarity-sampler neighbour table
        state.json          step, epoch, position in the epoch, RNG states, config fingerprint, clock

A directory appears only once complete (data_assets.io.atomic_directory), so a run killed at any
moment resumes from the newest directory present.
"""
from __future__ import annotations

import base64
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from data_assets.errors import DataError
from data_assets.io import atomic_directory, atomic_path, read_json, write_json
from gleam_models.encoder import checkpoint_metadata, checkpoint_state


def save_model(path: Path, encoder, loss, extra_meta: dict | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file(checkpoint_state(encoder, loss), str(tmp), metadata=checkpoint_metadata(encoder, extra_meta))


def rng_state() -> dict[str, str]:
    """Python, NumPy and torch RNG states, as base64 text for the JSON state file."""
    blob = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    return {"pickle_b64": base64.b64encode(pickle.dumps(blob)).decode()}


def restore_rng(state: dict[str, str]) -> None:
    blob = pickle.loads(base64.b64decode(state["pickle_b64"]))  # our own file, written by rng_state
    random.setstate(blob["python"])
    np.random.set_state(blob["numpy"])
    torch.set_rng_state(blob["torch"])
    if blob["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda"])


def save_checkpoint(ckpt_root: Path, step: int, encoder, loss, optimizer, scaler,
                    neighbours: np.ndarray | None, state: dict[str, Any], keep: int) -> Path:
    target = ckpt_root / f"step-{step:07d}"
    with atomic_directory(target) as tmp:
        save_model(tmp / "model.safetensors", encoder, loss)
        torch.save({"optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "neighbours": None if neighbours is None else torch.from_numpy(neighbours)},
                   tmp / "optimizer.pt")
        write_json(tmp / "state.json", {**state, "step": step, "rng": rng_state()})
    for old in list_checkpoints(ckpt_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    if not ckpt_root.is_dir():
        return []
    return sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and (p / "state.json").is_file())


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state.json, optimizer.pt contents) of a checkpoint directory."""
    try:
        state = read_json(path / "state.json")
        extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise DataError(path, f"checkpoint cannot be read ({e}); delete it to resume from the previous one") from None
    return state, extra
