"""Shared fixture of the export / bundle tests: one tiny exported encoder, a gallery, a bundle.

Built once per test session (about 30 s on 2 cores): a random MobileNetV2-0.5 at 32 px saved as a
GLEAM-C checkpoint, a synthetic manifest with train and test splits, `export_models` on it, a
gallery in the gleam-gallery/1 format made of the ONNX embeddings of the test satellite tiles (so a
frame's true tile is known), and the bundle.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

SIZE_32 = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}


def tiny_checkpoint(root: Path):
    import torch

    from gleam_models.checkpoint import save_model
    from gleam_models.config import EncoderConfig
    from gleam_models.encoder import create_encoder

    cfg = EncoderConfig(backbone="mobilenetv2_050", weights="none", input_size=SIZE_32, channels_last=False)
    torch.manual_seed(0)
    ckpt = root / "model.safetensors"
    save_model(ckpt, create_encoder(cfg), None)
    return cfg, ckpt


def write_gallery(out: Path, fingerprint: str, embeddings: np.ndarray, names: list[str]) -> Path:
    """A gallery directory in H3's gleam-gallery/1 format (numpy + csv, no faiss needed)."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", embeddings.astype(np.float32), allow_pickle=False)
    with open(out / "tiles.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tile_id", "raster", "row_off", "col_off", "width_px", "height_px", "center_lat",
                    "center_lon", "footprint_wkt", "ground_m"])
        for i, name in enumerate(names):
            lat, lon = 36.14 + 1e-4 * i, -115.23 - 1e-4 * i
            w.writerow([name, "synthetic.tif", 0, 32 * i, 32, 32, f"{lat:.7f}", f"{lon:.7f}",
                        f"POLYGON(({lon} {lat}, {lon} {lat}, {lon} {lat}, {lon} {lat}))", 64.0])
    meta = {"format": "gleam-gallery/1", "model_fingerprint": fingerprint, "backbone": "mobilenetv2_050",
            "embed_dim": int(embeddings.shape[1]), "input_size": [32, 32], "tile_m": 64.0, "stride_m": 32.0,
            "rasters": [{"path": "synthetic.tif"}], "count": len(names), "index": "index.faiss",
            "index_kind": "flat", "created_at": "2026-01-01T00:00:00Z"}
    (out / "gallery.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    from export.bundle import build_bundle
    from export.config import ExportConfig
    from export.models import export_models
    from export.parity import view_images
    from export.quantize import ort_embed, ort_session
    from gleam_models.data import decode_resized
    from gleam_models.evaluate import EvalConfig
    from gleam_models.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("export")
    manifest = make_synthetic_dataset(root / "data", n_locations=24, modalities=("uav", "street_map"),
                                      test_fraction=0.5, size=64)
    model_cfg, ckpt = tiny_checkpoint(root)
    cfg = ExportConfig(calibration_images=16, parity_images=8, max_batch=4)
    report = export_models(model_cfg, ckpt, cfg, manifest, root, root / "cache", root / "onnx",
                           eval_cfg=EvalConfig(splits=["test"]))
    satellites = view_images(manifest, root, "test", "satellite")
    frames = np.stack([decode_resized(p, (32, 32)) for p in satellites])
    session = ort_session(root / "onnx" / report["files"]["32x32"]["fp32"])
    gallery = write_gallery(root / "gallery", report["model_fingerprint"], ort_embed(session, frames),
                            [p.stem for p in satellites])
    manifest_bundle = build_bundle(root / "onnx", gallery, root / "jetson_bundle", root / "jetson_bundle.tar.gz",
                                   max_batch=4)
    return {"root": root, "manifest": manifest, "model_cfg": model_cfg, "checkpoint": ckpt, "cfg": cfg,
            "report": report, "onnx_dir": root / "onnx", "gallery": gallery, "bundle": root / "jetson_bundle",
            "archive": root / "jetson_bundle.tar.gz", "bundle_manifest": manifest_bundle,
            "satellites": satellites}
