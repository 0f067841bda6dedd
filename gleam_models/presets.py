"""Other readings of GLEAM-C's two phases, trained beside the default one (`train.presets`).

A preset is a (phase1, phase2) pair of PhaseConfig blocks. `train_preset` runs both through the
same trainer as the default phases (checkpoints, resume after a kill, DDP, run fingerprints):
phase 1 from `model.weights`, phase 2 from the preset's own phase 1, into out_dir/<name>/phase1
and out_dir/<name>/phase2. The shipped preset, `paper`, is the paper's reading (config.PAPER_PRESET):
panoramas first, then every modality.

    from gleam_models.presets import train_preset
    train_preset(model_cfg, train_cfg, "paper", "data/validated/manifest.parquet", ".",
                 "models/gleamc_presets", ".cache/images")
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from data_assets.errors import ConfigError, DataError
from gleam_models.config import EncoderConfig, TrainConfig
from gleam_models.train import PHASES, train_phase


def preset_train_config(train_cfg: TrainConfig, name: str) -> TrainConfig:
    """train_cfg with the preset's phases in place of the default ones (everything else shared)."""
    if name not in train_cfg.presets:
        raise ConfigError(f"train.presets has no preset {name!r} (configured: {sorted(train_cfg.presets) or 'none'})")
    preset = train_cfg.presets[name]
    return train_cfg.model_copy(update={"phase1": preset.phase1, "phase2": preset.phase2, "presets": {}})


def preset_model(out_dir: Path, name: str, phase: str) -> Path:
    return Path(out_dir) / name / phase / "model.safetensors"


def train_preset(model_cfg: EncoderConfig, train_cfg: TrainConfig, name: str, manifest_path: Path, base_dir: Path,
                 out_dir: Path, cache_dir: Path, resume: bool = True,
                 on_progress: Callable[[int, int, dict], None] | None = None) -> dict[str, dict]:
    """Train the preset's two phases; {phase: train_phase summary}. A finished phase with the same
    config and data returns at once, so a re-run after a kill resumes where it stopped."""
    cfg = preset_train_config(train_cfg, name)
    summaries = {}
    for phase in PHASES:
        init = preset_model(out_dir, name, "phase1") if phase == "phase2" else None
        progress = None if on_progress is None else _tagged(on_progress, f"{name}_{phase}")
        try:
            summaries[phase] = train_phase(model_cfg, cfg, phase, manifest_path, base_dir,
                                           preset_model(out_dir, name, phase).parent, cache_dir,
                                           init_checkpoint=init, resume=resume, on_progress=progress)
        except ConfigError as e:  # the trainer names train.<phase>: say which preset's block it was
            raise ConfigError(f"train.presets.{name}: {e}") from e
        except DataError as e:
            raise DataError(e.path, f"train.presets.{name}.{phase}: {e.reason}") from e
    return summaries


def _tagged(on_progress: Callable[[int, int, dict], None], run: str) -> Callable[[int, int, dict], None]:
    return lambda step, total, row: on_progress(step, total, {**row, "run": run})
