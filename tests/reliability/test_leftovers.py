"""Item 10: a killed write's temporaries are cleaned when the next writer of that output starts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from data_assets.errors import DataError
from orchestration import stages
from orchestration.config import load_project
from orchestration.stage_api import side_files
from pipeline_support import PROJECT_ROOT, VENV_BIN, tmp_project

KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from data_assets.io import atomic_directory, atomic_path
    target = Path(sys.argv[1])
    with atomic_path(target / "report.json") as tmp:
        tmp.write_text("{half")
        with atomic_directory(target / "thumbnails") as folder:
            for i in range(50):
                (folder / f"{i}.png").write_bytes(b"x")
            with atomic_directory(target.parent / target.name) as whole:
                (whole / "manifest.parquet").write_bytes(b"partial")
                Path(sys.argv[2]).touch()
                time.sleep(120)
""")


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.parent.rglob(".*.tmp")]


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_one(tmp_path):
    project = load_project(tmp_project(tmp_path))
    target = project.validated_dir
    target.mkdir(parents=True)
    (target / "manifest.parquet").write_bytes(b"the previous complete output")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target), str(ready)], cwd=PROJECT_ROOT)
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_temporaries(target)) == 3  # the file, the folder inside, the whole-output folder beside it
    with stages.writing(project, [target]):
        assert _temporaries(target) == []
    assert (target / "manifest.parquet").read_bytes() == b"the previous complete output"


def test_a_stage_drops_the_temporaries_of_its_timings_and_headline(tmp_path):
    """reports/timings/ and metrics/headline/ lie outside every output folder: the stage's own
    cleanup has to name them (CI saw a killed gleamx_evaluation's timings temporary outlive the re-run)."""
    project = load_project(tmp_project(tmp_path))
    timings, = side_files(project, timings="gleamx_finetune")
    headline, other = side_files(project, headline="gleamx", timings="gleamx_evaluation")
    left = {p: p.parent / f".{p.name}.k1ll3d.tmp" for p in (timings, headline, other)}
    for tmp in left.values():
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("{half")
    with pytest.raises(DataError, match="no GLEAM-X records"):  # after the cleanup, before any work
        stages.STAGES["gleamx_finetune"](project)
    assert not left[timings].exists()
    assert left[headline].exists() and left[other].exists(), "another stage's files are that stage's to clean"
    with stages.writing(project, [project.reports_dir / "gleamx"], also_clean=[headline, other]):
        assert not left[headline].exists() and not left[other].exists()


@pytest.mark.slow
def test_a_killed_dataset_build_leaves_nothing_after_the_next_run(tmp_path):
    tmp_project(tmp_path)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(VENV_BIN / "gleam"), "embedded-dataset"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = tmp_path / "data"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if sum(1 for p in data.rglob("*") if p.is_file()) > 20 if data.exists() else False:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p for p in data.rglob("*") if any(part.endswith(".tmp") for part in p.parts)]
    assert left, "the build finished before it could be killed"
    done = subprocess.run([str(VENV_BIN / "gleam"), "embedded-dataset"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [p for p in data.rglob("*") if any(part.endswith(".tmp") for part in p.parts)] == []
