"""Headline figures: a few numbers per evaluation under short names, the files DVC reads as metrics.

The full metrics files (metrics/gleamc.json, gleamx.json, localize.json, export.json) hold every
figure and stay committed, but as plain DVC outputs: declared as metrics, their ~1,300 leaves each
became a column of `dvc metrics show` and `dvc exp show`. metrics/headline/<stage>.json hold what
runs are compared by, so both tables fit a terminal:

    dvc metrics show            # one row per stage, readable at 120 columns
    dvc exp show --only-changed

A stage drops its headline before it starts (`discard`) and writes it after its full file: a
killed run leaves no headline rather than one of the previous model.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from data_assets.io import write_json

if TYPE_CHECKING:
    from orchestration.config import Project


def _gleamc(doc: dict) -> dict[str, float]:
    """Phase 2, query -> satellite R@1 on the cross-area split (the one defaults are chosen by):
    UAV, and the mean over modalities. Same-area figures stay in metrics/gleamc.json."""
    cross = doc["runs"]["phase2"]["splits"].get("test_cross", {})
    values = [m["query_to_satellite"]["R@1"] for m in cross.values() if "query_to_satellite" in m]
    return {"uav_R@1_cross": cross.get("uav", {}).get("query_to_satellite", {}).get("R@1"),
            "mean_R@1_cross": round(sum(values) / len(values), 2) if values else None}


def _gleamx(doc: dict) -> dict[str, float]:
    return {"accuracy": doc["gleamx"]["accuracy"], "sbert": doc["gleamx"].get("sbert")}


def _localize(doc: dict) -> dict[str, float]:
    return {"median_m": doc["overall"]["median_m"]}


def _export(doc: dict) -> dict[str, float]:
    change = doc.get("retrieval", {}).get("mean_q2s_R@1_change", {}).get("onnx_int8_cpu")
    return {"int8_R@1_change": None if change is None else round(change, 2)}


HEADLINES: dict[str, Callable[[dict], dict[str, Any]]] = {
    "gleamc": _gleamc, "gleamx": _gleamx, "localize": _localize, "export": _export}


def headline_path(project: Project, name: str) -> Path:
    return project.metrics_dir / "headline" / f"{name}.json"


def discard(project: Project, name: str) -> None:
    headline_path(project, name).unlink(missing_ok=True)


def write_headline(project: Project, name: str, doc: dict) -> Path:
    """metrics/headline/<name>.json from the full metrics document (figures that are missing are left out)."""
    figures = {k: v for k, v in HEADLINES[name](doc).items() if v is not None}
    path = headline_path(project, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, figures)
    return path
