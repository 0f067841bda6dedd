"""What a GLEAM-X model directory holds, checked without torch.

`gleam explain` and `gleam gleamx-merge` call `check_model_dir` before loading any model, so that
a wrong `--model` path is reported at once rather than after seconds of imports.
"""
from __future__ import annotations

from pathlib import Path

from data_assets.errors import DataError
from data_assets.io import read_json

ADAPTER_FORMAT, MERGED_FORMAT = "gleamx-adapter/1", "gleamx-merged/1"
VLM_ADAPTER_FORMAT, VLM_MERGED_FORMAT = "gleamx-vlm-adapter/1", "gleamx-vlm-merged/1"
# What training writes beside gleamx.json in a LLaVA-style adapter directory (build.save_trained).
ADAPTER_FILES = ("projector.safetensors", "adapter/adapter_config.json")


def read_model_meta(model_dir: Path) -> dict:
    """gleamx.json of a trained directory, or config.json (format MERGED_FORMAT) of a merged one."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(model_dir, "GLEAM-X model directory not found (run `gleam gleamx-finetune` or pass --model)")
    for name in ("gleamx.json", "config.json"):
        if (model_dir / name).is_file():
            try:
                meta = read_json(model_dir / name)
            except Exception as e:  # noqa: BLE001
                raise DataError(model_dir / name, f"not readable JSON ({e})") from None
            if name == "config.json" and meta.get("model_type") != "gleamx":
                continue
            return meta if name == "gleamx.json" else {"format": MERGED_FORMAT, **meta}
    raise DataError(model_dir, "not a GLEAM-X model directory (no gleamx.json or config.json of model_type gleamx)")


def check_model_dir(model_dir: Path) -> dict:
    """read_model_meta, plus: an adapter directory has the files training writes."""
    meta = read_model_meta(model_dir)
    if meta.get("format") == ADAPTER_FORMAT:
        for name in ADAPTER_FILES:
            if not (Path(model_dir) / name).is_file():
                raise DataError(Path(model_dir) / name, "missing from the trained model directory (re-run gleamx-finetune)")
    return meta
