"""The Jetson bundle: contents, manifest integrity, and the standalone runner run as a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data_assets.errors import DataError
from data_assets.io import sha256_file
from export.bundle import build_bundle, verify_bundle
from export_support import exported, write_gallery  # noqa: F401  (session fixture)


def copy_bundle(exported, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(exported["bundle"], dst)
    return dst


def run_runner(bundle: Path, *args, python: str = sys.executable) -> subprocess.CompletedProcess:
    """localize.py from the copied bundle, isolated (-I): no project code on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([python, "-I", str(bundle / "localize.py"), *map(str, args)], cwd=bundle,
                          capture_output=True, text=True, timeout=120, env=env)


def test_bundle_lists_every_file_with_its_hash(exported):
    bundle, manifest = exported["bundle"], exported["bundle_manifest"]
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for rel, entry in manifest["files"].items():
        assert sha256_file(bundle / rel) == entry["sha256"]
    assert manifest["model_fingerprint"] == exported["report"]["model_fingerprint"]
    for needed in ("localize.py", "build_engine.sh", "build_engine.py", "README.md", "requirements.txt",
                   "gallery/embeddings.npy", "gallery/tiles.csv", "gallery/gallery.json"):
        assert needed in manifest["files"]
    assert {"fp32", "fp16"} <= set(manifest["profiles"]["uav"]["models"])
    for variant, passed in exported["report"]["passed"].items():  # failed variants stay out
        assert (variant in manifest["profiles"]["uav"]["models"]) == passed
    assert verify_bundle(bundle) == []


def test_build_engine_script_has_orin_flags(exported):
    script = (exported["bundle"] / "build_engine.sh").read_text()
    assert "--minShapes=images:1x32x32x3 --optShapes=images:1x32x32x3 --maxShapes=images:4x32x32x3" in script
    assert "--fp16" in script and "--saveEngine=engines/encoder_32x32_fp16.engine" in script
    assert "--int8" in script or "--precision int8" in script
    assert "--useDLACore" in script
    assert subprocess.run(["bash", "-n", str(exported["bundle"] / "build_engine.sh")]).returncode == 0


def test_archive_holds_the_folder(exported):
    with tarfile.open(exported["archive"]) as tar:
        names = set(tar.getnames())
    assert "jetson_bundle/manifest.json" in names
    assert {f"jetson_bundle/{rel}" for rel in exported["bundle_manifest"]["files"]} <= names


def test_changed_byte_is_detected(exported, tmp_path):
    bundle = copy_bundle(exported, tmp_path)
    target = bundle / "gallery" / "embeddings.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    assert verify_bundle(bundle) == ["gallery/embeddings.npy"]
    run = run_runner(bundle, exported["satellites"][0], "--view", "satellite")
    assert run.returncode == 2
    assert "embeddings.npy: sha256 does not match manifest.json" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_runner_localizes_a_frame_from_a_copied_bundle(exported, tmp_path):
    bundle = copy_bundle(exported, tmp_path)
    frame = exported["satellites"][3]
    run = run_runner(bundle, frame, "--view", "satellite", "--json", "--top-k", "3", "--precision", "fp32")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["top"][0]["tile_id"] == frame.stem and result["top"][0]["similarity"] > 0.9999
    assert "_fp32.onnx" in run.stderr
    assert len(result["top"]) == 3 and {"preprocess_ms", "encode_ms", "search_ms"} <= set(result["latency"])
    assert "files verified" in run.stderr and "load" in run.stderr
    text = run_runner(bundle, frame, "--view", "uav")
    assert text.returncode == 0 and "#1  lat " in text.stdout and "latency ms: preprocess" in text.stdout


def test_runner_unreadable_frame(exported, tmp_path):
    bundle = copy_bundle(exported, tmp_path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    run = run_runner(bundle, bad)
    assert run.returncode == 2
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "unreadable frame" in errors[0] and "broken.jpg" in errors[0]
    missing = run_runner(bundle, tmp_path / "nope.jpg")
    assert missing.returncode == 2 and "frame not found" in missing.stderr


def test_runner_refuses_gallery_of_another_model(exported, tmp_path):
    bundle = copy_bundle(exported, tmp_path)
    other = write_gallery(tmp_path / "other", "0123456789abcdef",
                          np.eye(4, exported["report"]["embed_dim"], dtype=np.float32), list("abcd"))
    run = run_runner(bundle, exported["satellites"][0], "--gallery", other)
    assert run.returncode == 2
    assert "gallery of another model version" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_runner_missing_model_or_engine(exported, tmp_path):
    bundle = copy_bundle(exported, tmp_path)
    run = run_runner(bundle, exported["satellites"][0], "--engine", bundle / "engines" / "x.engine")
    assert run.returncode == 2 and "engine file not found" in run.stderr
    model = bundle / exported["bundle_manifest"]["profiles"]["uav"]["models"]["fp32"]
    model.unlink()
    run = run_runner(bundle, exported["satellites"][0])
    assert run.returncode == 2 and "is missing" in run.stderr and model.name in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_bundle_refuses_gallery_of_another_model(exported, tmp_path):
    other = write_gallery(tmp_path / "other", "0123456789abcdef", np.eye(2, 8, dtype=np.float32), ["a", "b"])
    with pytest.raises(DataError, match="rebuild the gallery"):
        build_bundle(exported["onnx_dir"], other, tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_runner_in_a_fresh_venv_with_only_numpy_pillow_onnxruntime(exported, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "numpy", "pillow", "onnxruntime"],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"no package index reachable for the fresh venv: {pip.stderr.strip()[-300:]}")
    bundle = copy_bundle(exported, tmp_path)
    frame = exported["satellites"][1]
    run = run_runner(bundle, frame, "--view", "satellite", python=str(venv / "bin" / "python"))
    assert run.returncode == 0, run.stderr
    assert f"tile {frame.stem}" in run.stdout.splitlines()[1] and "lat " in run.stdout
