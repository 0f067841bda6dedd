"""DVC as shipped: the default local remote round-trips, and `dvc plots show` renders offline.

Both run in a fresh git copy of the project (its real .dvc/config), on small files of their own,
so they take seconds and never touch the project's data.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from browser_support import launch, require_browser
from pipeline_support import dvc, dvc_repo


def ignored(repo: Path, rel: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", rel], cwd=repo).returncode == 0


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def repo(tmp_path):
    return dvc_repo(tmp_path / "repo")


def test_push_pull_round_trip_through_the_default_local_remote(repo):
    data = repo / "roundtrip"  # data/ is a pipeline output folder, git-ignored as a whole
    (data / "nested").mkdir(parents=True)
    (data / "a.bin").write_bytes(os.urandom(4096))
    (data / "nested" / "b.txt").write_text("GLEAM\n" * 100)
    before = digest(data)

    dvc(repo, "add", "roundtrip")
    assert "local" in dvc(repo, "remote", "default")
    dvc(repo, "push", "roundtrip.dvc")  # no -r: the remote configured by default
    remote = repo / ".dvc-remote"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*")), "nothing pushed to .dvc-remote/"
    assert ignored(repo, ".dvc-remote/x"), "the remote must be git-ignored"

    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    dvc(repo, "pull", "roundtrip.dvc")
    assert digest(data) == before
    assert "in sync" in dvc(repo, "status", "--cloud", "roundtrip.dvc")


def test_plots_render_offline(repo, tmp_path):
    """The page `dvc plots show` writes has its scripts inlined: Chromium draws the plot offline."""
    # the committed dvc.lock names every plot of a finished run; DVC writes no page while any of
    # them is missing, and this copy has run nothing: the template is what is tested here
    (repo / "dvc.lock").unlink(missing_ok=True)
    curve = repo / "models" / "gleamc_phase1" / "metrics.csv"
    curve.parent.mkdir(parents=True)
    curve.write_text("step,loss,lr\n" + "".join(f"{s},{3.0 / (1 + s):.4f},0.001\n" for s in range(20)))
    dvc(repo, "plots", "show", str(curve.relative_to(repo)), "-x", "step", "-y", "loss")
    page = repo / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html and "vegaEmbed" in html
    assert ignored(repo, "dvc_plots/index.html"), "dvc_plots/ must be git-ignored"
    _render_offline(page, tmp_path)


def _render_offline(page_path: Path, tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as api:
        browser = launch(api, tmp_path / "profile", offline=True)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.locator("svg.marks, canvas.marks").first.wait_for(state="visible", timeout=30_000)
            assert not [u for u in requests if not u.startswith(("file:", "data:"))], json.dumps(requests)
        finally:
            browser.close()
