"""What every stage module builds on: the StageResult a stage returns and the @stage decorator
(writer locks, stale-temporary cleanup, the validation gate).

Kept apart from orchestration.stages (the registry), so that a stage module (stages_edge,
stages_gleamx) can be imported on its own without an import cycle through the registry.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from data_assets.errors import DataError

if TYPE_CHECKING:  # the config imports every library's settings (pandas, faiss): seconds for `gleam --help`
    from orchestration.config import Project


@dataclass
class StageResult:
    name: str
    outputs: dict[str, Path]  # what the stage wrote (the same paths dvc.yaml declares)
    summary: dict[str, Any]  # JSON-able facts for the CLI table and Dagster metadata
    passed: bool = True  # False: the stage ran but its quality gate failed
    images: dict[str, Path] = field(default_factory=dict)  # pictures for Dagster metadata


def _lock_wait_s(project: Project) -> float:
    return project.cfg.locks.wait_s


@contextlib.contextmanager
def writing(project: Project, outputs: list[Path], wait_s: float | None = None, also_clean: list[Path] = ()):
    """Hold the writer lock of every output (one writer at a time; another gleam process fails
    fast or waits, per locks.wait_s) and drop the temporaries a killed writer left in them (and in
    `also_clean`: outputs in git-tracked folders, which get no lock file of their own, and the
    stage's files beside its outputs, see `side_files`)."""
    from data_assets.io import clean_stale_tree
    from data_assets.locks import output_lock

    if os.environ.get("RANK", "0") != "0":  # DDP: rank 0 holds the lock for the whole job
        yield
        return
    with contextlib.ExitStack() as stack:
        for out in sorted(set(outputs)):  # one order everywhere: two stages never deadlock
            stack.enter_context(output_lock(out, _lock_wait_s(project) if wait_s is None else wait_s))
        for out in [*outputs, *also_clean]:
            clean_stale_tree(out)
        yield


def side_files(project: Project, headline: str | None = None, timings: str | None = None) -> list[Path]:
    """The files a stage writes beside its declared outputs: its headline (metrics/headline/) and its
    timings (reports/timings/). They belong to the stage's `also_clean`: a kill while one is written
    leaves its temporary there, and no output folder's cleanup reaches it (CI saw
    reports/timings/.gleamx_evaluation.json.*.tmp outlive the re-run)."""
    from orchestration.headline import headline_path
    from orchestration.timings import timings_path

    return [*([headline_path(project, headline)] if headline else []),
            *([timings_path(project, timings)] if timings else [])]


def stage(outputs: Callable[..., list[Path]], validated_input: bool = False,
          also_clean: Callable[..., list[Path]] = lambda *a, **k: []):
    """Decorate a stage function: refuse a failed/foreign validated manifest (validated_input) and
    hold its outputs' writer locks while it runs. `outputs(project, *args, **kwargs)` names them."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(project: Project, *args, **kwargs) -> StageResult:
            if validated_input:
                from data_assets.validation import require_valid_manifest

                require_valid_manifest(project.validated_manifest)
            with writing(project, outputs(project, *args, **kwargs), also_clean=also_clean(project, *args, **kwargs)):
                return fn(project, *args, **kwargs)
        return run
    return wrap


def require_passed(result: StageResult) -> StageResult:
    """CLI/DVC gate: a failed quality gate is an error (Dagster uses a blocking check instead)."""
    if not result.passed:
        report = result.outputs.get("report", "")
        raise DataError(report, f"stage {result.name} failed its checks: {result.summary.get('failures') or result.summary}")
    return result
