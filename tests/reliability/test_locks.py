"""Item 4: one writer per output; a second fails fast naming the holder (or waits); DVC cannot
delete outputs under a running `gleam pipeline`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from data_assets.locks import OutputLocked, output_lock, repo_lock
from orchestration import stages
from orchestration.config import load_project
from pipeline_support import DVC, PROJECT_ROOT, tmp_project



def _holder(target: Path, seconds: float, ready: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time, pathlib
        from data_assets.locks import output_lock
        with output_lock({str(target)!r}):
            pathlib.Path({str(ready)!r}).touch()
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT)
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "lock holder did not start"
    return proc


def test_second_writer_fails_fast_naming_the_holder_then_waits_if_asked(tmp_path):
    target = tmp_path / "data" / "validated"
    proc = _holder(target, 2.0, tmp_path / "ready")
    try:
        start = time.monotonic()
        with pytest.raises(OutputLocked, match=rf"another gleam process \(pid {proc.pid}, started .*\) is writing {target}"):
            with output_lock(target):
                pass
        assert time.monotonic() - start < 1.0, "fail-fast must not wait"
        with output_lock(target, wait_s=30):  # queues behind the holder (which holds it 2 s)
            assert time.monotonic() - start > 1.5
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_never_leaves_a_lock_behind(tmp_path):
    target = tmp_path / "out"
    proc = _holder(target, 60, tmp_path / "ready")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with output_lock(target):
        pass


def test_a_stage_refuses_to_write_where_another_process_writes(tmp_path):
    project = load_project(tmp_project(tmp_path))
    proc = _holder(project.validated_dir, 30, tmp_path / "ready")
    try:
        with pytest.raises(OutputLocked, match="is writing"):
            stages.validated_manifest(project)
        assert not (project.validated_dir / "report.json").exists()
    finally:
        proc.kill()
        proc.wait()


def _dvc_repo(root: Path) -> Path:
    root.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([str(DVC), "init", "--no-scm", "-q"], cwd=root, check=True, env=env)
    (root / "dvc.yaml").write_text("stages:\n  s:\n    cmd: mkdir -p out && echo new > out/new.txt\n    outs:\n      - out\n")
    (root / "out").mkdir()
    (root / "out" / "precious.txt").write_text("written by a running gleam pipeline")
    return root


@pytest.mark.slow
def test_dvc_repro_cannot_delete_outputs_under_a_running_pipeline(tmp_path):
    if not DVC.is_file():
        pytest.skip("DVC's environment is missing (make setup)")
    repo = _dvc_repo(tmp_path / "repo")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(repo / ".dvc" / "site-cache")}
    with repo_lock(repo):  # what `gleam pipeline` holds for its whole run
        blocked = subprocess.run([str(DVC), "repro"], cwd=repo, capture_output=True, text=True, env=env, timeout=120)
    assert blocked.returncode != 0 and "lock" in (blocked.stdout + blocked.stderr).lower()
    assert (repo / "out" / "precious.txt").is_file(), "dvc repro deleted outputs under the pipeline"
    free = subprocess.run([str(DVC), "repro"], cwd=repo, capture_output=True, text=True, env=env, timeout=120)
    assert free.returncode == 0, free.stdout + free.stderr
    # ... which is what it would have done: DVC removes a stage's outs before running its command
    assert not (repo / "out" / "precious.txt").exists() and (repo / "out" / "new.txt").is_file()
