"""The validation stage's human-readable docs: Great Expectations' own Data Docs, plus our page.

- docs/gx/: GX's Data Docs site (index, one page per suite and per validation run, named by the
  run id and time), built from the results of this run by GX's own SiteBuilder. Its pages load
  Bootstrap and jQuery from public CDNs: offline they render unstyled, but every table is there.
- docs/index.html: a self-contained page (no CDN) with the verdict, counts, every expectation,
  the quarantine and the sample thumbnails, that links to the GX site and names the same run.
"""
from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from data_assets.io import atomic_directory

GX_SITE = "gleam_local_site"  # the one Data Docs site of the stage's in-memory GX context
GX_SUBDIR = "gx"  # docs/gx/index.html, next to our docs/index.html
GX_DOCS_MAX_UNEXPECTED = 200  # bad values listed per expectation in GX's pages
MAX_QUARANTINE_LINES = 500  # the page stays light; quarantine.csv has every line

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17803d;font-weight:600}.bad{color:#b42318;font-weight:600}
.verdict{font-size:1.3em;padding:.6em 1em;border-radius:6px;display:inline-block}
.verdict.ok{background:#e8f6ee}.verdict.bad{background:#fdecea}
code{font-size:.9em;word-break:break-all}figure{display:inline-block;margin:.5em}
figcaption{font-size:.85em;color:#555}
"""


def _cell(value, numeric: bool = False) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(ok: bool) -> str:
    return '<td class="ok">pass</td>' if ok else '<td class="bad">fail</td>'


def render_docs(report: dict, quarantine: pd.DataFrame, thumbnails: list[Path]) -> str:
    c = report["counts"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    parts = [
        f"<h1>Manifest validation: {escape(str(report['manifest']))}</h1>",
        f'<p class="verdict {"ok" if report["passed"] else "bad"}">{verdict}</p>',
        _run_line(report.get("run")),
        _table(["rows in", "rows out", "bad rows", "bad fraction", "max bad fraction"],
               [[_cell(c["rows_in"], True), _cell(c["rows_out"], True), _cell(c["bad_rows"], True),
                 _cell(f"{c['bad_fraction']:.4%}", True), _cell(f"{report['threshold']:.4%}", True)]]),
    ]
    if report["failures"]:
        parts.append("<h2>Why it failed</h2><ul>" + "".join(
            f"<li><b>{escape(f['name'])}</b>: {escape(f['reason'])}</li>" for f in report["failures"]) + "</ul>")

    for group, title in (("queries", "Valid query pairs"), ("gallery_views", "Gallery-only views (role=gallery)"),
                         ("gallery", "Satellite-only gallery rows")):
        table = c.get(group)
        if not table:
            continue
        columns = sorted({col for per in table.values() for col in per})
        parts.append(f"<h2>{escape(title)} per split</h2>")
        parts.append(_table(["split", *columns],
                            [[_cell(split), *[_cell(table[split].get(col, 0), True) for col in columns]]
                             for split in sorted(table)]))

    parts.append("<h2>Expectations (Great Expectations "
                 f"{escape(str(report.get('great_expectations_version', '')))})</h2>")
    parts.append(_table(
        ["status", "check", "level", "GX expectation", "columns", "unexpected", "quarantined", "examples / observed"],
        [[_status(e["success"]), _cell(e["name"]), _cell(e["level"]), _cell(e["expectation_type"]),
          _cell(", ".join(e["columns"])), _cell(e["unexpected_count"], True), _cell(e["quarantined"], True),
          _cell(e["exception"] or (e["examples"] or "" if e["level"] == "row" else e["observed_value"]))]
         for e in report["expectations"]]))

    shown = quarantine.head(MAX_QUARANTINE_LINES)
    parts.append(f"<h2>Quarantine ({len(quarantine)} lines"
                 + (f", first {MAX_QUARANTINE_LINES} shown; all in quarantine.csv" if len(quarantine) > len(shown) else "")
                 + ")</h2>")
    parts.append(_table(list(shown.columns), [[_cell("" if pd.isna(v) else str(v)) for v in r]
                                              for r in shown.itertuples(index=False)]))

    if thumbnails:
        parts.append("<h2>Sample pairs (query | satellite)</h2>")
        for path in thumbnails:
            b64 = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f'<figure><img alt="{escape(path.stem)}" src="data:image/png;base64,{b64}">'
                         f"<figcaption>{escape(path.stem)}</figcaption></figure>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>GLEAM manifest validation: {verdict}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _run_line(run: dict | None) -> str:
    if not run:
        return ""
    link = f' &middot; <a href="{escape(run["gx_data_docs"])}">Great Expectations Data Docs</a>' \
        if run.get("gx_data_docs") else ""
    return (f"<p>Run <code>{escape(run['run_name'])}</code> at {escape(run['run_time'])} "
            f"(Great Expectations {escape(str(run.get('great_expectations_version', '')))}){link}</p>")


# -- Great Expectations' own Data Docs ------------------------------------------------------------

def new_run_id(now: datetime | None = None):
    """The GX run id of one validation: its name says when (UTC), its time is exact."""
    from great_expectations.core.run_identifier import RunIdentifier

    now = now or datetime.now(timezone.utc)
    return RunIdentifier(run_name=f"validate-{now:%Y%m%dT%H%M%SZ}", run_time=now)


def run_info(run_id, docs_link: str | None = f"{GX_SUBDIR}/index.html") -> dict[str, Any]:
    """What report.json and our page record of the run (JSON-able)."""
    import great_expectations as gx

    return {"run_name": run_id.run_name, "run_time": run_id.run_time.isoformat(),
            "great_expectations_version": gx.__version__, "gx_data_docs": docs_link}


def store_result(context, result, batch_id: str, run_id) -> None:
    """Keep one suite's validation result in the context's store, as GX's checkpoints do, so
    that build_gx_docs renders it under this run id. The stored copy lists at most
    GX_DOCS_MAX_UNEXPECTED bad values per expectation (quarantine.csv has every bad row)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    result = copy.deepcopy(result)  # the caller still reads the complete lists
    result.meta["run_id"] = run_id
    result.meta["validation_time"] = run_id.run_time
    for r in result.results:
        details = r.result or {}
        details.pop("unexpected_index_query", None)  # a query naming every bad row: megabytes on 100k rows
        for key in ("unexpected_list", "unexpected_index_list"):
            if isinstance(details.get(key), list):
                details[key] = details[key][:GX_DOCS_MAX_UNEXPECTED]
    suite_id = ExpectationSuiteIdentifier(name=result.suite_name)
    key = ValidationResultIdentifier(expectation_suite_identifier=suite_id, run_id=run_id, batch_identifier=batch_id)
    context.validation_results_store.store_validation_results(result, key, suite_id)


def build_gx_docs(context, docs_dir: Path) -> Path:
    """Build GX's Data Docs for every result stored in `context` into docs_dir/gx/ (replaced as a
    whole, so no page of an older run survives next to this one); returns its index.html."""
    site_dir = Path(docs_dir) / GX_SUBDIR
    with atomic_directory(site_dir) as tmp:
        # set, not add_data_docs_site: that one ignores a context created without any site
        context.variables.data_docs_sites = {GX_SITE: {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(tmp)},
        }}
        context.build_data_docs(site_names=[GX_SITE])
    return site_dir / "index.html"
