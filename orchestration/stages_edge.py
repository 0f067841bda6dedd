"""Stage functions for edge deployment (issue 8): gallery, localization, export, bundle.

Same contract as orchestration/stages.py: Project in, StageResult out, params.resolved.yaml next
to the output; library imports inside the functions so `gleam --help` stays fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from data_assets.errors import DataError
from orchestration.stage_api import StageResult, side_files, stage

if TYPE_CHECKING:  # the config imports every library's settings: too slow for `gleam --help`
    from orchestration.config import Project


# ============================================================================ gallery + localization

def gallery_config(project: Project):
    from export.gallery import GalleryConfig

    return getattr(project.cfg, "gallery", None) or GalleryConfig()


def gallery_dir(project: Project) -> Path:
    return project.models_dir / "gallery"


def localize_metrics_path(project: Project) -> Path:
    return project.metrics_dir / "localize.json"


def phase2_model(project: Project):
    from export.gallery import load_model

    ckpt = project.gleamc_dir("phase2") / "model.safetensors"
    if not ckpt.is_file():
        raise DataError(ckpt, "the gallery is embedded with the phase-2 encoder: run gleamc-phase2 first")
    return load_model(project.cfg.model, ckpt, batch_size=gallery_config(project).batch_size)


def raster_work_dir(project: Project) -> Path:
    """Where the embedded rasters are georeferenced: written by gallery and localization, so both
    hold its lock (and drop what a killed writer left there)."""
    return project.cache_dir / "gallery"


@stage(lambda p: [gallery_dir(p), raster_work_dir(p)])
def gallery(project: Project) -> StageResult:
    """The embedded default's georeferenced satellite gallery (models/gallery/), phase-2 encoder."""
    from export.embedded_gallery import build_embedded_gallery

    out = gallery_dir(project)
    summary = build_embedded_gallery(project.cfg.embedded, gallery_config(project), phase2_model(project),
                                     out, work_dir=raster_work_dir(project), root=project.root)
    _save_resolved(project, out)
    return StageResult("gallery", {"gallery": out}, summary)


@stage(lambda p: [p.reports_dir / "localize", raster_work_dir(p)], validated_input=True,
       also_clean=lambda p: [localize_metrics_path(p), *side_files(p, headline="localize")])
def localization(project: Project) -> StageResult:
    """Localisation error in metres of the embedded test frames against the gallery (metrics/localize.json)."""
    from data_assets.io import sha256_file
    from export.embedded_gallery import embedded_rasters, embedded_test_frames
    from export.localize import localization_metrics, open_gallery
    from data_assets.io import relative_path
    from orchestration.headline import discard, write_headline

    discard(project, "localize")
    cfg = gallery_config(project)
    g = open_gallery(gallery_dir(project))
    model = phase2_model(project)
    rasters = embedded_rasters(raster_work_dir(project))
    frames = embedded_test_frames(project.validated_manifest, project.root, rasters, cfg.localize_modalities)
    out = localize_metrics_path(project)
    manifest = project.validated_manifest
    extra = {"manifest": {"path": relative_path(manifest, project.root), "sha256": sha256_file(manifest)},
             "truth": {"manifest": "lat/lon of the manifest (true georeference)",
                       "nominal_neon_tile": "NEON YELL crops placed at their 1 km tile's corner (see "
                                            "export/embedded_gallery.py): relative positions exact, absolute not"}}
    report = localization_metrics(frames, g, model, out, extra=extra, k=cfg.k,
                                  frames_path=project.reports_dir / "localize" / "frames.csv", root=project.root)
    write_headline(project, "localize", report)
    _save_resolved(project, project.reports_dir / "localize")
    summary = {f"{m}/{key}": v for m, d in report["per_modality"].items()
               for key, v in d.items() if key in ("count", "median_m", "within_10m", "within_25m")}
    return StageResult("localization", {"metrics": out}, {"gallery_tiles": report["gallery"]["count"], **summary})


def _save_resolved(project: Project, out_dir: Path) -> None:
    sections = ["embedded", "model"] + (["gallery"] if hasattr(project.cfg, "gallery") else [])
    project.save_resolved(out_dir, sections=sections)


# ============================================================================ export + bundle (H4)

def export_config(project: Project):
    from export.config import ExportConfig

    return getattr(project.cfg, "export", None) or ExportConfig()


def onnx_dir(project: Project) -> Path:
    return project.models_dir / "onnx"


def export_metrics_path(project: Project) -> Path:
    return project.metrics_dir / "export.json"


def bundle_dir(project: Project) -> Path:
    return project.models_dir / "jetson_bundle"


def bundle_archive(project: Project) -> Path:
    return project.models_dir / "jetson_bundle.tar.gz"


@stage(lambda p: [onnx_dir(p)], validated_input=True,
       also_clean=lambda p: [export_metrics_path(p), *side_files(p, headline="export", timings="onnx_export")])
def onnx_export(project: Project) -> StageResult:
    """ONNX fp32 / fp16 / INT8 of the phase-2 encoder with parity gates (models/onnx/, metrics/export.json).

    A fp32 model that fails parity with torch raises: nothing is written, the bundle cannot be built.
    """
    from data_assets.io import write_json
    from export.models import export_models
    from export.tensorrt import build_engines
    from gleam_models.metrics_file import significant
    from orchestration.headline import discard, write_headline
    from orchestration.timings import write_timings

    discard(project, "export")
    ckpt = project.gleamc_dir("phase2") / "model.safetensors"
    cfg = export_config(project)
    out = onnx_dir(project)
    report = export_models(project.cfg.model, ckpt, cfg, project.validated_manifest, project.root,
                           project.cache_dir / "images", out, eval_cfg=project.cfg.evaluate)
    tensorrt = {size: build_engines({k: out / v for k, v in files.items() if k in ("fp32", "int8_trt")},
                                    out / "engines", calibration=out / files["calibration"], max_batch=cfg.max_batch)
                for size, files in report["files"].items()}
    # latencies differ on every run: reports/timings/onnx_export.json, not the committed metrics file
    metrics = {"model_fingerprint": report["model_fingerprint"], "backbone": report["backbone"],
               "opset": report["opset"], "passed": report["passed"], "failures": report["failures"],
               "parity": significant(report["parity"]), "retrieval": report["retrieval"],
               "tensorrt": {size: _engines_for_metrics(t, project.root) for size, t in tensorrt.items()}}
    write_json(export_metrics_path(project), metrics)
    write_headline(project, "export", metrics)
    write_timings(project, "onnx_export", {"speed_ms": report["speed"], "tensorrt_build_s": {
        size: {p: e.get("seconds") for p, e in t["engines"].items()} for size, t in tensorrt.items()}})
    project.save_resolved(out, sections=["model", "evaluate", "export"])
    change = report["retrieval"].get("mean_q2s_R@1_change", {})
    summary = {"model": report["model_fingerprint"], "passed": report["passed"],
               **{f"{size}/{v}/cosine_min": round(p["cosine_min"], 6) for size, by in report["parity"].items()
                  for v, p in by.items()},
               **{f"{size}/{v}/batch1_ms": round(s["batch_1"]["p50_ms"], 3) for size, by in report["speed"].items()
                  for v, s in by.items()},
               **{f"{run}/R@1_change": round(d, 2) for run, d in change.items()},
               "tensorrt": next(iter(tensorrt.values()))["message"] if tensorrt else "-"}
    return StageResult("onnx_export", {"onnx": out, "metrics": export_metrics_path(project)}, summary)


def _engines_for_metrics(tensorrt: dict, root: Path) -> dict:
    """build_engines' answer without its build times, engine paths relative to the project root."""
    from data_assets.io import relative_path

    engines = {precision: {**{k: v for k, v in e.items() if k != "seconds"},
                           **{k: relative_path(e[k], root) for k in ("engine", "calibration_cache") if e.get(k)}}
               for precision, e in tensorrt.get("engines", {}).items()}
    return {**tensorrt, "engines": engines}


@stage(lambda p: [bundle_dir(p)])
def jetson_bundle(project: Project) -> StageResult:
    """models/jetson_bundle/ + models/jetson_bundle.tar.gz from models/onnx/ and models/gallery/."""
    from export.bundle import build_bundle

    manifest = build_bundle(onnx_dir(project), gallery_dir(project), bundle_dir(project), bundle_archive(project),
                            max_batch=export_config(project).max_batch)
    summary = {"model": manifest["model_fingerprint"], "files": len(manifest["files"]),
               "bytes": sum(f["bytes"] for f in manifest["files"].values()),
               "archive_bytes": bundle_archive(project).stat().st_size,
               "profiles": {v: p["size"] for v, p in manifest["profiles"].items()},
               "variants": sorted({k for p in manifest["profiles"].values() for k in p["models"]}),
               "gallery_tiles": manifest["gallery_count"]}
    return StageResult("jetson_bundle", {"bundle": bundle_dir(project), "archive": bundle_archive(project)}, summary)
