"""GLEAM-C trainer: data errors, NaN stop, resume after a real SIGKILL, 2-process DDP == 1 process."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_assets.errors import ConfigError, DataError
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.encoder import create_encoder
from gleam_models.loss import ContrastiveLoss
from gleam_models.train import PairModel, TrainingDiverged, lr_at, param_groups, train_phase

SMALL = {"satellite": (32, 32), "uav": (32, 32), "street_map": (32, 32), "panorama": (32, 64), "ground": (32, 32)}
TINY = EncoderConfig(backbone="test_efficientnet", weights="none", embed_dim=16, input_size=SMALL)
MODS = ("uav", "street_map", "panorama", "ground")


def _train_cfg(**phase1) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, lr=1e-3, warmup_steps=2)
    # frozen BatchNorm statistics: per-rank batch statistics would differ from one full batch
    # (use batchnorm=sync on GPUs), so DDP can equal one process exactly only with them frozen
    return TrainConfig(precision="fp32", batchnorm="frozen", progress=False, log_every_steps=1,
                       phase1=PhaseConfig(**{**base, **phase1}),
                       phase2=PhaseConfig(epochs=1, batch_size=8, lr=1e-4, sampler="similarity",
                                          sim_neighbours=6, sim_group_size=4))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, n_locations=16, modalities=MODS, size=40, test_fraction=0.25)


def _losses(out_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_temperature_has_its_own_lr_scale_and_no_weight_decay():
    model = PairModel(create_encoder(TINY), ContrastiveLoss())
    groups = param_groups(model, weight_decay=0.05, temperature_lr_scale=10.0)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len(set(map(id, grouped))) == len(list(model.parameters()))  # each once
    temperature = [g for g in groups if any(p is model.loss.logit_scale for p in g["params"])]
    assert len(temperature) == 1 and len(temperature[0]["params"]) == 1
    assert temperature[0]["lr_scale"] == 10.0 and temperature[0]["weight_decay"] == 0.0
    assert all(g["lr_scale"] == 1.0 for g in groups if g is not temperature[0])


def test_two_phases_train_write_outputs_and_skip_when_done(dataset, tmp_path):
    cfg = _train_cfg()
    s1 = train_phase(TINY, cfg, "phase1", dataset, tmp_path, tmp_path / "p1", tmp_path / "cache")
    assert s1["steps"] == 2 * (48 // 8) and s1["pairs"] == 48 and s1["locations"] == 12
    assert (tmp_path / "p1" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (tmp_path / "p1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) >= {"step", "epoch", "loss", "lr", "temperature"} and "images_per_s" not in rows[0]
    assert s1["images_per_s"] > 0 and "seconds" not in json.loads((tmp_path / "p1" / "summary.json").read_text())
    s2 = train_phase(TINY, cfg, "phase2", dataset, tmp_path, tmp_path / "p2", tmp_path / "cache",
                     init_checkpoint=tmp_path / "p1" / "model.safetensors")
    assert s2["sampler"] == "similarity" and s2["steps"] == 6
    assert s2["temperature"] != pytest.approx(0.07, abs=1e-7)  # carried over from phase 1, then trained
    again = train_phase(TINY, cfg, "phase2", dataset, tmp_path, tmp_path / "p2", tmp_path / "cache",
                        init_checkpoint=tmp_path / "p1" / "model.safetensors")
    timings = ("seconds", "images_per_s")  # returned by the run that trained, not kept in summary.json
    assert again == {k: v for k, v in s2.items() if k not in timings}  # finished: nothing retrained


def test_empty_modality_and_empty_split_are_data_errors(dataset, tmp_path):
    only_uav = make_synthetic_dataset(tmp_path / "d", n_locations=10, modalities=("uav",), size=32)
    with pytest.raises(DataError, match="'panorama' has no train pairs"):
        train_phase(TINY, _train_cfg(modalities=["uav", "panorama"]), "phase1", only_uav, tmp_path,
                    tmp_path / "out", tmp_path / "cache")
    all_test = make_synthetic_dataset(tmp_path / "t", n_locations=4, modalities=("uav",), size=32, test_fraction=1.0)
    with pytest.raises(DataError, match="no train pairs"):
        train_phase(TINY, _train_cfg(), "phase1", all_test, tmp_path, tmp_path / "out2", tmp_path / "cache")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        train_phase(TINY, _train_cfg().model_copy(update={"precision": "fp16"}), "phase1", dataset, tmp_path,
                    tmp_path / "out3", tmp_path / "cache")


def test_nan_loss_stops_with_step_and_locations(dataset, tmp_path):
    # an absurd learning rate without clipping blows the weights up after the first step
    cfg = _train_cfg(lr=1e30, warmup_steps=0, clip_norm=None, checkpoint_every_steps=1, weight_decay=0.0)
    with pytest.raises(TrainingDiverged) as err:
        train_phase(TINY, cfg, "phase1", dataset, tmp_path, tmp_path / "out", tmp_path / "cache")
    msg = str(err.value)
    assert "loss is nan at step 2" in msg and "synthetic/" in msg
    assert "last good checkpoint kept" in msg and "step-0000001" in msg
    assert list((tmp_path / "out" / "checkpoints").glob("*/step-0000001/model.safetensors"))
    assert not (tmp_path / "out" / "summary.json").exists()


RUNNER = "from gleam_models.train import main; main()"


def _run_config(path: Path, dataset: Path, out_dir: Path, cache: Path, train: TrainConfig, phase="phase1",
                init=None) -> Path:
    path.write_text(json.dumps({"model": TINY.model_dump(mode="json"), "train": train.model_dump(mode="json"),
                                "phase": phase, "manifest_path": str(dataset), "base_dir": str(dataset.parent),
                                "out_dir": str(out_dir), "cache_dir": str(cache),
                                "init_checkpoint": str(init) if init else None}))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(dataset, tmp_path):
    train = _train_cfg(epochs=3, checkpoint_every_steps=2)
    full = _run_config(tmp_path / "full.json", dataset, tmp_path / "full", tmp_path / "cache", train)
    subprocess.run([sys.executable, "-c", RUNNER, "--config", str(full)], check=True, env=_env(), timeout=300)

    killed = _run_config(tmp_path / "killed.json", dataset, tmp_path / "killed", tmp_path / "cache", train)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "--config", str(killed)], env=_env())
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 240
    while not list(ckpts.glob("*/step-*/state.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (tmp_path / "killed" / "summary.json").exists()
    first = sorted(p.name for p in ckpts.glob("*/step-*"))
    assert first and first[-1] != "step-0000018"

    subprocess.run([sys.executable, "-c", RUNNER, "--config", str(killed)], check=True, env=_env(), timeout=300)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert _losses(tmp_path / "killed") == pytest.approx(_losses(tmp_path / "full"), rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(dataset, tmp_path):
    train = _train_cfg(epochs=1)
    cache = tmp_path / "cache"
    runs = {}
    for name, launcher in [("single", []),
                           ("ddp", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                    "--master_port", str(_free_port())])]:
        p1 = _run_config(tmp_path / f"{name}1.json", dataset, tmp_path / name / "p1", cache, train)
        script = [str(tmp_path / "runner.py")] if launcher else ["-c", RUNNER]
        (tmp_path / "runner.py").write_text(RUNNER + "\n")
        subprocess.run([sys.executable, *launcher, *script, "--config", str(p1)], check=True, env=_env(), timeout=300)
        p2 = _run_config(tmp_path / f"{name}2.json", dataset, tmp_path / name / "p2", cache, train, "phase2",
                         init=tmp_path / name / "p1" / "model.safetensors")
        subprocess.run([sys.executable, *launcher, *script, "--config", str(p2)], check=True, env=_env(), timeout=300)
        runs[name] = tmp_path / name
    assert json.loads((runs["ddp"] / "p1" / "summary.json").read_text())["world_size"] == 2
    for phase in ("p1", "p2"):  # phase 2 also checks the sharded similarity embedding
        single, ddp = _losses(runs["single"] / phase), _losses(runs["ddp"] / phase)
        assert len(single) == len(ddp) == 6
        assert ddp == pytest.approx(single, rel=1e-4, abs=1e-5)
