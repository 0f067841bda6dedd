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
    summary = ingest(project.cfg.ingest, out, base_dir=project.root, cache_dir=project.cache_dir)
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


def frozen_embed_fn(project: Project):
    """The frozen ImageNet encoder (`model` section, no GLEAM-C training) as an embedding function."""
    from gleam_models.embed import make_embed_fn
    from gleam_models.encoder import load_encoder

    encoder = load_encoder(project.cfg.model, None)
    return make_embed_fn(encoder, project.cfg.model, project.cache_dir / "embed")


def gleamx_dataset(project: Project, modality: str | None = None, shard: int | None = None) -> StageResult:
    """GLEAM-X match-and-explain records; one (modality, shard) slice, or all slices then merged."""
    from data_assets.gleamx import generate_gleamx_dataset

    cfg = project.cfg.gleamx
    embed_fn = frozen_embed_fn(project) if cfg.negative_mix.visual > 0 else None
    summary = generate_gleamx_dataset(cfg, project.validated_manifest, base_dir=project.root,
                                      out_dir=project.gleamx_dir, cache_dir=project.cache_dir / "gleamx",
                                      embed_fn=embed_fn, modality=modality, shard=shard)
    project.save_resolved(project.gleamx_dir, sections=["gleamx"])
    name = "gleamx_dataset" if modality is None and shard is None else f"gleamx_records[{modality}|{shard}]"
    return StageResult(name, {"dataset": project.gleamx_dir}, _gleamx_summary(summary))


def gleamx_merge(project: Project) -> StageResult:
    from data_assets.gleamx import merge_shards

    report = merge_shards(project.gleamx_dir)
    project.save_resolved(project.gleamx_dir, sections=["gleamx"])
    return StageResult("gleamx_dataset", {"dataset": project.gleamx_dir}, _gleamx_summary(report))


def _gleamx_summary(report: dict[str, Any]) -> dict[str, Any]:
    if "counts_by_split" not in report:  # one slice: its own small report
        return report
    return {
        "records": report["records"], "rejected": report["rejected"], "pairs": report["pairs"],
        "counts": report["counts_by_split"], "rejects_by_reason": report["rejects_by_reason"],
        "failures_by_kind": report["failures_by_kind"], "tokens": report["tokens"],
        "cost_usd": report["cost_usd"], "cache_hits": report["cache_hits"],
        "visual_negatives": report["visual_negatives"], "teacher": report["teacher"],
    }


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
    "gleamx_dataset": gleamx_dataset,
}
