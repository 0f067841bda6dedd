"""Small shared pieces of the reliability suite: a tiny training config and a tmp project."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from data_assets.io import sha256_file, write_json
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig

SMALL = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}
TINY = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL)
MODS = ("uav", "street_map", "panorama", "ground")
PYTHON = sys.executable


def train_cfg(**phase1) -> TrainConfig:
    base = dict(epochs=1, batch_size=8, lr=1e-3, warmup_steps=2)
    return TrainConfig(precision="fp32", batchnorm="frozen", progress=False, log_every_steps=1,
                       phase1=PhaseConfig(**{**base, **phase1}),
                       phase2=PhaseConfig(epochs=1, batch_size=8, lr=1e-4))


def write_report(validated_dir: Path, passed: bool, manifest_sha: str | None) -> Path:
    """A report.json in the shape validation writes (the fields consumers read)."""
    report = {"passed": passed, "threshold": 0.02,
              "counts": {"rows_in": 10, "rows_out": 4, "bad_rows": 6, "bad_fraction": 0.6},
              "expectations": [], "table_failures": [],
              "failures": [] if passed else [{"name": "max_bad_fraction", "reason": "6 of 10 rows are bad (60.00%)"}]}
    if manifest_sha is not None:
        report["validated_manifest"] = {"file": "manifest.parquet", "sha256": manifest_sha}
    write_json(validated_dir / "report.json", report)
    return validated_dir / "report.json"


def fake_validated(project_root: Path, passed: bool, hash_matches: bool = True) -> Path:
    """data/validated/{manifest.parquet, report.json} under a tmp project."""
    validated = project_root / "data" / "validated"
    validated.mkdir(parents=True, exist_ok=True)
    manifest = validated / "manifest.parquet"
    pd.DataFrame({"pair_id": ["a"]}).to_parquet(manifest)
    write_report(validated, passed, sha256_file(manifest) if hash_matches else "0" * 64)
    return manifest


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
