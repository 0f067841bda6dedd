"""GLEAM-C assets. Training and evaluation run as subprocesses through Dagster Pipes, so the Dagster
process never holds the model or a GPU, and launch.nproc_per_node scales the same asset to torchrun."""
import sys

from dagster import AssetExecutionContext, MaterializeResult, PipesSubprocessClient, asset

from orchestration.assets.data import validated_manifest
from orchestration.resources import GleamConfigResource

GROUP = "gleamc"


def run_cli_stage(context: AssetExecutionContext, gleam: GleamConfigResource, pipes: PipesSubprocessClient,
                  command: str) -> MaterializeResult:
    project = gleam.project()
    cmd = [sys.executable, "-m", "orchestration.cli", command, "--params", str(project.params_path),
           *[arg for o in project.overrides for arg in ("--set", o)]]
    return pipes.run(command=cmd, context=context, cwd=str(project.root)).get_materialize_result()


@asset(group_name=GROUP, deps=[validated_manifest],
       description="GLEAM-C phase 1: one shared encoder aligned to satellite with balanced random batches.")
def gleamc_phase1(context: AssetExecutionContext, gleam: GleamConfigResource,
                  pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-phase1")


@asset(group_name=GROUP, deps=[gleamc_phase1],
       description="GLEAM-C phase 2: from phase 1, similarity-sampled hard negatives at a lower lr.")
def gleamc_phase2(context: AssetExecutionContext, gleam: GleamConfigResource,
                  pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-phase2")


@asset(group_name=GROUP, deps=[gleamc_phase1, gleamc_phase2],
       description="Retrieval metrics (R@K, R@1%, AP, hit rate) of frozen ImageNet, phase 1 and phase 2.")
def gleamc_evaluation(context: AssetExecutionContext, gleam: GleamConfigResource,
                      pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamc-evaluation")
