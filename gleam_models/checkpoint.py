"""Training checkpoints: one directory per checkpoint, written atomically, enough to resume exactly.

    checkpoints/step-0000120/
        model.safetensors   encoder + loss temperature (the same format as the final model)
        optimizer.pt        AdamW state, GradScaler state, similarity-sampler neighbour table
        rng.safetensors     NumPy / torch (/ CUDA) RNG state arrays
        state.json          step, epoch, position in the epoch, Python RNG state and NumPy RNG
                            scalars (plain JSON), config fingerprint, clock

Nothing here is ever unpickled: a checkpoint is data a user can hand in (optimizer.pt is read with
torch.load(weights_only=True), RNG states are tensors + JSON numbers).

A directory appears only once complete (data_assets.io.atomic_directory), so a run killed at any
moment resumes from the newest directory present.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from data_assets.errors import DataError
from data_assets.io import atomic_directory, atomic_path, read_json, write_json
from gleam_models.encoder import checkpoint_metadata, checkpoint_state
from gleam_models.safetensors_io import save_file as canonical_save_file


def weights_fingerprint(path: Path) -> str:
    """A hash of a safetensors file's tensors (names, dtypes, shapes, values), not of its bytes.

    safetensors writes metadata keys in no fixed order, so identical weights can give files with
    different bytes; everything that identifies a model (gallery, export, metrics) uses this instead.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return _tensors_fingerprint(f.keys(), f.get_tensor)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for bad files
        raise DataError(path, f"not a readable safetensors file ({e})") from None


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """weights_fingerprint of the file `state` would be saved as, without writing it."""
    return _tensors_fingerprint(state.keys(), state.__getitem__)


def _tensors_fingerprint(names, get_tensor) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        tensor = get_tensor(name).detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _disk_full(e: Exception, path: Path) -> OSError | None:
    """torch and safetensors report a full disk as their own errors ('unexpected pos', 'os error 28')."""
    text = str(e)
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or any(
            m in text for m in ("os error 28", "No space left", "unexpected pos", "failed writing file")):
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    return None


@contextlib.contextmanager
def _writing(path: Path):
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised as is unless it is a full disk
        full = _disk_full(e, path)
        if full is None:
            raise
        raise full from None


def save_model(path: Path, encoder, loss, extra_meta: dict | None = None) -> None:
    with atomic_path(path) as tmp, _writing(path):
        # metadata keys in a fixed order: identical weights give identical bytes (DVC hashes bytes)
        canonical_save_file(checkpoint_state(encoder, loss), tmp, metadata=checkpoint_metadata(encoder, extra_meta))


RNG_FILE = "rng.safetensors"


def save_rng(ckpt_dir: Path) -> dict[str, Any]:
    """Write NumPy/torch/CUDA RNG arrays to ckpt_dir/rng.safetensors; return the JSON part."""
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors = {"numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).view(np.int32).copy()),
               "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = st
    save_file(tensors, str(ckpt_dir / RNG_FILE))
    return {"format": "safetensors+json/1", "file": RNG_FILE,
            "python": {"version": version, "state": list(mt_state), "gauss": gauss},
            "numpy": {"kind": np_kind, "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                      "cached_gaussian": float(np_gauss)}}


def restore_rng(rng: dict[str, Any], ckpt_dir: Path) -> None:
    """Restore what save_rng wrote. Refuses the old pickled format instead of unpickling it."""
    ckpt_dir = Path(ckpt_dir)
    if "pickle_b64" in rng or rng.get("format") != "safetensors+json/1":
        raise DataError(ckpt_dir / "state.json", "checkpoint stores its RNG state in an old or unknown format "
                        "(a pickle, which is never loaded: it could run code); delete this checkpoint "
                        "directory or start over with --no-resume")
    try:
        tensors = load_file(str(ckpt_dir / RNG_FILE))
        py, npy = rng["python"], rng["numpy"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]),
                         None if py["gauss"] is None else float(py["gauss"])))
        keys = tensors["numpy_keys"].numpy().view(np.uint32)
        np.random.set_state((str(npy["kind"]), keys, int(npy["pos"]), int(npy["has_gauss"]),
                             float(npy["cached_gaussian"])))
        torch.set_rng_state(tensors["torch"])
    except Exception as e:  # noqa: BLE001 - a damaged file can fail in many ways
        raise DataError(ckpt_dir, f"checkpoint RNG state cannot be restored ({e}); delete this checkpoint "
                                  "directory to resume from the previous one") from None
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(ckpt_root: Path, step: int, encoder, loss, optimizer, scaler,
                    neighbours: np.ndarray | None, state: dict[str, Any], keep: int) -> Path:
    target = ckpt_root / f"step-{step:07d}"
    with atomic_directory(target) as tmp:
        save_model(tmp / "model.safetensors", encoder, loss)
        with _writing(target):
            torch.save({"optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "neighbours": None if neighbours is None else torch.from_numpy(neighbours)},
                       tmp / "optimizer.pt")
            write_json(tmp / "state.json", {**state, "step": step, "rng": save_rng(tmp)})
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
