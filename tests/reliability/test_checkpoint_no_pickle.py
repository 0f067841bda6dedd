"""Item 1: a checkpoint never runs code. RNG state is safetensors + JSON; an old pickled state is refused."""
from __future__ import annotations

import base64
import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from data_assets.errors import DataError
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import train_phase
from rel_support import MODS, TINY, train_cfg

PROJECT = Path(__file__).resolve().parents[2]


class _Exploit:
    """Unpickling this creates `marker`: proof that a pickle from the checkpoint was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trips_as_safetensors_and_json(tmp_path):
    from gleam_models.checkpoint import restore_rng, save_rng

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    state = save_rng(tmp_path)
    expected = _draws()
    _draws(), _draws()
    restore_rng(json.loads(json.dumps(state)), tmp_path)  # what state.json holds is plain JSON
    assert _draws() == expected
    assert "pickle" not in json.dumps(state) and (tmp_path / "rng.safetensors").is_file()


def test_resume_refuses_a_pickled_rng_state_without_unpickling_it(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", n_locations=8, modalities=MODS[:2], size=32)
    out = tmp_path / "out"
    train_phase(TINY, train_cfg(epochs=1), "phase1", data, tmp_path, out, tmp_path / "cache")
    (out / "summary.json").unlink()  # as if killed after its last checkpoint
    state_file = next(out.rglob("state.json"))
    state = json.loads(state_file.read_text())
    marker = tmp_path / "pwned"
    state["rng"] = {"pickle_b64": base64.b64encode(pickle.dumps(_Exploit(marker))).decode()}
    state_file.write_text(json.dumps(state))
    with pytest.raises(DataError, match="never loaded"):
        train_phase(TINY, train_cfg(epochs=1), "phase1", data, tmp_path, out, tmp_path / "cache")
    assert not marker.exists(), "the checkpoint's pickle was executed"


UNSAFE = [
    (re.compile(r"\bpickle\.loads?\(|\bcPickle\b|\bdill\.|\bjoblib\.load\(|read_pickle\("), "unpickling"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\byaml\.load\((?![^)]*Loader=UniqueKeyLoader)"), "yaml.load without a safe loader"),
    (re.compile(r"yaml\.unsafe_load|yaml\.full_load|Loader=yaml\.(Full)?Loader"), "unsafe YAML loader"),
]


def test_no_code_path_unpickles_what_a_user_can_hand_in():
    found = []
    for path in sorted(PROJECT.glob("*/**/*.py")):
        rel = path.relative_to(PROJECT)
        if rel.parts[0] in {"tests", ".venv", ".venv-dvc", ".cache", "data", "models"} or rel.parts[0].startswith("."):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern, what in UNSAFE:
            if what.startswith("yaml.load") and "from ruamel.yaml import YAML" in text:
                continue  # ruamel's round-trip loader builds no Python objects
            found += [f"{rel}: {what}" for _ in pattern.finditer(text)]
        for call in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call.group(0):
                found.append(f"{rel}: torch.load without weights_only=True")
    assert not found, found
