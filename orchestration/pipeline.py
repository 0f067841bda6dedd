"""Run the pipeline through Dagster in this process, recording runs in $DAGSTER_HOME.

This is the README's main command. It uses the same assets, checks and resources as `dagster dev`,
so a run started here appears in the UI's run history and asset catalog afterwards.
"""
from __future__ import annotations

from typing import Any

from dagster import DagsterEventType, DagsterInstance, materialize

from orchestration.config import Project
from orchestration.resources import GleamConfigResource


def run_pipeline(project: Project, select: str | None = None) -> dict[str, Any]:
    from orchestration.definitions import all_assets, all_checks

    resource = GleamConfigResource(params_path=str(project.params_path), overrides=list(project.overrides))
    with DagsterInstance.get() as instance:
        result = materialize(
            [*all_assets, *all_checks],
            instance=instance,
            resources={"gleam": resource},
            selection=select,
            raise_on_error=False,
        )
    steps: dict[str, str] = {}
    error = None
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            steps[event.asset_key.to_user_string()] = "materialized"
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            steps[f"check {data.check_name}"] = "passed" if data.passed else "FAILED"
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            steps[f"step {event.step_key}"] = "FAILED"
            error = error or event.event_specific_data.error.message.strip().splitlines()[-1]
        elif event.event_type == DagsterEventType.STEP_SKIPPED:
            steps[f"step {event.step_key}"] = "skipped"
    return {"success": result.success, "run_id": result.run_id, "steps": steps, "error": error}
