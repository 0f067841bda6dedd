"""A tiny synthetic cross-view dataset (real files, real manifest) for tests and benchmarks.

Each location is a random "satellite" image of coloured rectangles; its queries are derived views
of it: a rotated crop (uav), a posterised map (street_map), a wide strip (panorama), a perspective-
free crop (ground). Queries of one location therefore resemble its satellite image, so a model can
learn the pairing. Marked derived=True in the manifest, as they are.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from data_assets.io import sha256_file
from data_assets.manifest import write_manifest


def _satellite(rng: np.random.Generator, size: int) -> Image.Image:
    im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(8):
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(6, size // 2, 2)
        draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return im


def _view(sat: Image.Image, modality: str, rng: np.random.Generator, size: int) -> Image.Image:
    if modality == "uav":
        crop = int(size * 0.8)
        x, y = rng.integers(0, size - crop + 1, 2)
        return sat.crop((int(x), int(y), int(x) + crop, int(y) + crop)).rotate(float(rng.uniform(0, 360)))
    if modality == "street_map":
        return sat.quantize(colors=4).convert("RGB")
    if modality == "panorama":
        return sat.resize((size * 2, size // 2))
    return sat.crop((size // 4, size // 4, 3 * size // 4, 3 * size // 4)).resize((size, size))


def make_synthetic_dataset(root: Path, n_locations: int = 24, modalities=("uav", "street_map"),
                           queries_per_modality: int = 1, size: int = 48, seed: int = 0,
                           test_fraction: float = 0.0, manifest_name: str = "manifest.parquet") -> Path:
    """Write images under root and root/manifest_name; returns the manifest path.

    dataset_root in the manifest is the absolute root, so base_dir can be anything.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_locations):
        split = "test" if i < int(round(test_fraction * n_locations)) else "train"
        sat = _satellite(rng, size)
        sat_rel = f"satellite/{i:04d}.png"
        (root / "satellite").mkdir(parents=True, exist_ok=True)
        sat.save(root / sat_rel)
        for m in modalities:
            for k in range(queries_per_modality):
                q_rel = f"{m}/{i:04d}_{k}.png"
                (root / m).mkdir(parents=True, exist_ok=True)
                _view(sat, m, rng, size).save(root / q_rel)
                rows.append({
                    "pair_id": f"synthetic-{i}-{m}-{k}", "kind": "pair", "source": "synthetic",
                    "dataset_root": str(root.resolve()), "split": split, "modality": m,
                    "location_id": f"synthetic/{i:04d}", "query_path": q_rel, "satellite_path": sat_rel,
                    "query_sha256": sha256_file(root / q_rel), "satellite_sha256": sha256_file(root / sat_rel),
                    "lat": None, "lon": None, "semi_positive_ids": [], "derived": True,
                    "query_meta": json.dumps({}), "ground_truth": json.dumps({}),
                })
    return write_manifest(pd.DataFrame(rows), root / manifest_name)
