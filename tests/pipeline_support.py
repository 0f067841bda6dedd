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
BENCHMARKS = PROJECT_ROOT / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, importing its neighbours (recipe_study) as when run as a script."""
    import importlib.util

    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


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


GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ID}, capture_output=True, text=True,
                          check=True).stdout


def dvc(repo: Path, *args: str, env: dict | None = None, timeout: int = 300) -> str:
    """Run DVC (its own environment) in `repo`, with the project's `gleam` on PATH; its stdout.
    A failure fails the test with DVC's output."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                "DVC_SITE_CACHE_DIR": str(repo / ".dvc" / "site-cache"), "DVC_NO_ANALYTICS": "1", **(env or {})}
    result = subprocess.run([str(DVC), *args], cwd=repo, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def dvc_repo(dest: Path) -> Path:
    """A fresh git copy of the project (project_copy) for a DVC test, nothing committed yet."""
    assert DVC.is_file(), "DVC's own environment is missing: run `make setup`"
    return project_copy(dest)


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
