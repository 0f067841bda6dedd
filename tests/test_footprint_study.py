"""benchmarks/footprint_study.py: footprints scale every metre key, each footprint lives in its own
work dir (never the project's data/ models/), and the study merges seeds and gains correctly."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.config import load_project

from pipeline_support import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("footprint_study")


def test_footprint_scales_tile_stride_and_block_of_both_families(study, project_root):
    base = load_project(project_root / "params.yaml")
    fp = study.footprint_overrides(base, 1.5)
    emb = base.cfg.embedded
    assert fp["embedded.neon_tile_m"] == emb.neon_tile_m * 1.5
    assert fp["embedded.spacenet_stride_m"] == emb.spacenet_stride_m * 1.5
    assert fp["embedded.neon_block_m"] == emb.neon_block_m * 1.5
    assert len(fp) == 6
    assert study.footprint_name(fp) == f"neon{emb.neon_tile_m * 1.5:g}m_spacenet{emb.spacenet_tile_m * 1.5:g}m"


def test_every_output_of_a_footprint_lies_in_its_work_dir(study, project_root, tmp_path):
    args = study.parse_args(["--params", str(project_root / "params.yaml"), "--set", "train.phase1.epochs=1"])
    base = load_project(args.params)
    fp_dir = tmp_path / "fp"
    project = study.footprint_project(args, study.footprint_overrides(base, 2.0), fp_dir, seed=3)
    for path in (project.data_dir, project.models_dir, project.metrics_dir, project.reports_dir, project.cache_dir,
                 project.embedded_dir, project.validated_manifest):
        assert fp_dir in path.parents, path
    [source] = project.cfg.ingest.sources  # only the embedded dataset built here
    assert Path(source.root) == project.embedded_dir
    assert project.cfg.embedded.neon_tile_m == 2 * base.cfg.embedded.neon_tile_m
    assert project.cfg.train.seed == 3 and project.cfg.train.phase1.epochs == 1


def entry(frozen_r1: float, tuned_r1: float, config: str = "c") -> dict:
    def run(r1):
        cell = {"R@1": r1, "AP": r1 + 10, "n_queries": 6, "n_gallery": 4}
        return {"weights": "w", "splits": {"val": {"uav": cell, "ground": {**cell, "R@1": 0.0}}}}
    return {"config": config, "wall_s": 1.0,
            "runs": {"imagenet_frozen": run(frozen_r1), "phase1": run((frozen_r1 + tuned_r1) / 2),
                     "phase2": run(tuned_r1)}}


def test_seeds_merge_gain_is_phase2_minus_frozen_and_a_new_manifest_starts_again(study):
    doc = {"footprints": {}}
    dataset = {"config": "k", "manifest_sha256": "a", "seconds": {"embedded_dataset": 9.0}}
    study.add_entry(doc, "fp", {"embedded.neon_tile_m": 64.0}, 2.0, dataset, 1, entry(40.0, 60.0), [])
    study.add_entry(doc, "fp", {"embedded.neon_tile_m": 64.0}, 2.0, {**dataset, "seconds": {}}, 0, entry(40.0, 50.0), [])
    fp = doc["footprints"]["fp"]
    assert list(fp["seeds"]) == ["0", "1"]
    assert fp["dataset"]["seconds"] == {"embedded_dataset": 9.0}  # the first build's timings stay
    gain = fp["summary"]["gain_phase2_vs_frozen"]["val"]
    assert gain["uav"]["R@1"][0] == 15.0 and gain["uav"]["R@1"][2] == 2  # mean of 10 and 20 over 2 seeds
    assert gain["ground"]["R@1"][0] == 0.0
    assert gain["mean"]["R@1"][0] == 7.5  # the modalities' mean, then over seeds
    assert fp["summary"]["imagenet_frozen"]["val"]["uav"]["AP"][0] == 50.0
    assert fp["gallery"] == {"val": 4} and fp["queries"] == {"val": {"uav": 6, "ground": 6}}

    study.add_entry(doc, "fp", {"embedded.neon_tile_m": 64.0}, 2.0, {"config": "k", "manifest_sha256": "b"}, 1, entry(1.0, 2.0), [])
    assert list(doc["footprints"]["fp"]["seeds"]) == ["1"]  # seed 0 was measured on another dataset


def test_a_pair_counts_as_measured_only_for_the_same_train_and_dataset_config(study, project_root, tmp_path):
    def project(*overrides):
        args = study.parse_args(["--params", str(project_root / "params.yaml"), *overrides])
        footprint = study.footprint_overrides(load_project(args.params), 1.5)
        return study.footprint_project(args, footprint, tmp_path / "fp", seed=0)

    done = project()
    doc = {"footprints": {}}
    dataset = {"config": study.dataset_key(done), "manifest_sha256": "a"}
    study.add_entry(doc, "fp", {}, 1.5, dataset, 0, {**entry(1.0, 2.0), "config": study.config_key(done)}, [])
    assert study.measured(doc, "fp", 0, project())
    assert not study.measured(doc, "fp", 1, project())
    assert not study.measured(doc, "fp", 0, project("--set", "train.phase2.lr=0.1"))
    assert not study.measured(doc, "fp", 0, project("--set", "embedded.seed=1"))  # another dataset, same footprint
