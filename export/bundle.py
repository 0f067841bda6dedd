"""The Jetson bundle: one folder + one .tar.gz with everything a drone needs to localize its frames.

    jetson_bundle/
        manifest.json      every other file with its sha256 and size, the model fingerprint, profiles
        README.md          the steps on the device
        localize.py        the runner (numpy + Pillow + TensorRT or ONNX Runtime), export/runner/localize.py
        build_engine.sh    trtexec FP16 and INT8 engines for Jetson Orin (input shapes, optional DLA)
        build_engine.py    TensorRT Python builder with a real-frame INT8 calibrator (export/tensorrt.py)
        requirements.txt   the runner's Python packages
        models/            encoder_<H>x<W>_{fp32,fp16,int8_cpu,int8_trt}.onnx (variants that passed their
                           gates), calibration_<H>x<W>.npy (uint8 frames for TensorRT calibration)
        gallery/           gallery.json, embeddings.npy, tiles.csv, index.faiss (if present)

The runner's TensorRT INT8 calibration cache is not written here: a TensorRT cache holds scales of
the tensors of TensorRT's own (fused) network, which only TensorRT can produce. The bundle ships
the QDQ model instead (its scales inside the graph: explicit quantization, no cache needed) and the
calibration frames, from which build_engine.py writes a cache on the device.
"""
from __future__ import annotations

import gzip
import shutil
import tarfile
from pathlib import Path

from data_assets.errors import DataError
from data_assets.io import atomic_directory, atomic_path, read_json, sha256_file, write_json, write_text
from export.bundle_text import build_engine_script, readme

FORMAT = "gleam-jetson-bundle/1"
RUNNER = Path(__file__).parent / "runner" / "localize.py"
BUILDER = Path(__file__).parent / "tensorrt.py"
GALLERY_FILES = ("gallery.json", "embeddings.npy", "tiles.csv")
OPTIONAL_GALLERY_FILES = ("index.faiss",)
RUNNER_REQUIREMENTS = "numpy\npillow\nonnxruntime  # on a Jetson: onnxruntime-gpu from the Jetson wheels, or TensorRT\n"


def build_bundle(onnx_dir: Path, gallery_dir: Path, out_dir: Path, archive: Path | None = None,
                 max_batch: int = 32) -> dict:
    """Assemble the bundle folder (atomically) and its archive; returns the manifest."""
    onnx_dir, gallery_dir, out_dir = Path(onnx_dir), Path(gallery_dir), Path(out_dir)
    report = _read(onnx_dir / "parity.json", "no ONNX export report: run the onnx_export stage first")
    if not report.get("passed", {}).get("fp32"):
        raise DataError(onnx_dir / "parity.json", "the fp32 ONNX model failed parity: it is not bundled")
    gallery_meta = _read(gallery_dir / "gallery.json", "no gallery: build it first (gallery stage)")
    if gallery_meta.get("model_fingerprint") != report["model_fingerprint"]:
        raise DataError(gallery_dir, f"gallery built with model {gallery_meta.get('model_fingerprint')}, the "
                                     f"exported model is {report['model_fingerprint']}: rebuild the gallery")
    with atomic_directory(out_dir) as tmp:
        profiles = _copy_models(report, onnx_dir, tmp)
        _copy_gallery(gallery_dir, tmp / "gallery")
        shutil.copyfile(RUNNER, tmp / "localize.py")
        shutil.copyfile(BUILDER, tmp / "build_engine.py")
        (tmp / "localize.py").chmod(0o755)
        write_text(tmp / "requirements.txt", RUNNER_REQUIREMENTS)
        write_text(tmp / "build_engine.sh", build_engine_script(profiles, max_batch))
        (tmp / "build_engine.sh").chmod(0o755)
        write_text(tmp / "README.md", readme(report, gallery_meta, profiles, max_batch))
        manifest = {
            "format": FORMAT,
            "model_fingerprint": report["model_fingerprint"],
            "backbone": report["backbone"], "embed_dim": report["embed_dim"],
            "input": {"name": report["input_name"], "layout": report["input_layout"],
                      "resize": "Pillow BICUBIC, reducing_gap=3.0, to [H, W] of the view's profile"},
            "profiles": profiles,
            "gallery": "gallery",
            "gallery_count": gallery_meta.get("count"),
            "parity": {"passed": report["passed"], "retrieval": report.get("retrieval", {}).get("mean_q2s_R@1")},
            "files": file_hashes(tmp),
        }
        write_json(tmp / "manifest.json", manifest)
    if archive is not None:
        write_archive(out_dir, Path(archive))
    return manifest


def file_hashes(root: Path) -> dict[str, dict]:
    """{relative path: {"sha256", "bytes"}} of every file under root except manifest.json."""
    return {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def verify_bundle(bundle: Path) -> list[str]:
    """Files that are missing or whose sha256 differs from the manifest (empty = intact)."""
    manifest = read_json(Path(bundle) / "manifest.json")
    bad = []
    for rel, entry in manifest["files"].items():
        path = Path(bundle) / rel
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            bad.append(rel)
    return bad


def write_archive(folder: Path, archive: Path) -> Path:
    """The same bytes for the same files (the archive is a DVC output): entries sorted, no owner,
    mtime 0, modes 644/755, and a gzip header without a timestamp or file name."""
    folder = Path(folder)
    with atomic_path(archive) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in [folder, *sorted(folder.rglob("*"))]:
                tar.add(path, arcname=(Path(folder.name) / path.relative_to(folder)).as_posix(),
                        recursive=False, filter=_normalized)
    return archive


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    return info


def _copy_models(report: dict, onnx_dir: Path, tmp: Path) -> dict:
    """Copy the variants that passed; returns the per-view profiles for manifest.json."""
    (tmp / "models").mkdir()
    by_size = {}
    for size, files in report["files"].items():
        models = {}
        for variant in ("fp32", "fp16", "int8_cpu", "int8_trt"):
            if variant in files and report["passed"].get(variant):
                for src in [onnx_dir / files[variant], onnx_dir / (files[variant] + ".data")]:
                    if src.is_file():
                        shutil.copyfile(src, tmp / "models" / src.name)
                models[variant] = f"models/{files[variant]}"
        shutil.copyfile(onnx_dir / files["calibration"], tmp / "models" / files["calibration"])
        cpu_default = report.get("cpu_default", {}).get(size, "fp32")  # export.cpu_variant
        h, w = (int(v) for v in size.split("x"))
        by_size[size] = {"size": [h, w], "models": models, "calibration": f"models/{files['calibration']}",
                         "cpu_default": cpu_default if cpu_default in models else "fp32",
                         "engines": {"fp16": f"engines/encoder_{size}_fp16.engine",
                                     "int8": f"engines/encoder_{size}_int8.engine"}}
    return {view: by_size[size] for view, size in report["profiles"].items()}


def _copy_gallery(src: Path, dst: Path) -> None:
    dst.mkdir()
    for name in GALLERY_FILES:
        if not (src / name).is_file():
            raise DataError(src / name, "gallery file missing: rebuild the gallery")
        shutil.copyfile(src / name, dst / name)
    for name in OPTIONAL_GALLERY_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _read(path: Path, reason: str) -> dict:
    if not path.is_file():
        raise DataError(path, reason)
    return read_json(path)
