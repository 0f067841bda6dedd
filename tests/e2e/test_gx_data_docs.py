"""The validation stage builds Great Expectations' own Data Docs, named by the run id and time."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from data_assets.validation import load_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the validation test helpers
from test_validation import cfg, make_dataset, run  # noqa: E402


def test_gx_data_docs_name_the_run_and_each_suite(tmp_path):
    _, df = make_dataset(tmp_path)
    df.loc[4, "lat"] = 120.0  # one bad row: the rows suite fails one expectation
    result = run(tmp_path, df, cfg(max_bad_fraction=0.1))

    run_info = result.run  # GX's run id and time: in docs/run.json, never in report.json (a DVC output)
    assert load_report(result.report_path).get("run") is None
    assert run_info["run_name"].startswith("validate-") and run_info["run_time"].endswith("+00:00")
    site = result.gx_docs_path
    assert site == result.docs_path.parent / "gx" / "index.html" and site.is_file()
    index = site.read_text()
    assert "manifest_rows" in index and "manifest_table" in index  # both suites, one run
    pages = sorted((site.parent / "validations").rglob("*.html"))
    assert {p.relative_to(site.parent / "validations").parts[:2] for p in pages} == {
        ("manifest_rows", run_info["run_name"]), ("manifest_table", run_info["run_name"])}
    rows_page = next(p for p in pages if p.parts[-4] == "manifest_rows").read_text()
    assert "lat outside [-90, 90]" in rows_page and "120.0" in rows_page  # the failed check and the bad value
    assert run_info["run_name"] in rows_page

    ours = result.docs_path.read_text()  # our self-contained page names the same run and links GX's
    assert run_info["run_name"] in ours and 'href="gx/index.html"' in ours

    again = run(tmp_path, df, cfg(max_bad_fraction=0.1))  # a second run replaces the site
    runs = {p.parts[-3] for p in (again.gx_docs_path.parent / "validations").rglob("*.html")}
    assert runs == {again.run["run_name"]} and json.loads((again.docs_path.parent / "run.json").read_text()) == again.run
