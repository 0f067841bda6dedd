"""One plain function per pipeline stage: config section in, library call, outputs + metadata out.

The `gleam` CLI, the Dagster assets and the DVC stages (through the CLI) all call these, so a stage
behaves the same whichever way it is run. Each writes its fully resolved config next to its output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from data_assets.errors import DataError
from orchestration.config import Project

# Library imports sit inside the stage functions: torch and Great Expectations take seconds to
# import, and `gleam --help` or `gleam config show` should not pay for them.


@dataclass
class StageResult:
    name: str
    outputs: dict[str, Path]  # what the stage wrote (the same paths dvc.yaml declares)
    summary: dict[str, Any]  # JSON-able facts for the CLI table and Dagster metadata
    passed: bool = True  # False: the stage ran but its quality gate failed
    images: dict[str, Path] = field(default_factory=dict)  # pictures for Dagster metadata


def embedded_dataset(project: Project) -> StageResult:
    from data_assets.embedded import build_embedded_dataset

    out = project.embedded_dir
    summary = build_embedded_dataset(project.cfg.embedded, out)
    project.save_resolved(out, sections=["embedded"])
    return StageResult("embedded_dataset", {"dataset": out}, summary)


def ingested_manifest(project: Project) -> StageResult:
    from data_assets.ingest import ingest

    out = project.ingested_manifest
    summary = ingest(project.cfg.ingest, out, base_dir=project.root, cache_dir=project.cache_dir / "ingest")
    project.save_resolved(out.parent, sections=["ingest"])
    return StageResult("ingested_manifest", {"manifest": out}, summary)


def validated_manifest(project: Project) -> StageResult:
    from data_assets.validation import validate_manifest

    out_dir = project.validated_dir
    result = validate_manifest(project.ingested_manifest, project.cfg.validate_, out_dir,
                               base_dir=project.root, cache_dir=project.cache_dir / "validate")
    project.save_resolved(out_dir, sections=["validate"])
    summary = {
        "passed": result.passed,
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "bad_rows": result.bad_rows,
        "bad_fraction": round(result.bad_fraction, 6),
        "threshold": project.cfg.validate_.max_bad_fraction,
        "counts": result.counts,
        "failures": result.failures,
    }
    outputs = {"manifest": result.manifest_path, "report": result.report_path,
               "quarantine": result.quarantine_path, "docs": result.docs_path}
    images = {p.stem: p for p in result.thumbnails}
    return StageResult("validated_manifest", outputs, summary, passed=result.passed, images=images)


def require_passed(result: StageResult) -> StageResult:
    """CLI/DVC gate: a failed quality gate is an error (Dagster uses a blocking check instead)."""
    if not result.passed:
        report = result.outputs.get("report", "")
        raise DataError(report, f"stage {result.name} failed its checks: {result.summary.get('failures') or result.summary}")
    return result


# The pipeline in the mission's order; later issues append their stages here.
STAGES: dict[str, Callable[[Project], StageResult]] = {
    "embedded_dataset": embedded_dataset,
    "ingested_manifest": ingested_manifest,
    "validated_manifest": validated_manifest,
}
