"""DVC experiments on the real dvc.yaml: `dvc exp run -S key=value` re-runs only the stages that
depend on the changed param, and `dvc exp show` compares the runs, readable at 120 columns.

Runs the cheap front of the pipeline (embedded dataset -> GLEAM-X data, GLEAM-X data made small)
in a fresh git copy of the project; the committed metrics/*.json stand in for the later stages.
"""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from pipeline_support import dvc, dvc_repo, git

FRONT = ["embedded_dataset", "ingested_manifest", "validated_manifest", "gleamx_dataset"]
# GLEAM-X data from a few pairs per cell and no frozen encoder: seconds instead of a minute.
CHEAP_GLEAMX = {"  max_pairs_per_modality_per_split: null": "  max_pairs_per_modality_per_split: 3",
                "  negative_mix: {geo: 0.4, visual: 0.3, random: 0.3}": "  negative_mix: {geo: 0.5, visual: 0, random: 0.5}"}
METRIC = "uav_R@1_cross"  # from the committed metrics/headline/gleamc.json (DVC's metrics: orchestration/headline.py)


@pytest.mark.slow
def test_exp_run_reruns_only_dependent_stages_and_exp_show_compares(tmp_path):
    repo = dvc_repo(tmp_path / "repo")
    params = repo / "params.yaml"
    text = params.read_text()
    for old, new in CHEAP_GLEAMX.items():
        assert old in text, f"params.yaml changed: {old!r} not found"
        text = text.replace(old, new)
    params.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "project")

    first = dvc(repo, "repro", "gleamx_dataset")
    for stage in FRONT:
        assert f"Running stage '{stage}'" in first, first
    git(repo, "commit", "-q", "-am", "baseline: the front stages reproduced")  # dvc.lock

    # validate.max_bad_fraction is a param of validated_manifest only; its report (an input of
    # gleamx_dataset) records the threshold, so GLEAM-X data re-runs too; nothing upstream does
    exp = dvc(repo, "exp", "run", "-n", "looser-gate", "-S", "validate.max_bad_fraction=0.05", "gleamx_dataset")
    for stage in ["embedded_dataset", "ingested_manifest"]:
        assert f"Stage '{stage}' didn't change, skipping" in exp, exp
        assert f"Running stage '{stage}'" not in exp, exp
    for stage in ["validated_manifest", "gleamx_dataset"]:
        assert f"Running stage '{stage}'" in exp, exp
    assert "Ran experiment(s): looser-gate" in exp, exp
    assert json.loads((repo / "data" / "validated" / "report.json").read_text())["threshold"] == 0.05

    table = list(csv.DictReader(io.StringIO(dvc(repo, "exp", "show", "--no-pager", "--csv"))))
    baseline = next(r for r in table if r["typ"] == "baseline" and r["rev"] != "workspace")
    experiment = next(r for r in table if r["Experiment"] == "looser-gate")
    assert (baseline["validate.max_bad_fraction"], experiment["validate.max_bad_fraction"]) == ("0.02", "0.05")
    committed = json.loads((repo / "metrics" / "gleamc.json").read_text())
    expected = committed["runs"]["phase2"]["splits"]["test_cross"]["uav"]["query_to_satellite"]["R@1"]
    assert float(baseline[METRIC]) == float(experiment[METRIC]) == pytest.approx(expected, abs=1e-3)

    # The full table has every param and metric (over a thousand columns): at 120 columns DVC
    # draws only ellipses. --only-changed (the README's command) shows what differs, whole.
    shown = dvc(repo, "exp", "show", "--no-pager", "--only-changed", env={"COLUMNS": "120"})
    lines = [line.rstrip() for line in shown.splitlines() if line.strip()]
    assert all(len(line) <= 120 for line in lines), shown
    assert "…" not in shown, shown
    assert "validate.max_bad_fraction" in shown, shown
    assert re.search(r"looser-gate.*0\.05", shown), shown
    assert re.search(rf"{re.escape(baseline['rev'])}.*0\.02", shown), shown  # the branch name (master or main)

    # DVC's metrics are the headline files: one row per evaluation, whole at 120 columns
    metrics = dvc(repo, "metrics", "show", env={"COLUMNS": "120"})
    assert all(len(line.rstrip()) <= 120 for line in metrics.splitlines()), metrics
    assert "…" not in metrics and METRIC in metrics and "metrics/headline/gleamx.json" in metrics, metrics
