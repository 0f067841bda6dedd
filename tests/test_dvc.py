"""`dvc repro` in a temp copy of the project runs the stages, then skips them on a second run."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline_support import DVC, VENV_BIN, project_copy

def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(cwd / ".dvc" / "site-cache"), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(DVC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_dvc_repro_runs_then_skips(tmp_path):
    assert DVC.is_file(), "DVC's own environment is missing: run `make setup`"
    repo = project_copy(tmp_path / "repo")
    first = dvc("repro", "gleamx_dataset", cwd=repo)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ["embedded_dataset", "ingested_manifest", "validated_manifest", "gleamx_dataset"]:
        assert f"Running stage '{stage}'" in first.stdout
    assert (repo / "data" / "validated" / "manifest.parquet").is_file()
    assert (repo / "data" / "gleamx" / "test.jsonl").is_file()
    lock = (repo / "dvc.lock").read_text()
    assert "validated_manifest" in lock and "params.yaml" in lock

    second = dvc("repro", "gleamx_dataset", cwd=repo)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    assert "didn't change, skipping" in second.stdout

    # A param change re-runs exactly the stage that lists it (and nothing upstream).
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("thumbnails: 6", "thumbnails: 2"))
    third = dvc("repro", "validated_manifest", cwd=repo)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "Running stage 'validated_manifest'" in third.stdout
    assert "Running stage 'embedded_dataset'" not in third.stdout
