"""metrics/*.json are committed to git and every DVC output's hash is in dvc.lock: the same code and
data must write the same bytes in any project root and on any run (no absolute paths, clock times,
throughputs or timestamps; safetensors metadata in a fixed order)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gleam_models.evaluate import EvalConfig, Run, evaluate_runs
from gleam_models.gleamx.evaluate import SystemRun, eval_set_info, evaluate_gleamx
from gleam_models.metrics_file import relative_path, significant
from test_evaluate import build_manifest, embed_by_mean_colour

VOLATILE_KEYS = {"created_at", "seconds", "generation_s", "tokens_per_s", "images_per_s", "speed_ms", "p50_ms"}


def keys_of(doc) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in keys_of(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in keys_of(v)}
    return set()


def assert_portable(path: Path, *roots: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for root in roots:
        assert str(root) not in text, f"{path.name} records the project root {root}"
    if path.suffix == ".json":
        assert not VOLATILE_KEYS & keys_of(json.loads(text)), f"{path.name} records times or throughputs"


def test_gleamc_metrics_are_the_same_bytes_in_two_project_roots(tmp_path):
    written = []
    for name in ("clone_a", "clone_b"):
        root = tmp_path / name
        manifest = build_manifest(root)  # the manifest's dataset roots are relative to the project root
        metrics = root / "metrics" / "gleamc.json"
        evaluate_runs(manifest, root, {"phase2": Run(embed_by_mean_colour, "fp-phase2")},
                      EvalConfig(figure_rows=0), metrics, root / "reports" / "gleamc")
        assert_portable(metrics, root)
        written.append(metrics.read_bytes())
    assert written[0] == written[1]
    assert json.loads(written[0])["manifest"]["path"] == "manifest.parquet"


def test_gleamx_metrics_are_the_same_bytes_whatever_the_generation_took(tmp_path):
    records = [{"id": str(i), "modality": "uav", "language": "en", "label": label, "explanation": "x"}
               for i, label in enumerate(["match", "no_match", "match", "no_match"])]
    written = []
    for name, seconds in (("clone_a", 1.25), ("clone_b", 7.5)):
        root = tmp_path / name
        (root / "data" / "gleamx").mkdir(parents=True)
        records_file = root / "data" / "gleamx" / "test.jsonl"
        records_file.write_text("".join(json.dumps(r) + "\n" for r in records))
        run = SystemRun("cosine_threshold", "fp", None, verdicts=["match", "no_match", "no_match", "no_match"],
                        explains=False, info={"threshold": 0.123456789},
                        timing={"generation_s": seconds, "tokens_per_s": 40 / seconds})
        out = root / "metrics" / "gleamx.json"
        evaluate_gleamx(records, [run], {}, out, eval_set_info(records_file, 4, records, None, 0, root=root))
        assert_portable(out, root)
        written.append(out.read_bytes())
    assert written[0] == written[1]
    doc = json.loads(written[0])
    assert doc["eval_set"]["path"] == "data/gleamx/test.jsonl"
    assert doc["details"]["cosine_threshold"]["info"] == {"threshold": 0.1235}


@pytest.fixture(scope="module")
def gallery_and_frames(tmp_path_factory):
    """A tiny gallery and three frames cropped from its map, built once (copied into each root)."""
    from gallery_support import crop_frames, tiny_gallery

    d = tmp_path_factory.mktemp("repro_loc")
    setup = tiny_gallery(d)
    model, g = setup[1], setup[4]
    ids = list(g.tiles.tile_id.iloc[[0, 5, 12]])
    frames = crop_frames(setup, ids, d / "frames")
    truth = g.tiles.set_index("tile_id").loc[ids]
    return d, model, frames, list(truth.center_lat), list(truth.center_lon)


def test_localize_metrics_and_frames_csv_are_the_same_bytes_in_two_project_roots(gallery_and_frames, tmp_path):
    from export.localize import localization_metrics, open_gallery

    d, model, frames, lats, lons = gallery_and_frames
    written = []
    for name in ("clone_a", "clone_b"):
        root = tmp_path / name
        shutil.copytree(d / "gallery", root / "models" / "gallery")
        shutil.copytree(d / "frames", root / "data" / "frames")
        rows = [{"path": str(root / "data" / "frames" / f.name), "modality": "uav", "lat": lat, "lon": lon}
                for f, lat, lon in zip(frames, lats, lons)]
        out, csv = root / "metrics" / "localize.json", root / "reports" / "localize" / "frames.csv"
        localization_metrics(pd.DataFrame(rows), open_gallery(root / "models" / "gallery"), model, out,
                             frames_path=csv, root=root)
        assert_portable(out, root)
        assert_portable(csv, root)
        written.append((out.read_bytes(), csv.read_bytes()))
    assert written[0] == written[1]
    doc = json.loads(written[0][0])
    assert doc["gallery"]["path"] == "models/gallery" and doc["frames_csv"] == "reports/localize/frames.csv"


def test_resolved_params_name_the_params_file_relative_to_the_project(tmp_path):
    from orchestration.config import load_project
    from pipeline_support import tmp_project

    written = []
    for name in ("clone_a", "clone_b"):
        root = tmp_path / name
        root.mkdir()
        project = load_project(tmp_project(root))
        target = project.save_resolved(root / "reports" / "gleamc", sections=["model", "evaluate"])
        assert_portable(target, root)
        written.append(target.read_bytes())
    assert written[0] == written[1] and b"params_file: params.yaml\n" in written[0]


def test_a_model_saved_twice_is_the_same_bytes(tmp_path):
    """safetensors writes metadata keys in a random order (safetensors#584); save_model must not."""
    from safetensors.torch import load

    from gleam_models.checkpoint import save_model
    from gleam_models.encoder import ENCODER_PREFIX

    class Encoder(torch.nn.Module):  # what save_model reads of a GLEAM-C encoder
        backbone_name, embed_dim, input_size = "tiny", 4, {"satellite": [8, 8], "uav": [8, 8]}

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 4)

    torch.manual_seed(0)
    encoder = Encoder()
    extra = {f"key_{i}": str(i) for i in range(8)}  # many keys: a random order shows at once
    blobs = set()
    for i in range(5):
        save_model(tmp_path / f"model_{i}.safetensors", encoder, None, extra_meta=extra)
        blobs.add((tmp_path / f"model_{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    assert load(blobs.pop())[ENCODER_PREFIX + "proj.weight"].equal(encoder.proj.weight.detach())


def test_relative_path_and_significant_digits(tmp_path):
    assert relative_path(tmp_path / "data" / "m.parquet", tmp_path) == "data/m.parquet"
    assert relative_path("/elsewhere/m.parquet", tmp_path) == "/elsewhere/m.parquet"
    assert significant({"a": 3.3155083656311035e-07, "b": [0.999993085861206], "n": 64}) == \
        {"a": 3.31551e-07, "b": [0.999993], "n": 64}


def _portable_synthetic(src: Path, root: Path) -> Path:
    """The synthetic dataset copied under root/data, its dataset_root made relative to the root."""
    from data_assets.manifest import read_manifest, write_manifest

    shutil.copytree(src.parent, root / "data")
    df = read_manifest(root / "data" / src.name)
    df["dataset_root"] = "data"
    return write_manifest(df, root / "data" / src.name)


def test_gleamc_training_outputs_are_the_same_bytes_in_two_project_roots(tmp_path):
    """summary.json, metrics.jsonl/.csv (DVC outputs and plots) carry no throughput, clock or root."""
    from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
    from gleam_models.synthetic import make_synthetic_dataset
    from gleam_models.train import train_phase
    from orchestration.stages import _metrics_csv

    size = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}
    model_cfg = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=size)
    cfg = TrainConfig(precision="fp32", batchnorm="frozen", progress=False, log_every_steps=1,
                      phase1=PhaseConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1, checkpoint_every_steps=2),
                      phase2=PhaseConfig(epochs=1, batch_size=8, lr=1e-4, sampler="similarity",
                                         sim_neighbours=4, sim_group_size=4))
    src = make_synthetic_dataset(tmp_path / "src", n_locations=16, size=40)
    written = []
    for name in ("clone_a", "clone_b"):
        root = tmp_path / name
        manifest = _portable_synthetic(src, root)
        files = {}
        for phase in ("phase1", "phase2"):
            out = root / "models" / f"gleamc_{phase}"
            init = root / "models" / "gleamc_phase1" / "model.safetensors" if phase == "phase2" else None
            summary = train_phase(model_cfg, cfg, phase, manifest, root, out, root / ".cache" / "images",
                                  init_checkpoint=init)
            assert summary["seconds"] > 0 and summary["images_per_s"] > 0  # returned, for reports/timings/
            _metrics_csv(out / "metrics.jsonl", out / "metrics.csv")
            for f in ("summary.json", "metrics.jsonl", "metrics.csv"):
                assert_portable(out / f, root)
            files.update({f"{phase}/{f}": (out / f).read_bytes()
                          for f in ("summary.json", "metrics.jsonl", "metrics.csv", "model.safetensors")})
        written.append(files)
    assert written[0] == written[1]
    assert json.loads(written[0]["phase2/summary.json"])["init_checkpoint"] == "models/gleamc_phase1/model.safetensors"
    assert b"images_per_s" not in written[0]["phase1/metrics.csv"]


def _fake_export(root: Path) -> tuple[Path, Path]:
    """An ONNX folder and a gallery as build_bundle reads them (placeholder model bytes)."""
    from export_support import write_gallery

    onnx = root / "models" / "onnx"
    onnx.mkdir(parents=True)
    for name in ("encoder_32x32_fp32.onnx", "encoder_32x32_int8_cpu.onnx"):
        (onnx / name).write_bytes(name.encode() * 64)
    np.save(onnx / "calibration_32x32.npy", np.zeros((2, 32, 32, 3), np.uint8), allow_pickle=False)
    report = {"format": "gleam-onnx/1", "model_fingerprint": "fp0", "backbone": "tiny", "embed_dim": 4,
              "checkpoint": str(root / "models" / "gleamc_phase2" / "model.safetensors"), "opset": 17,
              "input_name": "images", "output_name": "embeddings", "input_layout": "NHWC uint8",
              "profiles": {"satellite": "32x32", "uav": "32x32"},
              "files": {"32x32": {"fp32": "encoder_32x32_fp32.onnx", "int8_cpu": "encoder_32x32_int8_cpu.onnx",
                                  "calibration": "calibration_32x32.npy", "views": ["satellite", "uav"]}},
              "parity": {}, "failures": [], "passed": {"fp32": True, "int8_cpu": True}, "retrieval": {},
              "speed": {"32x32": {v: {"batch_1": {"p50_ms": ms}} for v, ms in (("fp32", 2.0), ("int8_cpu", 1.0))}}}
    from export.models import cpu_variant, parity_file

    report["cpu_default"] = {s: cpu_variant(sp, "int8_cpu") for s, sp in report["speed"].items()}
    (onnx / "parity.json").write_text(json.dumps(parity_file(report, root)))
    gallery = write_gallery(root / "models" / "gallery", "fp0", np.eye(3, 4, dtype=np.float32), ["a", "b", "c"])
    return onnx, gallery


def test_parity_file_has_no_latencies_or_clock_and_a_relative_checkpoint(tmp_path):
    onnx, _ = _fake_export(tmp_path)
    assert_portable(onnx / "parity.json", tmp_path)
    doc = json.loads((onnx / "parity.json").read_text())
    assert doc["checkpoint"] == "models/gleamc_phase2/model.safetensors" and "speed" not in doc
    assert doc["cpu_default"] == {"32x32": "int8_cpu"}  # export.cpu_variant: the decision, not the figures


def test_jetson_bundle_and_archive_are_the_same_bytes_in_two_project_roots(tmp_path):
    import os
    import tarfile

    from export.bundle import build_bundle

    written = []
    for i, name in enumerate(("clone_a", "clone_b")):
        root = tmp_path / name
        onnx, gallery = _fake_export(root)
        for f in [*onnx.iterdir(), *gallery.iterdir()]:  # sources of other ages, as in another clone
            os.utime(f, (1e9 + i * 1e6, 1e9 + i * 1e6))
        bundle, archive = root / "models" / "jetson_bundle", root / "models" / "jetson_bundle.tar.gz"
        manifest = build_bundle(onnx, gallery, bundle, archive, max_batch=4)
        assert manifest["profiles"]["uav"]["cpu_default"] == "int8_cpu"
        assert_portable(bundle / "manifest.json", root)
        written.append({"manifest": (bundle / "manifest.json").read_bytes(), "archive": archive.read_bytes()})
        if i == 0:
            time.sleep(1.1)  # the old archive and manifest stamped whole seconds: make the clock differ
    assert written[0] == written[1]
    with tarfile.open(tmp_path / "clone_a" / "models" / "jetson_bundle.tar.gz") as tar:
        members = tar.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert tar.extractfile("jetson_bundle/localize.py") is not None
        assert tar.getmember("jetson_bundle/localize.py").mode == 0o755


def test_gallery_json_has_no_clock_or_project_root(gallery_and_frames, tmp_path):
    from export.gallery import GalleryConfig, build_gallery
    from gallery_support import write_utm_rgb

    d, model, _, _, _ = gallery_and_frames
    written = []
    for i, name in enumerate(("clone_a", "clone_b")):
        root = tmp_path / name
        (root / "maps").mkdir(parents=True)
        raster = write_utm_rgb(root / "maps" / "map.tif", seed=3, size=96)
        build_gallery([raster], model, GalleryConfig(tile_m=64, stride_m=32), root / "models" / "gallery", root=root)
        assert_portable(root / "models" / "gallery" / "gallery.json", root)
        written.append({f: (root / "models" / "gallery" / f).read_bytes()
                        for f in ("gallery.json", "tiles.csv", "embeddings.npy")})
        if i == 0:
            time.sleep(1.1)  # created_at had whole seconds
    assert written[0] == written[1]
    assert json.loads(written[0]["gallery.json"])["rasters"][0]["path"] == "maps/map.tif"


def test_the_cpu_model_is_the_configured_one_not_the_one_measured_faster():
    from export.models import cpu_variant

    speed = {"fp32": {"batch_1": {"p50_ms": 1.0}}, "int8_cpu": {"batch_1": {"p50_ms": 2.0}}}
    assert cpu_variant(speed, "int8_cpu") == "int8_cpu"  # the same in every clone, whatever the timings
    assert cpu_variant(speed, "fastest") == "fp32"
    assert cpu_variant({"fp32": speed["fp32"]}, "int8_cpu") == "fp32"  # INT8 not exported


@pytest.mark.parametrize("path, ignored", [
    ("models/gleamc_phase1/checkpoints/fp/step-0000036/state.json", True),
    ("models/gleamx/checkpoints/step-0000020/state.json", True),
    # a preset's phases sit two folders deeper: `models/*/checkpoints/` missed them, and their
    # state.json's wall clock changed dvc.lock at every fresh clone's `make run`
    ("models/gleamc_presets/paper/phase1/checkpoints/fp/step-0000036/state.json", True),
    ("models/gleamc_presets/paper/phase1/model.safetensors", False),
    ("models/gleamx/fact_probes.safetensors", False),
])
def test_dvc_hashes_leave_out_every_checkpoint_and_keep_the_weights(path, ignored):
    """What .dvcignore leaves out of dvc.lock, asked of DVC itself (orchestration/versions.py's
    SKIPPED_NAMES leaves `checkpoints` out of Dagster's data versions at any depth)."""
    from pipeline_support import DVC, PROJECT_ROOT

    assert DVC.is_file(), "DVC's own environment is missing: run `make setup`"
    result = subprocess.run([str(DVC), "check-ignore", path], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"}, timeout=120)
    assert result.returncode == (0 if ignored else 1), result.stdout + result.stderr
