"""Dagster code and data versions (identical outputs keep downstream fresh, changed inputs make it
stale) and training progress streamed through Pipes into the run's event log and metadata."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, PipesSubprocessClient, materialize
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from orchestration.definitions import all_assets, all_checks, defs
from orchestration.resources import GleamConfigResource
from orchestration.versions import VERSIONING, code_version
from pipeline_support import PROJECT_ROOT, tmp_project

DATA_ASSETS = ["embedded_dataset", "ingested_manifest", "validated_manifest"]
TINY_TRAINING = [  # as tests/test_dagster.py: one modality, 32 px, one epoch (18 steps, a row every 5)
    "train.phase1.epochs=1", "train.phase1.batch_size=8", "train.phase1.modalities=[street_map]",
    "train.progress=false",
    "model.input_size={satellite: [32, 32], uav: [32, 32], street_map: [32, 32], panorama: [32, 64], ground: [32, 32]}",
]


def _materialize(instance, params: Path, selection: list[str], overrides: list[str] = ()):
    resources = {"gleam": GleamConfigResource(params_path=str(params), overrides=list(overrides)),
                 "pipes_subprocess_client": PipesSubprocessClient()}
    result = materialize([*all_assets, *all_checks], selection=selection, instance=instance, resources=resources,
                         raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def _status(instance, name: str) -> StaleStatus:
    return get_stale_status_resolver(instance, all_assets).get_status(AssetKey(name))


def _data_version(instance, name: str) -> str:
    return get_stale_status_resolver(instance, all_assets).get_current_data_version(AssetKey(name)).value


def test_every_asset_has_a_code_version_from_its_sources_and_params(tmp_path):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        assert name in VERSIONING, f"{name}: no entry in orchestration.versions.VERSIONING"
        assert graph.get(key).code_version == code_version(name)
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    config["validate"]["max_bad_fraction"] = 0.5
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config))
    assert code_version("validated_manifest", params) != code_version("validated_manifest")
    assert code_version("ingested_manifest", params) == code_version("ingested_manifest"), "other sections only"


def test_identical_output_keeps_downstream_fresh_and_a_changed_input_makes_it_stale(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    with DagsterInstance.ephemeral() as instance:
        _materialize(instance, params, DATA_ASSETS)
        first = _data_version(instance, "embedded_dataset")
        assert _status(instance, "validated_manifest") == StaleStatus.FRESH
        _materialize(instance, params, ["embedded_dataset"])  # same content again (the stage is cached)
        assert _data_version(instance, "embedded_dataset") == first
        assert _status(instance, "ingested_manifest") == StaleStatus.FRESH
        assert _status(instance, "validated_manifest") == StaleStatus.FRESH
        image = sorted((tmp_path / "data" / "embedded" / "images" / "satellite").glob("*"))[0]
        image.write_bytes(image.read_bytes()[:300])  # an input changed under the same config
        _materialize(instance, params, ["embedded_dataset"])
        assert _data_version(instance, "embedded_dataset") != first
        assert _status(instance, "ingested_manifest") == StaleStatus.STALE


def _progress_lines(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)
            if e.dagster_event is None and ": step " in (e.user_message or "") and "ETA" in e.user_message]


@pytest.mark.slow
def test_pipes_training_streams_progress_and_keeps_its_versions(tmp_path, embedded_dir):
    """A real Pipes subprocess training: progress lines in the event log, the loss/lr picture and
    hyperparameters in its metadata, a data version from its weights; then re-validating with the
    same output leaves it fresh and a validated manifest that changed makes it stale."""
    params = tmp_project(tmp_path, embedded_dir)
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, params, [*DATA_ASSETS, "gleamc_phase1"], TINY_TRAINING)
        lines = _progress_lines(instance, result.run_id)
        assert len(lines) >= 2, lines
        assert lines[0].startswith("phase1: step 5/18") and "loss " in lines[0] and "lr " in lines[0]
        assert "images/s" in lines[-1] and "ETA ?" not in lines[-1]
        meta = result.asset_materializations_for_node("gleamc_phase1")[0].metadata
        assert "data:image/png;base64," in meta["training_curves"].value
        assert meta["batch_size"].value == 8 and meta["steps"].value == 18 and meta["lr"].value > 0
        trained = _data_version(instance, "gleamc_phase1")
        assert _status(instance, "gleamc_phase1") == StaleStatus.FRESH

        _materialize(instance, params, ["validated_manifest"])  # identical output
        assert _status(instance, "gleamc_phase1") == StaleStatus.FRESH, \
            get_stale_status_resolver(instance, all_assets).get_stale_causes(AssetKey("gleamc_phase1"))

        satellites = sorted((tmp_path / "data" / "embedded" / "images" / "satellite").glob("*"))
        for path in satellites[:2]:  # two bad images: quarantined, under the threshold
            path.write_bytes(path.read_bytes()[:200])
        _materialize(instance, params, ["validated_manifest"])
        assert _status(instance, "gleamc_phase1") == StaleStatus.STALE
        assert _data_version(instance, "gleamc_phase1") == trained


@pytest.mark.slow
def test_gleamx_finetune_streams_progress_of_both_runs(tmp_path):
    from gleamx_tiny import tiny_project
    from test_gleamx_cli import PARAMS, textwrap_params

    _, model_cfg, _ = tiny_project(tmp_path / "data", prefix="data/")
    (tmp_path / "params.yaml").write_text(PARAMS + textwrap_params(model_cfg))
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(instance, tmp_path / "params.yaml", ["gleamx_finetune"])
        lines = _progress_lines(instance, result.run_id)
        for run in ("gleamx", "gleamx_label_only"):
            assert [line.split(",")[0] for line in lines if line.startswith(f"{run}:")] == \
                [f"{run}: step 1/2", f"{run}: step 2/2"], lines
        meta = result.asset_materializations_for_node("gleamx_finetune")[0].metadata
        assert "data:image/png;base64," in meta["training_curves"].value
        assert meta["steps"].value == 2 and meta["batch_size"].value == 4
        assert len(_data_version(instance, "gleamx_finetune")) == 16
    shutil.rmtree(tmp_path / "models", ignore_errors=True)
