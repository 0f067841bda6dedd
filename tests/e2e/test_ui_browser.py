"""The Dagster UI in a real browser: materialize the data assets by clicking, then read the results.

Starts `dagster dev` (webserver + daemon: the instance queues runs) on loopback for a temp copy of
the project, drives it with Playwright in Debian's headless Chromium (never a downloaded browser),
clicks the first three assets in the catalog and "Materialize selected", waits for the run to
succeed, and checks that the validated manifest's page shows its metadata and its thumbnails.
Screenshots land in reports/screenshots/ and in the test's tmp dir.

Chromium comes from scripts/install_browser.sh. Without it the test skips, except in CI (CI=true),
where a missing browser is a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from browser_support import launch, require_browser
from pipeline_support import PROJECT_ROOT, VENV_BIN, tmp_project

DATA_ASSETS = ["embedded_dataset", "ingested_manifest", "validated_manifest"]
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
START_TIMEOUT_S = 240  # dagster dev on 2 busy cores: webserver, daemon and code server
RUN_TIMEOUT_S = 600  # ingest + validation of the embedded dataset, plus the run worker's start


@pytest.fixture(scope="module")
def playwright_api():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as api:
        yield api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    body = json.loads(urllib.request.urlopen(req, timeout=20).read())
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def dagster_ui(tmp_path, embedded_dir):
    """`dagster dev` for a temp project (outputs and runs in tmp_path); yields its base URL."""
    project = tmp_path / "project"
    project.mkdir()
    tmp_project(project, embedded_dir)  # pre-built embedded data: that asset reports itself cached
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    with log.open("wb") as out:
        # its own process group: dagster dev's webserver, daemon and code server all stop together
        proc = subprocess.Popen([str(VENV_BIN / "dagster"), "dev", "-m", "orchestration.definitions",
                                 "-h", "127.0.0.1", "-p", str(port)], cwd=project, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_assets(url, proc, log)
        yield url, project, log
    finally:
        _stop(proc)


def _wait_for_assets(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        assert proc.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        try:
            nodes = graphql(url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
            if {n["assetKey"]["path"][-1] for n in nodes} >= set(DATA_ASSETS):
                return
        except (OSError, AssertionError, KeyError, ValueError):
            pass
        time.sleep(2)
    pytest.fail(f"dagster dev did not serve the assets within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_for_run(url: str, run_id: str, log: Path) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.time() + RUN_TIMEOUT_S
    status = None
    while time.time() < deadline:
        status = graphql(url, query, {"id": run_id})["runOrError"].get("status")
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(3)
    pytest.fail(f"run {run_id} still {status} after {RUN_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / name)
    return SCREENSHOTS / name


@pytest.mark.slow
def test_materialize_data_assets_by_clicking(playwright_api, dagster_ui, tmp_path):
    from playwright.sync_api import expect

    url, project, log = dagster_ui
    browser = launch(playwright_api, tmp_path / "chromium-profile", viewport={"width": 1440, "height": 1200})
    try:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/assets", wait_until="networkidle")
        _dismiss_welcome(page)

        # The asset catalog: tick the three data assets, then "Materialize selected".
        for name in DATA_ASSETS:
            box = page.get_by_test_id(f"checkbox-{name}")
            page.locator("label", has=box).click()
            expect(box).to_be_checked()
        page.get_by_role("button", name="Materialize selected (3)").click()
        toast = page.get_by_text("Launched run")
        expect(toast).to_be_visible()
        page.get_by_role("link", name="View", exact=True).click()
        page.wait_for_url("**/runs/**")
        run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]

        status = _wait_for_run(url, run_id, log)
        page.reload(wait_until="networkidle")
        run_shot = _screenshot(page, tmp_path, "dagster_run_data_assets.png")
        assert status == "SUCCESS", f"run {run_id} ended {status} (screenshot {run_shot}):\n{log.read_text()[-3000:]}"
        expect(page.get_by_text("Success").first).to_be_visible()
        assert (project / "data" / "validated" / "manifest.parquet").is_file()

        # The validated manifest's page: the materialization's metadata and its thumbnails.
        page.goto(f"{url}/assets/validated_manifest", wait_until="networkidle")
        for key in ("rows_out", "bad_rows", "path_manifest"):
            expect(page.get_by_text(key, exact=True).first).to_be_visible()
        _screenshot(page, tmp_path, "dagster_validated_manifest_metadata.png")
        image = _metadata_picture(page)
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the thumbnail did not decode"
        _screenshot(page, tmp_path, "dagster_validated_manifest_preview.png")
    finally:
        browser.close()


def _dismiss_welcome(page) -> None:
    """A fresh instance greets the first visitor with a newsletter dialog."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=5_000)
    except Exception:  # noqa: BLE001 - not shown: this instance already dismissed it
        pass


def _metadata_picture(page):
    """The first picture of the asset's metadata. Dagster renders Markdown inline only under 1,000
    characters; longer entries (pictures as data URLs) open from "[Show Markdown]" in a dialog."""
    inline = page.locator("img[src^='data:image']")
    if inline.count():
        return _shown(inline.first)
    links = page.get_by_text("[Show Markdown]", exact=True)
    for i in range(links.count()):
        links.nth(i).click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for(state="visible")
        pictures = dialog.locator("img[src^='data:image']")
        if pictures.count():
            return _shown(pictures.first)
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
    pytest.fail("no picture in the metadata of validated_manifest (expected its thumbnails)")


def _shown(picture):
    picture.scroll_into_view_if_needed()
    picture.wait_for(state="visible")
    return picture
