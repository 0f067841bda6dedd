"""safetensors files whose bytes depend only on their tensors and metadata.

safetensors (up to at least 0.6) writes the `__metadata__` keys in a random order on every save
(safetensors/safetensors#584, fix still open in #790), so a model saved twice from identical weights
gives two files with different hashes: DVC then sees a changed output and re-runs everything
downstream. `save_file` here writes the same header with its metadata keys sorted; the file is an
ordinary safetensors file (the format says nothing about key order).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

_HEADER_ALIGN = 8  # safetensors pads the JSON header with spaces so the tensor data starts aligned


def canonical_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors.torch.save(tensors, metadata) with the metadata keys in sorted order."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])  # keeps the writer's order of the tensor entries
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _HEADER_ALIGN)
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Drop-in for safetensors.torch.save_file (not atomic: write into a temporary path)."""
    Path(path).write_bytes(canonical_bytes(tensors, metadata))
