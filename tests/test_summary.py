"""The summary `gleam pipeline` ends with reads what the stages' writers put in metrics/."""
from __future__ import annotations

import json

from gleam_models.gleamx.evaluate import SystemRun, eval_set_info, evaluate_gleamx
from orchestration.config import load_project
from orchestration.summary import export_lines, gleamc_lines, gleamx_lines, summary_text
from pipeline_support import tmp_project


def test_gleamx_table_comes_from_the_evaluation_writer(tmp_path):
    records = [{"id": str(i), "modality": "uav", "language": "en", "label": label, "explanation": "x"}
               for i, label in enumerate(["match", "no_match", "match", "no_match"])]
    records_file, out = tmp_path / "test.jsonl", tmp_path / "gleamx.json"
    records_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    evaluate_gleamx(records, [SystemRun("cosine_threshold", "fp", None, verdicts=["match", "no_match", "no_match", "no_match"],
                                        explains=False)],
                    {}, out, eval_set_info(records_file, 4, records, None, 0))
    lines = gleamx_lines(json.loads(out.read_text()))
    assert lines[0].startswith("GLEAM-X verdicts on 4 ")
    assert lines[-1].startswith("| cosine_threshold | 75.0 |") and lines[-1].endswith("| - |")
    assert lines[1].endswith("| text contradicts verdict |")


def test_gleamc_and_export_tables_tolerate_missing_directions_and_name_failed_variants():
    gleamc = {"runs": {"phase2": {"splits": {"test": {"uav": {"query_to_satellite": {"R@1": 52.38}},
                                                      "ground": {"satellite_to_query": {"R@1": 30.0}}}}}}}
    assert "| phase2 | test | - | 52.4 |" in gleamc_lines(gleamc)
    export = {"passed": {"fp32": True, "int8_cpu": False}}
    timings = {"speed_ms": {"128x128": {"fp32": {"batch_1": {"p50_ms": 1.5}, "batch_16": {"p50_ms": 20.0}},
                                        "int8_cpu": {"batch_1": {"p50_ms": 1.0}, "batch_16": {"p50_ms": 11.0}}}}}
    assert export_lines(export, None) == []
    lines = export_lines(export, timings)
    assert "| 128x128 | fp32 | passed | 1.50 | 20.0 |" in lines
    assert "| 128x128 | int8_cpu | FAILED | 1.00 | 11.0 |" in lines


def test_summary_of_a_project_without_results_still_says_where_things_are(tmp_path):
    project = load_project(tmp_project(tmp_path))
    text = summary_text(project)
    assert "GLEAM-C" not in text and "http://127.0.0.1:3000" in text and str(project.models_dir) in text
