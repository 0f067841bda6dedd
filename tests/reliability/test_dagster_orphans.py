"""Item 5: a SIGKILLed pipeline never wedges Dagster's queue; the webserver stays on loopback."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline_support import PROJECT_ROOT

CHILD = textwrap.dedent("""
    import time
    from dagster import DagsterInstance, asset, materialize
    from orchestration.pipeline import process_tags

    @asset
    def slow():
        time.sleep(120)

    with DagsterInstance.get() as instance:
        materialize([slow], instance=instance, tags=process_tags())
""")


@pytest.mark.slow
def test_runs_of_a_killed_pipeline_are_marked_failed_at_the_next_start(tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from orchestration.pipeline import fail_orphaned_runs

    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=PROJECT_ROOT, env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with DagsterInstance.get() as instance:
            started = RunsFilter(statuses=[DagsterRunStatus.STARTED])
            deadline = time.time() + 120
            while not instance.get_run_records(started) and time.time() < deadline and proc.poll() is None:
                time.sleep(0.2)
            (record,) = instance.get_run_records(started)
            assert fail_orphaned_runs(instance) == [], "a live run must be left alone"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.STARTED
            assert fail_orphaned_runs(instance) == [record.dagster_run.run_id]
            assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.FAILURE
            assert fail_orphaned_runs(instance) == []
    finally:
        proc.kill()
        proc.wait()


def test_run_monitoring_is_on_and_the_webserver_binds_to_loopback(tmp_path, monkeypatch):
    from dagster import DagsterInstance
    from dagster_webserver.cli import DEFAULT_WEBSERVER_HOST

    shutil.copyfile(PROJECT_ROOT / "orchestration" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["start_timeout_seconds"] <= 600
    assert DEFAULT_WEBSERVER_HOST == "127.0.0.1"  # `dagster dev` without -h
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "dagster dev -h 127.0.0.1" in makefile and "0.0.0.0" not in makefile
