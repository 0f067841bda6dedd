"""Screenshots of the Dagster UI for the README, taken from a project that has run `make run`.

    python scripts/readme_pictures.py [--project .] [--out docs/images]

Starts dagster-webserver on loopback against the project's instance ($PROJECT/.dagster), opens the
global asset lineage and the GLEAM-X evaluation asset in Debian's Chromium (Playwright, no browser
download), and saves PNGs. Stops the webserver whatever happens.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from browser_support import launch  # noqa: E402

PAGES = {"dagster_asset_lineage.png": "/assets/embedded_dataset?view=lineage&lineageScope=downstream&lineageDepth=20",
         "dagster_gleamx_evaluation.png": "/assets/gleamx_evaluation"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    query = json.dumps({"query": "{ assetNodes { id } }"}).encode()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("dagster-webserver exited before serving")
        try:
            req = urllib.request.Request(f"{url}/graphql", data=query, headers={"Content-Type": "application/json"})
            if json.loads(urllib.request.urlopen(req, timeout=10).read())["data"]["assetNodes"]:
                return
        except (OSError, KeyError, ValueError, TypeError):
            pass
        time.sleep(2)
    raise SystemExit(f"dagster-webserver did not serve assets within {timeout_s} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path.cwd())
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()
    project = args.project.resolve()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DAGSTER_HOME": str(project / ".dagster")}
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen([str(webserver), "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until_serving(url, proc)
        from playwright.sync_api import sync_playwright

        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as api, tempfile.TemporaryDirectory() as tmp:
            browser = launch(api, Path(tmp) / "profile", viewport={"width": 1600, "height": 1000})
            page = browser.new_page()
            for name, path in PAGES.items():
                page.goto(url + path, wait_until="networkidle")
                skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
                if skip.count():
                    skip.first.click()
                page.wait_for_timeout(3000)  # the graph lays itself out after the data arrives
                page.screenshot(path=str(args.out / name))
                print(args.out / name)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
