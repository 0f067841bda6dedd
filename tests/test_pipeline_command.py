"""`gleam pipeline` as a user runs it: each data stage prints one line as it finishes (what it
wrote, counts, where), and a selection that reaches the partitioned GLEAM-X slices runs them as
their own runs (it used to fail: a partitioned asset cannot share a run with unpartitioned ones)."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.summary import stage_line
from pipeline_support import gleam, tmp_project

# Cheap GLEAM-X data: a few positives per cell, no frozen encoder for visual negatives.
CHEAP_GLEAMX = ["gleamx.max_pairs_per_modality_per_split=3", "gleamx.negative_mix={geo: 0.5, visual: 0, random: 0.5}",
                "gleamx.progress=false"]


@pytest.mark.slow
def test_pipeline_prints_a_line_per_data_stage(tmp_path, embedded_dir):
    params = tmp_project(tmp_path, embedded_dir)
    overrides = [arg for o in CHEAP_GLEAMX for arg in ("--set", o)]
    result = gleam("pipeline", "--params", str(params), "--select", "*gleamx_dataset", *overrides, cwd=tmp_path)
    err = result.stderr + result.stdout
    assert result.returncode == 0, err
    lines = [line for line in result.stderr.splitlines() if ": " in line and not line.startswith(" ")]
    expected = [
        ("embedded_dataset: 300 locations (cached) -> data/embedded", None),
        ("ingested_manifest: 1,410 rows (1,410 pairs, 0 gallery-only), 0 missing files", "data/ingested/manifest.parquet"),
        ("validated_manifest: 1,410 of 1,410 rows kept, 0 quarantined;", "data/validated/manifest.parquet"),
        ("gleamx_records (uav|0): ", "data/gleamx"),
        ("gleamx_dataset: ", "data/gleamx"),
    ]
    at = 0
    for start, ending in expected:  # in pipeline order, each as its stage finished
        found = next((i for i, line in enumerate(lines[at:], at) if line.startswith(start)), None)
        assert found is not None, f"no line starting {start!r} after line {at} in:\n{err}"
        assert ending is None or lines[found].endswith(ending), lines[found]
        at = found + 1
    validated = next(line for line in lines if line.startswith("validated_manifest:"))
    assert "expectations passed" in validated and " 0 of " not in validated
    slices = [line for line in lines if line.startswith("gleamx_records (")]
    assert len(slices) == 8, "4 modalities x 2 shards, one line each"  # params.yaml: gleamx.num_shards 2
    merged = next(line for line in lines if line.startswith("gleamx_dataset:"))
    total = sum(int(line.split(": ")[1].split(" records")[0].replace(",", "")) for line in slices)
    assert merged.startswith(f"gleamx_dataset: {total:,} records"), (merged, total)
    assert (tmp_path / "data" / "gleamx" / "train.jsonl").is_file()


def test_failed_validation_line_says_so_and_pipes_stages_print_their_own():
    meta = {"passed": "False", "rows_in": 100, "rows_out": 80, "bad_rows": 20, "bad_fraction": 0.2, "threshold": 0.02,
            "expectations": 45, "expectations_failed": 2, "path_manifest": "/p/data/validated/manifest.parquet"}
    line = stage_line("validated_manifest", None, meta, Path("/p"))
    assert line == ("validated_manifest: FAILED (80 of 100 rows kept, 20 quarantined; 43 of 45 expectations passed; "
                    "bad fraction 0.2 > 0.02) -> data/validated/manifest.parquet")
    assert stage_line("gleamc_phase1", None, {"steps": 3}, Path("/p")) is None  # its CLI table, from the subprocess
