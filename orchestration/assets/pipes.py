"""Run a stage's CLI command as a Dagster Pipes subprocess: the Dagster process never holds a model
or a GPU, the stage reports its metadata back, and launch.nproc_per_node can scale it to torchrun."""
import sys

from dagster import AssetExecutionContext, MaterializeResult, PipesSubprocessClient

from orchestration.resources import GleamConfigResource


def run_cli_stage(context: AssetExecutionContext, gleam: GleamConfigResource, pipes: PipesSubprocessClient,
                  command: str) -> MaterializeResult:
    project = gleam.project()
    cmd = [sys.executable, "-m", "orchestration.cli", command, "--params", str(project.params_path),
           *[arg for o in project.overrides for arg in ("--set", o)]]
    return pipes.run(command=cmd, context=context, cwd=str(project.root)).get_materialize_result()
