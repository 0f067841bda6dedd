"""reports/timings/<stage>.json: wall times and throughputs of a stage's last run.

They differ on every run and machine, so they stay out of metrics/*.json (committed to git, the same
bytes in every clone) and out of every DVC output (whose hashes dvc.lock records); reports/timings/
is git-ignored and no stage declares it. The stage's summary (Dagster metadata) carries them too.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_assets.io import read_json, write_json

if TYPE_CHECKING:
    from orchestration.config import Project


def timings_path(project: Project, stage: str) -> Path:
    return project.reports_dir / "timings" / f"{stage}.json"


def write_timings(project: Project, stage: str, record: dict[str, Any]) -> Path:
    path = timings_path(project, stage)
    write_json(path, {"stage": stage, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      **record})
    return path


def read_timings(project: Project, stage: str) -> dict[str, Any] | None:
    try:
        return read_json(timings_path(project, stage))
    except (OSError, ValueError):
        return None
