"""Item 11: a seed gives the same training result on a loaded machine as on a quiet one.

What does change the bits is the number of CPU threads (torch/OpenMP split reductions by thread):
the summary records it, so two figures are only compared at the same `threads`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from gleam_models.synthetic import make_synthetic_dataset

PROJECT = Path(__file__).resolve().parents[2]
TRAIN = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    sys.path.insert(0, {here!r})
    torch.set_num_threads(int(sys.argv[1]))
    from gleam_models.train import train_phase
    from rel_support import TINY, train_cfg
    data, out = Path(sys.argv[2]), Path(sys.argv[3])
    s = train_phase(TINY, train_cfg(epochs=2), "phase1", data, data.parent, out, out.parent / (out.name + "-cache"))
    print(json.dumps(s))
""").format(here=str(Path(__file__).parent))


def _train(threads: int, data: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", TRAIN, str(threads), str(data), str(out)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _max_diff(a: Path, b: Path) -> float:
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert ta.keys() == tb.keys()
    return max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta)


@pytest.mark.slow
def test_same_seed_same_weights_quiet_or_loaded_and_threads_are_recorded(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", n_locations=8, modalities=("uav", "street_map"), size=32)
    quiet = _train(2, data, tmp_path / "quiet")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = _train(2, data, tmp_path / "loaded")
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert _max_diff(tmp_path / "quiet", tmp_path / "loaded") == 0.0
    assert loaded["final_loss"] == quiet["final_loss"] and loaded["threads"] == quiet["threads"] == 2
    single = _train(1, data, tmp_path / "single")
    assert single["threads"] == 1  # the figure says what it depends on
    # different thread counts differ only by float reduction order (about 1e-5 after 12 steps here);
    # over a full training this compounds, which is why figures are compared at the same thread count
    assert _max_diff(tmp_path / "quiet", tmp_path / "single") < 1e-3
    assert single["final_loss"] == pytest.approx(quiet["final_loss"], rel=1e-4)
