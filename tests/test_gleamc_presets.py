"""train.presets: the paper's reading of the two phases, trained beside the default one."""
from __future__ import annotations

import pytest
from safetensors.torch import load_file

from data_assets.errors import ConfigError, DataError
from gleam_models.config import PAPER_PRESET, PhaseConfig, TrainConfig, TwoPhasePreset
from gleam_models.presets import preset_model, preset_train_config, train_preset
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import run_fingerprint
from test_gleamc_train import TINY, _train_cfg

MODS = ("uav", "street_map", "panorama", "ground")


def _with_preset(**phase2) -> TrainConfig:
    preset = TwoPhasePreset(phase1=PhaseConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=0, modalities=["panorama"]),
                            phase2=PhaseConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=0, **phase2))
    return _train_cfg().model_copy(update={"presets": {"paper": preset}})


def test_the_paper_preset_pretrains_on_panoramas_then_fuses_every_modality():
    cfg = TrainConfig()
    assert cfg.presets == {"paper": PAPER_PRESET}
    assert PAPER_PRESET.phase1.modalities == ["panorama"] and PAPER_PRESET.phase2.modalities is None
    swapped = preset_train_config(cfg, "paper")
    assert swapped.phase1 == PAPER_PRESET.phase1 and swapped.phase2 == PAPER_PRESET.phase2 and swapped.presets == {}
    assert swapped.seed == cfg.seed and swapped.precision == cfg.precision
    with pytest.raises(ConfigError, match="no preset 'vigor'.*configured: \\['paper'\\]"):
        preset_train_config(cfg, "vigor")


def test_presets_do_not_change_the_default_phases_run(tmp_path):
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"same bytes")
    cfg = TrainConfig()
    without = cfg.model_copy(update={"presets": {}})
    assert run_fingerprint(TINY, cfg, cfg.phase1, manifest, None) == run_fingerprint(TINY, without, without.phase1, manifest, None)


@pytest.mark.parametrize("name", ["Paper", "two phase", "phase/1", ""])
def test_preset_names_must_make_folder_and_run_names(name):
    with pytest.raises(ValueError, match="preset name"):
        TrainConfig.model_validate({"presets": {name: PAPER_PRESET.model_dump()}})


def test_train_preset_runs_both_phases_into_their_own_folders_and_resumes(tmp_path):
    dataset = make_synthetic_dataset(tmp_path / "d", n_locations=16, modalities=MODS, size=40, test_fraction=0.25)
    cfg, out = _with_preset(), tmp_path / "presets"
    seen: list[str] = []
    summaries = train_preset(TINY, cfg, "paper", dataset, tmp_path, out, tmp_path / "cache",
                             on_progress=lambda step, total, row: seen.append(row["run"]))
    assert summaries["phase1"]["modalities"] == ["panorama"] and summaries["phase1"]["pairs"] == 12
    assert summaries["phase2"]["modalities"] == list(MODS) and summaries["phase2"]["pairs"] == 48
    assert summaries["phase2"]["init_checkpoint"].endswith("presets/paper/phase1/model.safetensors")
    assert sorted(set(seen)) == ["paper_phase1", "paper_phase2"]
    first = {k: v.clone() for k, v in load_file(preset_model(out, "paper", "phase2")).items()}
    again = train_preset(TINY, cfg, "paper", dataset, tmp_path, out, tmp_path / "cache")  # finished: returns at once
    assert all(s.get("seconds") is None for s in again.values())
    assert all((first[k] == v).all() for k, v in load_file(preset_model(out, "paper", "phase2")).items())


def test_a_preset_error_names_the_preset(tmp_path):
    only_uav = make_synthetic_dataset(tmp_path / "d", n_locations=8, modalities=("uav",), size=32)
    with pytest.raises(DataError, match="train.presets.paper.phase1: modality 'panorama' has no train pairs"):
        train_preset(TINY, _with_preset(), "paper", only_uav, tmp_path, tmp_path / "out", tmp_path / "cache")
    with pytest.raises(ConfigError, match="train.presets.paper: .*no full optimizer step"):
        big = _with_preset().model_copy(update={"presets": {"paper": TwoPhasePreset(
            phase1=PhaseConfig(batch_size=64, modalities=["uav"]), phase2=PhaseConfig())}})
        train_preset(TINY, big, "paper", only_uav, tmp_path, tmp_path / "out2", tmp_path / "cache")
