"""Test-wide environment: offline, and nothing written to the user's home."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_TMP = Path(tempfile.mkdtemp(prefix="gleam-tests-"))
for var, sub in [("DAGSTER_HOME", "dagster"), ("HF_HOME", "hf"), ("TORCH_HOME", "torch"),
                 ("MPLCONFIGDIR", "mpl"), ("XDG_CACHE_HOME", "xdg-cache")]:
    os.environ[var] = str(_TMP / sub)
    (_TMP / sub).mkdir(parents=True, exist_ok=True)
# Dagster reads dagster.yaml (telemetry off) from DAGSTER_HOME; without it, it writes ~/.dagster.
(_TMP / "dagster" / "dagster.yaml").write_text((PROJECT_ROOT / "orchestration" / "dagster.yaml").read_text())
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Under pytest-xdist (`make test TEST_WORKERS=2`) one torch thread per worker: two workers of two
# threads on two cores oversubscribe them and torch then slows down far more than 2x.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory) -> Path:
    """The default embedded dataset, built once per test session (real registry imagery)."""
    from data_assets.embedded import EmbeddedConfig, build_embedded_dataset

    out = tmp_path_factory.mktemp("embedded-session") / "embedded"
    build_embedded_dataset(EmbeddedConfig(), out)
    return out
