"""docs/index.html: a self-contained page a person can open from disk.

Why not GX's own Data Docs: its pages load Bootstrap, Font Awesome and Vega from public CDNs, so
offline they render unstyled and online they make third-party requests. This page is built from
the same GX results, embeds its thumbnails, and needs nothing but a browser.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

import pandas as pd

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
