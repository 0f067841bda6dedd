"""`gleam --help` / `--version` stay instant: the CLI module imports no heavy library at load time.

Checked by what is imported, not by a timer (speed figures live in benchmarks/): torch, Dagster,
Great Expectations, pandas and transformers take seconds and belong inside the commands.
"""
from __future__ import annotations

import subprocess
import sys

from pipeline_support import VENV_BIN

HEAVY = ["torch", "dagster", "great_expectations", "pandas", "transformers", "faiss", "timm", "onnxruntime"]


def test_cli_module_imports_nothing_heavy():
    code = ("import sys; import orchestration.cli; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing orchestration.cli loads {loaded}: move those imports inside the commands"


def test_version_and_stage_list():
    version = subprocess.run([str(VENV_BIN / "gleam"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("gleam ")
    listed = subprocess.run([str(VENV_BIN / "gleam"), "stages"], capture_output=True, text=True).stdout
    for stage in ["embedded_dataset", "validated_manifest", "gleamx_records", "gleamx_dataset", "gleamc_evaluation"]:
        assert stage in listed


def test_config_show_keeps_comments_and_marks_overrides():
    from pipeline_support import PROJECT_ROOT

    shown = subprocess.run([str(VENV_BIN / "gleam"), "config", "show", "--set", "train.phase1.lr=0.000123"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    first_comment = next(line for line in (PROJECT_ROOT / "params.yaml").read_text().splitlines() if line.startswith("#"))
    assert first_comment in shown.stdout  # params.yaml's own comments survive
    [lr_line] = [line for line in shown.stdout.splitlines() if "0.000123" in line]
    assert "<- --set (params.yaml:" in lr_line
    assert shown.stdout.count("<- --set") == 1


def test_config_show_drops_the_entries_an_override_removed():
    from pipeline_support import PROJECT_ROOT

    shown = subprocess.run([str(VENV_BIN / "gleam"), "config", "show", "--set", "train.presets={}"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.strip().startswith("presets:")]
    assert line.split("#")[0].strip() == "presets: {}" and "<- --set" in line
    assert not any(row.strip().startswith("paper:") for row in shown.stdout.splitlines())  # not shown as if still on


def test_a_wrong_model_path_is_checked_before_torch_loads():
    """`gleam explain` / `gleamx-merge` check --model with this module first: a typo is told at once."""
    code = ("import sys; import gleam_models.gleamx.model_dir; "
            f"print(','.join(m for m in {HEAVY + ['peft']!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing gleam_models.gleamx.model_dir loads {loaded}"
