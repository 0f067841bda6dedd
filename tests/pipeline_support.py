"""Helpers shared by the end-to-end tests: a throwaway copy of the project config in tmp."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DVC = PROJECT_ROOT / ".venv-dvc" / "bin" / "dvc"  # DVC's own environment (scripts/setup.sh)


def project_copy(dest: Path) -> Path:
    """The files git would ship (tracked + untracked-not-ignored), in a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def tmp_project(tmp_path: Path, embedded_dir: Path | None = None) -> Path:
    """A params.yaml in tmp_path (so every output lands there), optionally with a pre-built embedded
    dataset copied in (its fingerprint matches, so the embedded stage reports it cached)."""
    params = tmp_path / "params.yaml"
    shutil.copyfile(PROJECT_ROOT / "params.yaml", params)
    if embedded_dir is not None:
        shutil.copytree(embedded_dir, tmp_path / "data" / "embedded")
    return params


def gleam(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `gleam` console script."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    return subprocess.run([str(VENV_BIN / "gleam"), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
