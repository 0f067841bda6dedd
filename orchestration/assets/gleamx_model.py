"""GLEAM-X model assets: LoRA fine-tuning of the explainer, then its evaluation against baselines.
Both run as Pipes subprocesses of the `gleam` CLI, like GLEAM-C training."""
from dagster import AssetExecutionContext, MaterializeResult, PipesSubprocessClient, asset

from orchestration.assets.gleamc import gleamc_evaluation, gleamc_phase2
from orchestration.assets.gleamx import gleamx_dataset
from orchestration.assets.pipes import run_cli_stage
from orchestration.resources import GleamConfigResource
from orchestration.versions import code_version

GROUP = "gleamx_model"


@asset(group_name=GROUP, deps=[gleamx_dataset, gleamc_phase2, gleamc_evaluation], code_version=code_version("gleamx_finetune"),
       description="GLEAM-X explainer (GLEAM-C tower + projector + LoRA LM) and its label-only ablation.")
def gleamx_finetune(context: AssetExecutionContext, gleam: GleamConfigResource,
                    pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamx-finetune")


@asset(group_name=GROUP, deps=[gleamx_finetune], code_version=code_version("gleamx_evaluation"),
       description="Verdict accuracy, explanation similarity and grounded-fact accuracy against three baselines.")
def gleamx_evaluation(context: AssetExecutionContext, gleam: GleamConfigResource,
                      pipes_subprocess_client: PipesSubprocessClient) -> MaterializeResult:
    return run_cli_stage(context, gleam, pipes_subprocess_client, "gleamx-evaluation")
