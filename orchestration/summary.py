"""The one summary `gleam pipeline` ends with: headline figures of every stage, where outputs are,
how to open the UI. Read from the metrics files the stages wrote, so it shows what is on disk.
Also the line each in-process stage prints as it finishes (stage_line)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestration.config import Project
from orchestration.timings import read_timings


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}" if value <= 1 else f"{value:.1f}"


def gleamc_lines(doc: dict | None) -> list[str]:
    """Query->satellite R@1 per run and split, one row per (run, split)."""
    if not doc or "runs" not in doc:
        return []
    mods = sorted({m for e in doc["runs"].values() for s in e.get("splits", {}).values() for m in s})
    lines = ["| run | split | " + " | ".join(mods) + " |", "|---|---|" + "---|" * len(mods)]
    for run, entry in doc["runs"].items():
        for split, by_mod in entry.get("splits", {}).items():
            cells = [f"{by_mod[m]['query_to_satellite']['R@1']:.1f}" if "query_to_satellite" in by_mod.get(m, {})
                     else "-" for m in mods]
            lines.append(f"| {run} | {split} | " + " | ".join(cells) + " |")
    return ["GLEAM-C retrieval, query->satellite R@1 (University-1652 definitions):", *lines]


def gleamx_lines(doc: dict | None) -> list[str]:
    if not doc:
        return []
    lines = ["| system | accuracy | 95% CI | F1 | fact correct | hallucination | text contradicts verdict |",
             "|---|---|---|---|---|---|---|"]
    for name, m in doc.items():
        if isinstance(m, dict) and "accuracy" in m:
            ci = m.get("accuracy_ci95") or [None, None]
            lines.append(f"| {name} | {_pct(m['accuracy'])} | {_pct(ci[0])}-{_pct(ci[1])} | {_pct(m.get('f1'))} | "
                         f"{_pct(m.get('fact_correct'))} | {_pct(m.get('hallucination'))} | "
                         f"{_pct(m.get('explanation_contradicts_verdict'))} |")
    n = doc.get("eval_set", {}).get("pairs")
    return [f"GLEAM-X verdicts on {n or '?'} stratified test pairs:", *lines]


def localize_lines(doc: dict | None) -> list[str]:
    if not doc:
        return []
    lines = ["| modality | frames | median error m | within 10 m | within 25 m |", "|---|---|---|---|---|"]
    for mod, m in doc.get("per_modality", {}).items():
        lines.append(f"| {mod} | {m['count']} | {m['median_m']:.0f} | {_pct(m['within_10m'])}% | {_pct(m['within_25m'])}% |")
    return [f"Localisation of the embedded test frames ({doc.get('gallery', {}).get('count', '?')} gallery tiles):", *lines]


def export_lines(doc: dict | None, timings: dict | None) -> list[str]:
    """Gates from metrics/export.json, latencies from reports/timings/onnx_export.json."""
    if not doc or not timings or "speed_ms" not in timings:
        return []
    lines = ["| input | variant | gate | batch 1 p50 ms | largest batch p50 ms |", "|---|---|---|---|---|"]
    passed = doc.get("passed", {})
    for size, by in timings["speed_ms"].items():
        for variant, s in by.items():
            big = [v["p50_ms"] for k, v in s.items() if k != "batch_1"]
            lines.append(f"| {size} | {variant} | {'passed' if passed.get(variant) else 'FAILED'} | "
                         f"{s['batch_1']['p50_ms']:.2f} | {f'{big[0]:.1f}' if big else '-'} |")
    return ["Edge export (ONNX Runtime on this CPU; a failed variant is left out of the bundle):", *lines]


def _n(meta: dict, key: str) -> str:
    return f"{meta[key]:,}" if isinstance(meta.get(key), int) else "?"


def _validated(m: dict) -> str:
    line = (f"{_n(m, 'rows_out')} of {_n(m, 'rows_in')} rows kept, {_n(m, 'bad_rows')} quarantined; "
            f"{m.get('expectations', 0) - m.get('expectations_failed', 0)} of {_n(m, 'expectations')} expectations passed")
    return line if str(m.get("passed")) == "True" else f"FAILED ({line}; bad fraction {m.get('bad_fraction')} > {m.get('threshold')})"


def _records(slices: list[dict]) -> str:
    """A GLEAM-X partition: its slices' reports (data_assets.gleamx.generate)."""
    total = {k: sum(s.get(k, 0) for s in slices) for k in ("records", "rejected", "pairs")}
    run = {k: sum(s.get("this_run", {}).get(k, 0) for s in slices) for k in ("requests", "cache_hits")}
    return (f"{_n(total, 'records')} records, {_n(total, 'rejected')} rejected of {_n(total, 'pairs')} pairs "
            f"(teacher this run: {run['requests']:,} requests, {run['cache_hits']:,} cached)")


# One line per stage that Dagster runs inside the `gleam pipeline` process, from the metadata of its
# materialization (its StageResult summary); stages run through Pipes print their CLI table instead.
STAGE_LINES = {
    "embedded_dataset": lambda m: f"{_n(m, 'locations')} locations" + (" (cached)" if str(m.get("cached")) == "True" else ""),
    "ingested_manifest": lambda m: (f"{_n(m, 'rows')} rows ({_n(m, 'pairs')} pairs, {_n(m, 'gallery')} gallery-only), "
                                    f"{_n(m, 'missing_files')} missing files"),
    "validated_manifest": _validated,
    "gleamx_records": lambda m: _records(m.get("slices") or []),
    "gleamx_dataset": lambda m: (f"{_n(m, 'records')} records, {_n(m, 'rejected')} rejected of {_n(m, 'pairs')} pairs "
                                 f"(teacher {m.get('teacher', '?')}, cost ${m.get('cost_usd', 0)})"),
}


def stage_line(asset: str, partition: str | None, meta: dict[str, Any], root: Path) -> str | None:
    """E.g. `validated_manifest: 1,410 of 1,410 rows kept, ... -> data/validated/manifest.parquet`;
    None for a stage without a line. `meta`: plain metadata values; paths under `root` print relative."""
    describe = STAGE_LINES.get(asset)
    if describe is None:
        return None
    paths = [Path(v) for k, v in meta.items() if k.startswith("path_")]
    where = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in paths[:1]]
    name = f"{asset} ({partition})" if partition else asset  # as in the final table
    return f"{name}: {describe(meta)}" + "".join(f" -> {w}" for w in where)


def summary_text(project: Project) -> str:
    m = project.metrics_dir
    blocks = [gleamc_lines(_read(project.gleamc_metrics)), gleamx_lines(_read(m / "gleamx.json")),
              localize_lines(_read(m / "localize.json")),
              export_lines(_read(m / "export.json"), read_timings(project, "onnx_export"))]
    where = [
        "Outputs:",
        f"- data and manifests: {project.data_dir}  (validation report: {project.validated_dir / 'docs' / 'index.html'})",
        f"- models: {project.models_dir}  (Jetson bundle: {project.models_dir / 'jetson_bundle.tar.gz'})",
        f"- metrics: {project.metrics_dir}  (`dvc metrics show`), pictures and reports: {project.reports_dir}",
        "- the runs in the Dagster UI: `make ui`, then open http://127.0.0.1:3000",
    ]
    return "\n\n".join("\n".join(b) for b in [*blocks, where] if b)
