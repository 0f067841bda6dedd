"""Run the pipeline through Dagster in this process, recording runs in $DAGSTER_HOME.

This is the README's main command. It uses the same assets, checks and resources as `dagster dev`,
so its runs appear in the UI's run history and asset catalog afterwards. Partitioned assets (the
GLEAM-X slices) run one Dagster run per partition, between what they depend on and what follows.

Crash safety: every run is tagged with the pid (and its start time) of the process that executes
it, and a new `gleam pipeline` first marks runs whose process is gone as FAILED, so a SIGKILLed
pipeline never holds Dagster's queue slots for good (run monitoring in dagster.yaml covers runs
launched by the daemon). The pipeline also holds DVC's repository lock, so a `dvc repro` started
meanwhile refuses at once instead of deleting the outputs under it.
"""
from __future__ import annotations

import functools
import os
import socket
import sys
import uuid
from typing import Any, Callable

from dagster import AssetSelection, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from data_assets.locks import repo_lock

from orchestration.config import Project
from orchestration.resources import GleamConfigResource
from orchestration.summary import stage_line


# Stages print their own summaries (Pipes stages their CLI table, in-process ones a line each, see
# _echo_stage_line); Dagster's own DEBUG event stream stays in the run history (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _plan(graph, select: str | None) -> list[tuple[str, list | None, str | None]]:
    """(named job, asset keys inside it (None: the whole job), partition key) per Dagster run, in
    dependency order: the selected data assets, one run per GLEAM-X slice, then the selected assets
    after them. A run holds assets of one partitioning, so a selection is cut the same way."""
    from orchestration.assets.gleamx import GLEAMX_PARTITIONS, gleamx_records

    chosen = AssetSelection.from_string(select) if select else AssetSelection.all()
    records = AssetSelection.assets(gleamx_records)
    before = records.upstream() - records
    after = AssetSelection.all() - before - records
    plan: list[tuple[str, list | None, str | None]] = []
    if keys := list((chosen & before).resolve(graph)):
        plan.append(("gleam_pipeline", keys, None))
    if gleamx_records.key in chosen.resolve(graph):
        plan += [("gleamx_records_job", None, key) for key in GLEAMX_PARTITIONS.get_partition_keys()]
    if keys := list((chosen & after).resolve(graph)):
        plan.append(("gleam_pipeline", keys, None))
    return plan


def run_pipeline(project: Project, select: str | None = None,
                 echo: Callable[[str], None] = functools.partial(print, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Every run of one invocation carries the tag gleam/invocation=<id>: filter on it in the UI.
    `echo` gets one line per stage Dagster runs in this process, as it finishes (stage_line)."""
    from orchestration.definitions import make_definitions

    defs = make_definitions(GleamConfigResource(params_path=str(project.params_path), overrides=list(project.overrides)))
    graph = defs.resolve_asset_graph()
    tags = {**process_tags(), INVOCATION_TAG: uuid.uuid4().hex[:12]}
    steps: dict[str, str] = {}
    run_ids: list[str] = []
    with repo_lock(project.root), DagsterInstance.get() as instance:
        fail_orphaned_runs(instance)
        for job_name, keys, partition_key in _plan(graph, select):
            run_id = str(uuid.uuid4())  # known before the run starts, so its events can be followed
            instance.add_event_listener(run_id, functools.partial(_echo_stage_line, project, echo))
            job = defs.resolve_job_def(job_name)
            result = job.execute_in_process(instance=instance, asset_selection=keys, run_id=run_id,
                                            partition_key=partition_key, raise_on_error=False, run_config=QUIET,
                                            tags=tags)
            run_ids.append(result.run_id)
            error = _collect(result, steps, partition_key)
            if not result.success:
                return {"success": False, "run_ids": run_ids, "steps": steps, "error": error, "invocation": tags[INVOCATION_TAG]}
    return {"success": True, "run_ids": run_ids, "steps": steps, "error": None, "invocation": tags[INVOCATION_TAG]}


def _echo_stage_line(project: Project, echo: Callable[[str], None], entry) -> None:
    """A materialization's metadata (the StageResult summary, orchestration.metadata) as one line.
    Stages run through Pipes print their own table from their subprocess: stage_line skips them."""
    event = entry.dagster_event
    if event is None or event.event_type != DagsterEventType.ASSET_MATERIALIZATION:
        return
    materialization = event.event_specific_data.materialization
    values = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    line = stage_line(materialization.asset_key.to_user_string(), materialization.partition, values, project.root)
    if line:
        echo(line)


INVOCATION_TAG = "gleam/invocation"
PID_TAG, START_TAG, HOST_TAG = "gleam/pid", "gleam/pid_start", "gleam/host"
ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc); None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): existence is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "unknown"


def process_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), START_TAG: str(_process_start(os.getpid())), HOST_TAG: socket.gethostname()}


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Mark FAILED every in-progress run of this host whose executing process is gone; run ids."""
    failed = []
    for record in instance.get_run_records(RunsFilter(statuses=ACTIVE, tags={HOST_TAG: socket.gethostname()})):
        run = record.dagster_run
        pid, started = run.tags.get(PID_TAG), run.tags.get(START_TAG)
        if not pid or not pid.isdigit():
            continue
        now = _process_start(int(pid))
        if now is None or (now != "unknown" and started not in (None, "unknown", now)):  # gone, or pid reused
            instance.report_run_failed(run, f"gleam: the process that ran this run (pid {pid}) is gone "
                                            f"(killed or crashed); marked failed by a new `gleam pipeline`")
            failed.append(run.run_id)
    return failed


def _collect(result, steps: dict[str, str], partition_key: str | None) -> str | None:
    error = None
    suffix = f" ({partition_key})" if partition_key else ""
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            steps[event.asset_key.to_user_string() + suffix] = "materialized"
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            steps[f"check {data.asset_check_key.name}"] = "passed" if data.passed else "FAILED"
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            steps[f"step {event.step_key}{suffix}"] = "FAILED"
            error = error or _root_cause(event.event_specific_data.error)
        elif event.event_type == DagsterEventType.STEP_SKIPPED:
            steps[f"step {event.step_key}{suffix}"] = "skipped"
    return error


def _root_cause(error) -> str:
    """The user's error in one line (e.g. the DataError a stage raised), not Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1]
