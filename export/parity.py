"""Real images for calibration and parity, embedding parity figures, retrieval parity runs."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from data_assets.errors import DataError
from data_assets.manifest import read_manifest, resolve_query, resolve_satellite
from gleam_models.data import ImageCache

EmbedFn = Callable[[list[Path], str], np.ndarray]


def view_images(manifest: Path, base_dir: Path, split: str, view: str) -> list[Path]:
    """Distinct image paths of one view ('satellite' or a query modality) in a split, sorted."""
    df = read_manifest(manifest)
    df = df[df["split"] == split]
    if view == "satellite":
        rows = df.drop_duplicates(["dataset_root", "satellite_path"]).to_dict("records")
        paths = [resolve_satellite(r, base_dir) for r in rows]
    else:
        rows = df[(df["kind"] == "pair") & (df["modality"] == view)].drop_duplicates(
            ["dataset_root", "query_path"]).to_dict("records")
        paths = [resolve_query(r, base_dir) for r in rows]
    return sorted(set(paths))


def sample_frames(manifest: Path, base_dir: Path, split: str, views: list[str], size: tuple[int, int],
                  n: int, cache: ImageCache, seed: int = 0) -> tuple[np.ndarray, list[Path]]:
    """About n uint8 [H,W,3] frames spread evenly over `views`, resized as training resizes."""
    rng = np.random.default_rng(seed)
    per_view = {v: view_images(manifest, base_dir, split, v) for v in views}
    per_view = {v: p for v, p in per_view.items() if p}
    if not per_view:
        raise DataError(manifest, f"no {split} images of views {views} for calibration/parity")
    share = max(1, -(-n // len(per_view)))  # ceil: at least n in all
    picked: list[Path] = []
    for paths in per_view.values():
        idx = rng.choice(len(paths), size=min(share, len(paths)), replace=False)
        picked += [paths[i] for i in sorted(idx)]
    return np.stack([cache.get(p, size) for p in picked]), picked


def cosine_report(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Row-wise cosine and absolute differences of two [N, D] embedding sets."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    cos = (ref * cand).sum(axis=1)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "max_abs_diff": float(np.abs(reference - candidate).max()), "n_images": int(len(cos))}


def cached_embed_fn(embed_frames: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
                    input_size: dict[str, tuple[int, int]], cache: ImageCache, batch: int = 64) -> EmbedFn:
    """An evaluate.EmbedFn from fn(uint8 frames, size) -> [N, D], images resized like training."""

    def embed(paths: list[Path], view: str) -> np.ndarray:
        size = tuple(int(v) for v in input_size[view])
        out = []
        for start in range(0, len(paths), batch):
            frames = np.stack([cache.get(Path(p), size) for p in paths[start:start + batch]])
            out.append(embed_frames(frames, size))
        return np.concatenate(out).astype(np.float32, copy=False)

    return embed


def r1_table(document: dict, runs: list[str]) -> dict[str, dict[str, float]]:
    """{run: {"<split>/<modality>/<direction>": R@1}} from evaluate_runs' document."""
    out = {}
    for run in runs:
        splits = document["runs"].get(run, {}).get("splits", {})
        out[run] = {f"{split}/{m}/{d}": v["R@1"] for split, by_mod in splits.items()
                    for m, by_dir in by_mod.items() for d, v in by_dir.items()}
    return out


def mean_q2s_r1(table: dict[str, float]) -> float:
    values = [v for k, v in table.items() if k.endswith("/query_to_satellite")]
    return float(np.mean(values)) if values else float("nan")
