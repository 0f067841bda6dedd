"""One plain function per pipeline stage: config section in, library call, outputs + metadata out.

The `gleam` CLI, the Dagster assets and the DVC stages (through the CLI) all call these, so a stage
behaves the same whichever way it is run. Each writes its fully resolved config next to its output.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from data_assets.errors import DataError
from orchestration.stage_api import StageResult, side_files, require_passed, stage, writing  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # the config imports every library's settings (pandas, faiss): seconds for `gleam --help`
    from orchestration.config import Project

# Library imports sit inside the stage functions: torch and Great Expectations take seconds to
# import, and `gleam --help` or `gleam config show` should not pay for them.


@stage(lambda p: [p.embedded_dir])
def embedded_dataset(project: Project) -> StageResult:
    from data_assets.embedded import build_embedded_dataset

    out = project.embedded_dir
    summary = build_embedded_dataset(project.cfg.embedded, out)
    project.save_resolved(out, sections=["embedded"])
    return StageResult("embedded_dataset", {"dataset": out}, summary)


@stage(lambda p: [p.ingested_dir])
def ingested_manifest(project: Project) -> StageResult:
    from data_assets.ingest import ingest
    from data_assets.io import atomic_directory

    out = project.ingested_manifest
    with atomic_directory(out.parent) as staging:  # manifest + resolved config land together or not at all
        summary = ingest(project.cfg.ingest, staging / out.name, base_dir=project.root, cache_dir=project.cache_dir)
        project.save_resolved(staging, sections=["ingest"])
    return StageResult("ingested_manifest", {"manifest": out}, summary)


@stage(lambda p: [p.validated_dir])
def validated_manifest(project: Project) -> StageResult:
    from data_assets.validation import load_report, validate_manifest

    out_dir = project.validated_dir
    result = validate_manifest(project.ingested_manifest, project.cfg.validate_, out_dir,
                               base_dir=project.root, cache_dir=project.cache_dir / "validate")
    project.save_resolved(out_dir, sections=["validate"])
    expectations = load_report(result.report_path)["expectations"]
    summary = {
        "passed": result.passed,
        "expectations": len(expectations),
        "expectations_failed": sum(not e.get("success", True) for e in expectations),
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
    from data_assets.validation import require_valid_manifest

    require_valid_manifest(project.validated_manifest)
    # slices (Dagster partitions, maybe run side by side) queue behind each other in the shared folder
    with writing(project, [project.gleamx_dir], wait_s=None if modality is None and shard is None else 24 * 3600):
        return _gleamx_dataset(project, modality, shard)


def _gleamx_dataset(project: Project, modality: str | None, shard: int | None) -> StageResult:
    from data_assets.gleamx import generate_gleamx_dataset

    cfg = project.cfg.gleamx
    embed_fn = frozen_embed_fn(project) if cfg.negative_mix.visual > 0 else None
    summary = generate_gleamx_dataset(cfg, project.validated_manifest, base_dir=project.root,
                                      out_dir=project.gleamx_dir, cache_dir=project.cache_dir / "gleamx",
                                      embed_fn=embed_fn, modality=modality, shard=shard)
    project.save_resolved(project.gleamx_dir, sections=["gleamx"])
    name = "gleamx_dataset" if modality is None and shard is None else f"gleamx_records({modality}|{shard})"
    return StageResult(name, {"dataset": project.gleamx_dir}, _gleamx_summary(summary))


@stage(lambda p: [p.gleamx_dir], validated_input=True)
def gleamx_merge(project: Project) -> StageResult:
    from data_assets.gleamx import merge_shards

    report = merge_shards(project.gleamx_dir, project.cfg.gleamx.max_failed_fraction)
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


@stage(lambda p, phase, **_: [p.gleamc_dir(phase)], validated_input=True,
       also_clean=lambda p, phase, **_: side_files(p, timings=f"gleamc_{phase}"))
def gleamc_phase(project: Project, phase: str, resume: bool = True, on_progress=None) -> StageResult:
    """One GLEAM-C training phase (phase 2 starts from phase 1's final weights). DDP-aware.
    on_progress(step, total, metrics): see gleam_models.train.train_phase."""
    import os

    from gleam_models.train import train_phase

    out = project.gleamc_dir(phase)
    init = project.gleamc_dir("phase1") / "model.safetensors" if phase == "phase2" else None
    if init is not None and not init.is_file():
        raise DataError(init, "phase 2 starts from phase 1's weights: run gleamc-phase1 first")
    summary = train_phase(project.cfg.model, project.cfg.train, phase, project.validated_manifest,
                          base_dir=project.root, out_dir=out, cache_dir=project.cache_dir / "images",
                          init_checkpoint=init, resume=resume, on_progress=on_progress)
    if os.environ.get("RANK", "0") == "0":
        project.save_resolved(out, sections=["model", "train", "launch"])
        _metrics_csv(out / "metrics.jsonl", out / "metrics.csv")
        if summary.get("seconds") is not None:  # None: already trained, the last run's timings stand
            from orchestration.timings import write_timings
            write_timings(project, f"gleamc_{phase}", {k: summary[k] for k in ("seconds", "images_per_s")})
    return StageResult(f"gleamc_{phase}", {"model": out / "model.safetensors", "metrics_log": out / "metrics.jsonl"},
                       summary)


def _metrics_csv(jsonl: Path, csv_path: Path) -> None:
    """DVC plots read CSV, not JSON lines: mirror the training log (step, loss, lr, ...)."""
    import pandas as pd

    from data_assets.io import atomic_path

    if jsonl.is_file():
        with atomic_path(csv_path) as tmp:
            pd.read_json(jsonl, lines=True).to_csv(tmp, index=False)


def gleamc_phase1(project: Project, resume: bool = True, on_progress=None) -> StageResult:
    return gleamc_phase(project, "phase1", resume=resume, on_progress=on_progress)


def gleamc_phase2(project: Project, resume: bool = True, on_progress=None) -> StageResult:
    return gleamc_phase(project, "phase2", resume=resume, on_progress=on_progress)


@stage(lambda p, **_: [p.gleamc_presets_dir], validated_input=True)
def gleamc_presets(project: Project, resume: bool = True, on_progress=None) -> StageResult:
    """Every train.presets entry's two phases (gleam_models/presets.py), beside the default ones."""
    import os

    from gleam_models.presets import train_preset

    out = project.gleamc_presets_dir
    out.mkdir(parents=True, exist_ok=True)  # a DVC output even with no preset configured
    summaries = {name: train_preset(project.cfg.model, project.cfg.train, name, project.validated_manifest,
                                    base_dir=project.root, out_dir=out, cache_dir=project.cache_dir / "images",
                                    resume=resume, on_progress=on_progress)
                 for name in project.cfg.train.presets}
    if os.environ.get("RANK", "0") == "0":
        project.save_resolved(out, sections=["model", "train", "launch"])
        for run_dir in project.gleamc_preset_runs().values():
            _metrics_csv(run_dir / "metrics.jsonl", run_dir / "metrics.csv")
    summary = {f"{name}_{phase}": {k: s.get(k) for k in ("steps", "final_loss", "modalities", "seconds")}
               for name, phases in summaries.items() for phase, s in phases.items()}
    return StageResult("gleamc_presets", {"models": out}, summary)


@stage(lambda p: [p.gleamc_figures_dir], validated_input=True,
       also_clean=lambda p: [p.gleamc_metrics, *side_files(p, headline="gleamc")])
def gleamc_evaluation(project: Project) -> StageResult:
    """Retrieval metrics of the frozen ImageNet encoder, phase 1, phase 2 and each preset's phases."""
    from data_assets.io import atomic_directory
    from gleam_models.evaluate import Run, evaluate_runs, headline, metrics_table

    checkpoints = {"imagenet_frozen": None,
                   "phase1": project.gleamc_dir("phase1") / "model.safetensors",
                   "phase2": project.gleamc_dir("phase2") / "model.safetensors"}
    checkpoints |= {run: out / "model.safetensors" for run, out in project.gleamc_preset_runs().items()}
    for name, ckpt in checkpoints.items():
        if ckpt is not None and not ckpt.is_file():
            command = f"gleamc-{name}" if name in ("phase1", "phase2") else "gleamc-presets"
            raise DataError(ckpt, f"no {name} model to evaluate: run gleam {command} first")
    from orchestration.headline import discard, write_headline

    discard(project, "gleamc")
    cache = project.cache_dir / "images"
    runs = {name: Run.from_checkpoint(project.cfg.model, ckpt, cache) for name, ckpt in checkpoints.items()}
    with atomic_directory(project.gleamc_figures_dir) as staging:  # every picture of this run, or the old set
        metrics = evaluate_runs(project.validated_manifest, project.root, runs, project.cfg.evaluate,
                                project.gleamc_metrics, staging)
        project.save_resolved(staging, sections=["model", "evaluate"])
    write_headline(project, "gleamc", metrics)
    # Dagster shows the final model's pictures; every run's are on disk under reports/gleamc/.
    figures = {f"phase2_{p.stem}": p for p in sorted((project.gleamc_figures_dir / "phase2").glob("*.png"))}
    summary = {"table": metrics_table(metrics), **headline(metrics)}
    return StageResult("gleamc_evaluation", {"metrics": project.gleamc_metrics, "figures": project.gleamc_figures_dir},
                       summary, images=figures)


from orchestration import stages_edge, stages_gleamx  # noqa: E402  (the other stage modules)

# The pipeline in the mission's order: the same names in the CLI, Dagster and dvc.yaml.
STAGES: dict[str, Callable[[Project], StageResult]] = {
    "embedded_dataset": embedded_dataset,
    "ingested_manifest": ingested_manifest,
    "validated_manifest": validated_manifest,
    "gleamx_dataset": gleamx_dataset,
    "gleamc_phase1": gleamc_phase1,
    "gleamc_phase2": gleamc_phase2,
    "gleamc_presets": gleamc_presets,
    "gleamc_evaluation": gleamc_evaluation,
    "gleamx_finetune": stages_gleamx.gleamx_finetune,
    "gleamx_evaluation": stages_gleamx.gleamx_evaluation,
    "gallery": stages_edge.gallery,
    "localization": stages_edge.localization,
    "onnx_export": stages_edge.onnx_export,
    "jetson_bundle": stages_edge.jetson_bundle,
}
