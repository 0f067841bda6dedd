"""GLEAM-C assets. Training and evaluation run as subprocesses through Dagster Pipes, so the Dagster
process never holds the model or a GPU, and launch.nproc_per_node scales the same asset to torchrun."""
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MaterializeResult,
                     PipesSubprocessClient, asset, asset_check)

from orchestration.assets.data import validated_manifest
from orchestration.assets.pipes import run_cli_stage
from orchestration.resources import GleamConfigResource
from orchestration.versions import code_version

GROUP = "gleamc"


@asset(group_name=GROUP, deps=[validated_manifest], code_version=code_version("gleamc_phase1"),
       description="GLEAM-C phase 1: one shared encoder aligned to satellite with balanced random batches.")
def gleamc_phase1(context: AssetExecutionContext, gleam: GleamConfigResource,
                  pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-phase1")


@asset(group_name=GROUP, deps=[gleamc_phase1], code_version=code_version("gleamc_phase2"),
       description="GLEAM-C phase 2: from phase 1, similarity-sampled hard negatives at a lower lr.")
def gleamc_phase2(context: AssetExecutionContext, gleam: GleamConfigResource,
                  pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-phase2")


@asset(group_name=GROUP, deps=[validated_manifest], code_version=code_version("gleamc_presets"),
       description="Other readings of the two phases (train.presets; the paper's: panoramas, then every modality).")
def gleamc_presets(context: AssetExecutionContext, gleam: GleamConfigResource,
                   pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-presets")


@asset(group_name=GROUP, deps=[gleamc_phase1, gleamc_phase2, gleamc_presets], code_version=code_version("gleamc_evaluation"),
       description="Retrieval metrics (R@K, R@1%, AP, hit rate) of frozen ImageNet, both phases and each preset.")
def gleamc_evaluation(context: AssetExecutionContext, gleam: GleamConfigResource,
                      pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-evaluation")


@asset_check(asset=gleamc_phase2, blocking=True, name="finite_weights_and_shape",
             description="The phase-2 model's tensors are finite and it embeds to unit vectors of its stated size.")
def finite_weights_and_shape(gleam: GleamConfigResource) -> AssetCheckResult:
    from gleam_models.encoder import model_problems

    project = gleam.project()
    problems = model_problems(project.cfg.model, project.gleamc_dir("phase2") / "model.safetensors")
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.ERROR,
                            metadata={"problems": problems or ["none"]})
