"""Run the pipeline through Dagster in this process, recording runs in $DAGSTER_HOME.

This is the README's main command. It uses the same assets, checks and resources as `dagster dev`,
so its runs appear in the UI's run history and asset catalog afterwards. Partitioned assets (the
GLEAM-X slices) run one Dagster run per partition, between what they depend on and what follows.
"""
from __future__ import annotations

from typing import Any

from dagster import AssetSelection, DagsterEventType, DagsterInstance, PipesSubprocessClient, materialize

from orchestration.config import Project
from orchestration.resources import GleamConfigResource


# Stage summaries print as tables; Dagster's own DEBUG event stream stays in the run history (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _plan(select: str | None) -> list[tuple[AssetSelection, str | None]]:
    """(selection, partition key) per Dagster run, in dependency order."""
    from orchestration.assets.gleamx import GLEAMX_PARTITIONS, gleamx_records

    if select:
        return [(AssetSelection.from_string(select), None)]
    records = AssetSelection.assets(gleamx_records)
    before = records.upstream() - records
    after = AssetSelection.all() - before - records
    return [(before, None), *[(records, key) for key in GLEAMX_PARTITIONS.get_partition_keys()], (after, None)]


def run_pipeline(project: Project, select: str | None = None) -> dict[str, Any]:
    from orchestration.definitions import all_assets, all_checks

    resource = GleamConfigResource(params_path=str(project.params_path), overrides=list(project.overrides))
    steps: dict[str, str] = {}
    run_ids: list[str] = []
    with DagsterInstance.get() as instance:
        for selection, partition_key in _plan(select):
            result = materialize([*all_assets, *all_checks], instance=instance, resources={"gleam": resource, "pipes_subprocess_client": PipesSubprocessClient()},
                                 selection=selection, partition_key=partition_key, raise_on_error=False,
                                 run_config=QUIET)
            run_ids.append(result.run_id)
            error = _collect(result, steps, partition_key)
            if not result.success:
                return {"success": False, "run_ids": run_ids, "steps": steps, "error": error}
    return {"success": True, "run_ids": run_ids, "steps": steps, "error": None}


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
            error = error or event.event_specific_data.error.message.strip().splitlines()[-1]
        elif event.event_type == DagsterEventType.STEP_SKIPPED:
            steps[f"step {event.step_key}{suffix}"] = "skipped"
    return error
