"""Dagster: the definitions load, the data assets materialize into a temp dir, the check blocks."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from orchestration.definitions import all_assets, all_checks, defs
from orchestration.resources import GleamConfigResource
from pipeline_support import PROJECT_ROOT, VENV_BIN, tmp_project

DATA_ASSETS = ["embedded_dataset", "ingested_manifest", "validated_manifest"]

# A training run small enough for a test: one modality, 32 px, one epoch.
TINY_TRAINING = [
    "train.phase1.epochs=1", "train.phase1.batch_size=8", "train.phase1.modalities=[street_map]",
    "train.progress=false",
    "model.input_size={satellite: [32, 32], uav: [32, 32], street_map: [32, 32], panorama: [32, 64], ground: [32, 32]}",
]


def _materialize(params: Path, selection: list[str], overrides: list[str] = ()):
    from dagster import PipesSubprocessClient

    resources = {"gleam": GleamConfigResource(params_path=str(params), overrides=list(overrides)),
                 "pipes_subprocess_client": PipesSubprocessClient()}
    with DagsterInstance.ephemeral() as instance:
        return materialize([*all_assets, *all_checks], selection=selection, instance=instance,
                           resources=resources, raise_on_error=False)




def test_definitions_wire_assets_check_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(DATA_ASSETS) <= keys
    checks = {c.name: c for c in defs.resolve_asset_graph().asset_check_keys}
    assert "gx_suite" in checks
    assert defs.resolve_job_def("gleam_pipeline") is not None
    assert graph.get(AssetKey("validated_manifest")).parent_keys == {AssetKey("ingested_manifest")}


def test_materialize_data_assets_into_a_temp_dir(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    result = _materialize(params, DATA_ASSETS)
    assert result.success
    assert (tmp_path / "data" / "validated" / "manifest.parquet").is_file()
    assert (tmp_path / "data" / "ingested" / "params.resolved.yaml").is_file()
    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["gx_suite"] and checks[0].passed
    meta = result.asset_materializations_for_node("validated_manifest")[0].metadata
    assert meta["bad_rows"].value == 0 and "uav" in meta["counts"].value
    ingest_meta = result.asset_materializations_for_node("ingested_manifest")[0].metadata
    assert ingest_meta["pairs"].value > 1000


def test_launchpad_overrides_reach_the_stage(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    result = _materialize(params, DATA_ASSETS, ["validate.thumbnails=1"])
    assert result.success
    resolved = (tmp_path / "data" / "validated" / "params.resolved.yaml").read_text()
    assert "validate.thumbnails=1" in resolved


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dagster_webserver_shows_assets_and_check(tmp_path):
    """The UI the README points at: start the real webserver and ask its GraphQL API."""
    port = _free_port()
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "orchestration" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.Popen([str(VENV_BIN / "dagster-webserver"), "-m", "orchestration.definitions",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    query = {"query": "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"}
    try:
        deadline = time.time() + 180
        nodes = None
        while time.time() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps(query).encode(),
                                             headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=10).read())
                nodes = body["data"]["assetNodes"]
                if nodes:
                    break
            except Exception:
                time.sleep(2)
        assert nodes, f"webserver did not serve the assets: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else 'timeout'}"
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert set(DATA_ASSETS) <= keys
        checks = {c["name"]: c["blocking"] for n in nodes for c in n["assetChecksOrError"].get("checks", [])}
        assert checks.get("gx_suite") is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_training_runs_as_a_pipes_subprocess(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    result = _materialize(params, [*DATA_ASSETS, "gleamc_phase1"], TINY_TRAINING)
    assert result.success
    meta = result.asset_materializations_for_node("gleamc_phase1")[0].metadata
    assert meta["steps"].value > 0 and "path_model" in meta
    assert (tmp_path / "models" / "gleamc_phase1" / "model.safetensors").is_file()
    assert (tmp_path / "models" / "gleamc_phase1" / "metrics.csv").is_file(), "DVC plots read the CSV mirror"


def test_failed_validation_check_blocks_downstream_assets(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    satellites = sorted((tmp_path / "data" / "embedded" / "images" / "satellite").glob("*"))
    for path in satellites[:40]:  # ~10% of the locations: far above validate.max_bad_fraction
        path.write_bytes(path.read_bytes()[:200])  # truncated
    result = _materialize(params, [*DATA_ASSETS, "gleamc_phase1"], TINY_TRAINING)
    assert not result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "gx_suite" and not check.passed
    assert result.asset_materializations_for_node("validated_manifest"), "the report is still materialized"
    assert not result.asset_materializations_for_node("gleamc_phase1"), "blocked by the failed check"
    quarantine = (tmp_path / "data" / "validated" / "quarantine.csv").read_text()
    assert satellites[0].name in quarantine


def test_onnx_parity_check_fails_when_fp32_misses_parity(tmp_path):
    from orchestration.assets.edge import onnx_parity

    params = tmp_project(tmp_path)
    onnx_dir = tmp_path / "models" / "onnx"
    onnx_dir.mkdir(parents=True)
    report = {"parity": {"128x128": {"fp32": {"cosine_min": 0.98}, "int8_cpu": {"cosine_min": 0.99}}},
              "passed": {"fp32": False, "int8_cpu": True}, "failures": ["fp32 128x128: cosine min 0.980000 < 0.9999"]}
    (onnx_dir / "parity.json").write_text(json.dumps(report))
    result = onnx_parity(gleam=GleamConfigResource(params_path=str(params)))
    assert not result.passed and "fp32" in result.metadata["failures"].value[0]
    report["passed"]["fp32"] = True
    (onnx_dir / "parity.json").write_text(json.dumps(report))
    assert onnx_parity(gleam=GleamConfigResource(params_path=str(params))).passed
