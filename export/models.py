"""The export stage's library call: ONNX fp32 / fp16 / INT8 of a GLEAM-C checkpoint, with parity gates.

    out_dir/
        encoder_<H>x<W>_fp32.onnx        reference export, preprocessing in the graph (export.onnx_export)
        encoder_<H>x<W>_fp16.onnx        half precision, uint8 in / float32 out (GPU runtimes)
        encoder_<H>x<W>_int8_cpu.onnx    INT8 for ONNX Runtime CPU (export.quantize)
        encoder_<H>x<W>_int8_trt.onnx    symmetric QDQ INT8: TensorRT explicit quantization
        calibration_<H>x<W>.npy          the uint8 training frames INT8 was calibrated on (the device's
                                         TensorRT calibrator reuses them)
        retrieval.json                   evaluate_runs metrics of torch and every ONNX variant
        parity.json                      the report: parity figures, R@1 per variant, gates, CPU default
                                         (latencies: the return value, not this file)

Gates: ONNX fp32 must match torch (cosine >= min_cosine_fp32 on every real test image, R@1 within
max_r1_change_fp32 on every modality and direction) or nothing is written and a DataError is
raised. A quantized variant outside its bounds (cosine, mean query->satellite R@1 drop) is kept
on disk but marked failed; the bundle leaves failed variants out.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from data_assets.errors import DataError
from data_assets.io import atomic_directory, read_json, write_json
from export.config import ExportConfig
from export.onnx_export import (INPUT_LAYOUT, INPUT_NAME, OUTPUT_NAME, export_onnx, model_metadata,
                                profile_sizes, size_name)
from export.parity import cached_embed_fn, cosine_report, mean_q2s_r1, r1_table, sample_frames
from export.quantize import (convert_fp16, latency_ms, ort_embed, ort_session, quantize_for_cpu,
                             quantize_for_tensorrt)

log = logging.getLogger(__name__)
FORMAT = "gleam-onnx/1"
QUANTIZED = ("fp16", "int8_cpu", "int8_trt")


def export_models(model_cfg, checkpoint: Path, cfg: ExportConfig, manifest: Path, base_dir: Path,
                  cache_dir: Path, out_dir: Path, eval_cfg=None) -> dict:
    """Export, quantize, check; returns the parity report (also out_dir/parity.json)."""
    from gleam_models.checkpoint import weights_fingerprint
    from gleam_models.data import ImageCache
    from gleam_models.embed import embed_arrays
    from gleam_models.encoder import load_encoder

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(checkpoint, "no GLEAM-C model to export: train it first (gleamc-phase2)")
    encoder = load_encoder(model_cfg, checkpoint).eval()
    fingerprint = weights_fingerprint(checkpoint)
    cache = ImageCache(Path(cache_dir), ram_budget_mb=512)
    groups = profile_sizes(model_cfg.input_size, cfg.profiles)
    report: dict = {"format": FORMAT, "model_fingerprint": fingerprint, "checkpoint": str(checkpoint),
                    "backbone": encoder.backbone_name, "embed_dim": encoder.embed_dim, "opset": cfg.opset,
                    "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "input_layout": INPUT_LAYOUT,
                    "profiles": {}, "files": {}, "parity": {}, "speed": {}, "failures": []}
    with atomic_directory(out_dir) as tmp:
        sessions: dict[str, dict[tuple[int, int], object]] = {}
        for size, views in groups.items():
            name = size_name(size)
            files, parity, speed = _export_size(encoder, fingerprint, size, views, cfg, manifest, base_dir,
                                                cache, tmp, sessions, embed_arrays)
            report["files"][name] = files
            report["parity"][name] = parity
            report["speed"][name] = speed
            report["profiles"].update({v: name for v in views})
        torch_fn = cached_embed_fn(lambda f, s: embed_arrays(encoder, list(f)), model_cfg.input_size, cache)
        report["retrieval"] = _retrieval(torch_fn, sessions, model_cfg.input_size, cache, cfg, groups,
                                         manifest, base_dir, tmp / "retrieval.json", eval_cfg, fingerprint)
        report["passed"] = _gates(report, cfg)
        if not report["passed"]["fp32"]:
            raise DataError(checkpoint, "ONNX export fails parity with torch, nothing exported: "
                                        + "; ".join(report["failures"]))
        report["cpu_default"] = {size: cpu_variant(speed, cfg.cpu_variant) for size, speed in report["speed"].items()}
        write_json(tmp / "parity.json", parity_file(report, base_dir))
    return report


def parity_file(report: dict, root: Path) -> dict:
    """parity.json is a DVC output: the same bytes on every run and in every clone, so no latencies or
    clock (the stage puts them in reports/timings/onnx_export.json) and the checkpoint relative to root."""
    from data_assets.io import relative_path

    return {**{k: v for k, v in report.items() if k != "speed"},
            "checkpoint": relative_path(report["checkpoint"], root)}


def cpu_variant(speed: dict, choice: str) -> str:
    """The variant the bundle's runner uses on a CPU (export.cpu_variant), among those exported;
    the bundle falls back to fp32 where the chosen one failed its parity gates."""
    if choice != "fastest":
        return choice if choice in speed else "fp32"

    def batch1(v: str) -> float:
        return speed[v]["batch_1"]["p50_ms"]
    return "int8_cpu" if {"fp32", "int8_cpu"} <= set(speed) and batch1("int8_cpu") < batch1("fp32") else "fp32"


def _export_size(encoder, fingerprint, size, views, cfg: ExportConfig, manifest, base_dir, cache, tmp: Path,
                 sessions: dict, embed_arrays) -> tuple[dict, dict, dict]:
    name = size_name(size)
    files = {"fp32": f"encoder_{name}_fp32.onnx", "views": views}
    fp32 = export_onnx(encoder, size, tmp / files["fp32"], cfg.opset, model_metadata(encoder, fingerprint, views, size))
    calib, _ = sample_frames(manifest, base_dir, "train", views, size, cfg.calibration_images, cache, seed=0)
    np.save(tmp / f"calibration_{name}.npy", calib, allow_pickle=False)
    files["calibration"] = f"calibration_{name}.npy"
    if cfg.fp16:
        files["fp16"] = convert_fp16(fp32, tmp / f"encoder_{name}_fp16.onnx").name
    if cfg.int8:
        files["int8_cpu"] = quantize_for_cpu(fp32, tmp / f"encoder_{name}_int8_cpu.onnx", calib,
                                             fmt=cfg.int8_cpu_format, per_channel=cfg.int8_per_channel,
                                             method=cfg.calibration_method, keep_float=cfg.int8_keep_float).name
        files["int8_trt"] = quantize_for_tensorrt(fp32, tmp / f"encoder_{name}_int8_trt.onnx", calib,
                                                  method=cfg.calibration_method).name
    test, _ = sample_frames(manifest, base_dir, "test", views, size, cfg.parity_images, cache, seed=1)
    reference = embed_arrays(encoder, list(test))
    parity, speed = {}, {}
    for variant in ("fp32", *QUANTIZED):
        if variant not in files:
            continue
        session = ort_session(tmp / files[variant], threads=cfg.threads)
        sessions.setdefault(variant, {})[tuple(size)] = session
        parity[variant] = cosine_report(reference, ort_embed(session, test))
        speed[variant] = {f"batch_{b}": latency_ms(session, test, b, repeats=20 if b == 1 else 5)
                          for b in (1, cfg.max_batch)}
        log.info("%s %s: cosine min %.6f, %.2f ms at batch 1", name, variant, parity[variant]["cosine_min"],
                 speed[variant]["batch_1"]["p50_ms"])
    return files, parity, speed


def _retrieval(torch_fn, sessions, input_size, cache, cfg: ExportConfig, groups, manifest, base_dir,
               metrics_path: Path, eval_cfg, fingerprint: str) -> dict:
    """R@1 of torch and every ONNX variant on the evaluated splits, for the exported views."""
    from gleam_models.evaluate import EvalConfig, Run, evaluate_runs, evaluated_splits

    views = {v for vs in groups.values() for v in vs}
    if "satellite" not in views:
        return {"skipped": "satellite view not exported: no query->satellite retrieval to compare"}
    base = (eval_cfg or EvalConfig()).model_copy(update={"figure_rows": 0})
    splits = evaluated_splits(manifest, base)
    present = _modalities_with_queries(manifest, splits)
    modalities = [m for m in (base.modalities or present) if m in views and m in present]
    if not modalities:
        return {"skipped": f"no exported query view has queries in {splits}"}
    runs = {"torch": Run(torch_fn, fingerprint)}
    for variant, by_size in sessions.items():
        runs[f"onnx_{variant}"] = Run(cached_embed_fn(
            lambda f, s, by_size=by_size: ort_embed(by_size[tuple(s)], f), input_size, cache), fingerprint)
    ecfg = base.model_copy(update={"modalities": modalities, "splits": splits})
    with tempfile.TemporaryDirectory(prefix="gleam-export-eval-") as figures:
        document = evaluate_runs(manifest, base_dir, runs, ecfg, metrics_path, Path(figures))
    table = r1_table(document, list(runs))
    mean = {run: mean_q2s_r1(t) for run, t in table.items()}
    return {"splits": splits, "modalities": modalities, "R@1": table, "mean_q2s_R@1": mean,
            "mean_q2s_R@1_change": {run: mean[run] - mean["torch"] for run in mean if run != "torch"}}


def _modalities_with_queries(manifest: Path, splits: list[str]) -> list[str]:
    """Query modalities that have pair rows in every one of `splits`."""
    from data_assets.manifest import read_manifest

    df = read_manifest(manifest)
    df = df[df["kind"] == "pair"]
    sets = [set(df[df["split"] == s]["modality"].dropna()) for s in splits]
    return sorted(set.intersection(*sets)) if sets else []


def _gates(report: dict, cfg: ExportConfig) -> dict[str, bool]:
    bounds = {"fp32": cfg.min_cosine_fp32, "fp16": cfg.min_cosine_fp16,
              "int8_cpu": cfg.min_cosine_int8, "int8_trt": cfg.min_cosine_int8}
    passed = {v: True for v in bounds}
    for size, by_variant in report["parity"].items():
        for variant, fig in by_variant.items():
            if fig["cosine_min"] < bounds[variant]:
                passed[variant] = False
                report["failures"].append(f"{variant} {size}: cosine min {fig['cosine_min']:.6f} < {bounds[variant]}")
    retrieval = report["retrieval"]
    if "R@1" in retrieval:
        torch_r1 = retrieval["R@1"]["torch"]
        for key, value in retrieval["R@1"].get("onnx_fp32", {}).items():
            if abs(value - torch_r1[key]) > cfg.max_r1_change_fp32:
                passed["fp32"] = False
                report["failures"].append(f"fp32 {key}: R@1 {value:.2f} vs torch {torch_r1[key]:.2f}")
        for variant in QUANTIZED:
            drop = -retrieval["mean_q2s_R@1_change"].get(f"onnx_{variant}", 0.0)
            if drop > cfg.max_r1_drop_quantized:
                passed[variant] = False
                report["failures"].append(f"{variant}: mean query->satellite R@1 drops {drop:.2f} points")
    present = {v for files in report["files"].values() for v in files}
    return {v: ok for v, ok in passed.items() if v in present}


def read_export_report(onnx_dir: Path) -> dict:
    path = Path(onnx_dir) / "parity.json"
    if not path.is_file():
        raise DataError(path, "no ONNX export report: run the onnx_export stage first")
    return read_json(path)
