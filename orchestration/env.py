"""Point every tool's home/cache inside the project (or wherever the user already pointed it).

Nothing the pipeline runs may write to the user's home directory or reach a model hub.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

DAGSTER_YAML = Path(__file__).with_name("dagster.yaml")


def configure_environment(project_root: Path) -> None:
    root = Path(project_root).resolve()
    defaults = {
        "DAGSTER_HOME": root / ".dagster",
        "HF_HOME": root / ".cache" / "huggingface",
        "TORCH_HOME": root / ".cache" / "torch",
        "MPLCONFIGDIR": root / ".cache" / "matplotlib",
        "DVC_SITE_CACHE_DIR": root / ".dvc" / "site-cache",
    }
    for var, path in defaults.items():
        if var not in os.environ:
            os.environ[var] = str(path)
            Path(path).mkdir(parents=True, exist_ok=True)
    # Offline by construction: weights come from files, never from a hub at run time.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    dagster_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DAGSTER_YAML, dagster_yaml)
