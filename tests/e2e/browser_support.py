"""Debian's Chromium driven by Playwright (never a downloaded browser), for the browser tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("GLEAM_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that phones home or needs a GPU; each test passes a fresh profile dir.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing(reason: str) -> None:
    """Skip, except in CI (CI=true), where a missing browser must fail the run."""
    message = f"{reason}: run `bash scripts/install_browser.sh` (Debian's chromium package + Playwright)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def require_browser() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("Playwright for Python is not installed")
    if not CHROMIUM.is_file():
        missing(f"no Chromium at {CHROMIUM}")


def launch(api, profile: Path, **kwargs):
    """A headless Chromium context with its own fresh profile directory, and a home of its own beside
    it: Chromium writes ~/.config and ~/.cache (dconf, crash reports) even with --user-data-dir."""
    home = profile.parent / f"{profile.name}-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    return api.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                  args=CHROMIUM_ARGS, env=env, **kwargs)
