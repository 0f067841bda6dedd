"""The one summary `gleam pipeline` ends with: headline figures of every stage, where outputs are,
how to open the UI. Read from the metrics files the stages wrote, so it shows what is on disk."""
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
    lines = ["| system | accuracy | 95% CI | F1 | fact correct | hallucination |", "|---|---|---|---|---|---|"]
    for name, m in doc.items():
        if isinstance(m, dict) and "accuracy" in m:
            ci = m.get("accuracy_ci95") or [None, None]
            lines.append(f"| {name} | {_pct(m['accuracy'])} | {_pct(ci[0])}-{_pct(ci[1])} | {_pct(m.get('f1'))} | "
                         f"{_pct(m.get('fact_correct'))} | {_pct(m.get('hallucination'))} |")
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
