"""Item 3: every consumer of the validated manifest refuses a failed or foreign validation."""
from __future__ import annotations

import pytest

from data_assets.errors import DataError
from orchestration import stages
from orchestration.config import load_project
from pipeline_support import gleam, tmp_project
from rel_support import fake_validated, write_report


def test_gate_accepts_only_a_passed_report_that_vouches_for_this_file(tmp_path):
    from data_assets.validation import require_valid_manifest

    manifest = fake_validated(tmp_path, passed=True)
    assert require_valid_manifest(manifest)["passed"] is True
    manifest.write_bytes(manifest.read_bytes() + b"\0")  # edited / replaced after validation
    with pytest.raises(DataError, match="not the one the validation report vouches for"):
        require_valid_manifest(manifest)
    write_report(manifest.parent, passed=True, manifest_sha=None)  # a report from before hashes
    with pytest.raises(DataError, match="records no manifest hash"):
        require_valid_manifest(manifest)
    (manifest.parent / "report.json").unlink()
    with pytest.raises(DataError, match="validation report not found"):
        require_valid_manifest(manifest)


@pytest.mark.parametrize("consumer", ["gleamc_phase1", "gleamc_phase2", "gleamc_presets", "gleamx_dataset",
                                      "gleamc_evaluation"])
@pytest.mark.parametrize("passed, hash_matches, message", [
    (False, True, "failed validation"), (True, False, "not the one the validation report vouches for")])
def test_stages_refuse_a_failed_or_foreign_manifest(tmp_path, consumer, passed, hash_matches, message):
    project = load_project(tmp_project(tmp_path))
    fake_validated(tmp_path, passed=passed, hash_matches=hash_matches)
    with pytest.raises(DataError, match=message):
        stages.STAGES[consumer](project)
    assert not project.models_dir.exists() and not project.gleamx_dir.exists()


def test_cli_says_it_in_one_line(tmp_path):
    tmp_project(tmp_path)
    fake_validated(tmp_path, passed=False)
    result = gleam("gleamc-phase1", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "failed validation" in lines[0] and "report.json" in lines[0], result.stderr
