"""Edge deployment assets: the georeferenced gallery, localisation error, ONNX / quantised models and
the Jetson bundle. A model that fails parity never reaches the bundle (blocking check)."""
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MaterializeResult,
                     PipesSubprocessClient, asset, asset_check)

from orchestration.assets.data import validated_manifest
from orchestration.assets.gleamc import gleamc_phase2
from orchestration.assets.pipes import run_cli_stage
from orchestration.resources import GleamConfigResource
from orchestration.versions import code_version

GROUP = "edge"


@asset(group_name=GROUP, deps=[gleamc_phase2], code_version=code_version("gallery"),
       description="Satellite gallery of the embedded area: tiles by ground size, their lat/lon, embeddings, FAISS index.")
def gallery(context: AssetExecutionContext, gleam: GleamConfigResource,
            pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gallery")


@asset(group_name=GROUP, deps=[gallery, validated_manifest], code_version=code_version("localization"),
       description="Localisation error in metres of the embedded test frames against the gallery.")
def localization(context: AssetExecutionContext, gleam: GleamConfigResource,
                 pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "localization")


@asset(group_name=GROUP, deps=[gleamc_phase2, validated_manifest], code_version=code_version("onnx_export"),
       description="ONNX fp32 / fp16 / INT8 encoders with torch parity and retrieval parity; TensorRT where it imports.")
def onnx_export(context: AssetExecutionContext, gleam: GleamConfigResource,
                pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "onnx-export")


@asset_check(asset=onnx_export, blocking=True, name="onnx_parity",
             description="ONNX Runtime matches torch (cosine, max abs diff) and keeps R@1 on the embedded test split.")
def onnx_parity(gleam: GleamConfigResource) -> AssetCheckResult:
    from export.models import read_export_report
    from orchestration.stages_edge import onnx_dir

    report = read_export_report(onnx_dir(gleam.project()))
    worst = {f"{size}/{variant}": fig["cosine_min"] for size, by in report["parity"].items() for variant, fig in by.items()}
    # fp32 gates the bundle; a quantised variant that misses its bounds is left out of it (and named here)
    return AssetCheckResult(passed=bool(report["passed"].get("fp32")), severity=AssetCheckSeverity.ERROR,
                            metadata={"cosine_min": worst, "variants_passed": report["passed"],
                                      "failures": report["failures"] or ["none"]})


@asset(group_name=GROUP, deps=[onnx_export, gallery], code_version=code_version("jetson_bundle"),
       description="Jetson bundle: ONNX models, calibration, gallery, build_engine.sh, standalone runner, manifest.")
def jetson_bundle(context: AssetExecutionContext, gleam: GleamConfigResource,
                  pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "jetson-bundle")


@asset_check(asset=jetson_bundle, blocking=True, name="bundle_integrity",
             description="Every file of the bundle is present with the sha256 its manifest lists.")
def bundle_integrity(gleam: GleamConfigResource) -> AssetCheckResult:
    from export.bundle import verify_bundle
    from orchestration.stages_edge import bundle_dir

    bad = verify_bundle(bundle_dir(gleam.project()))
    return AssetCheckResult(passed=not bad, severity=AssetCheckSeverity.ERROR,
                            metadata={"bad_files": bad or ["none"]})
