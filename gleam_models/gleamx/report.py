"""The GLEAM-X report: a metrics table (all systems side by side) and example pairs on one HTML page.

Examples show both images (JPEG thumbnails embedded as base64, so the page is one portable file),
the generated and the reference explanation and both verdicts, for matches and non-matches in each
language, failures included. `markdown_table` is the same table for the CLI and Dagster.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

from data_assets.io import load_image, write_text
from data_assets.gleamx.schema import record_field as _get
from gleam_models.gleamx.evaluate import SystemRun

COLUMNS = [  # (headline key, column title, percent?)
    ("accuracy", "accuracy", True), ("f1", "F1", True), ("unparseable", "no verdict", True),
    ("predicted_match_share", "says match", True), ("sbert", "SBERT", False),
    ("fact_correct", "facts correct", True), ("hallucination", "hallucination", True),
]


def _systems(metrics: dict) -> list[str]:
    return [k for k, v in metrics.items() if isinstance(v, dict) and "accuracy" in v]


def _cell(m: dict, key: str, percent: bool) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    if key == "accuracy" and m.get("accuracy_ci95"):
        lo, hi = m["accuracy_ci95"]
        return f"{100 * value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def markdown_table(metrics: dict) -> str:
    """Systems as rows; accuracy with its 95% Wilson interval."""
    head = "| system | " + " | ".join(t for _, t, _ in COLUMNS) + " |"
    rule = "|" + " --- |" * (len(COLUMNS) + 1)
    rows = [f"| {name} | " + " | ".join(_cell(metrics[name], k, p) for k, _, p in COLUMNS) + " |"
            for name in _systems(metrics)]
    n = metrics.get("eval_set", {}).get("pairs")
    return "\n".join([head, rule, *rows]) + (f"\n\n{n} evaluation pairs (95% Wilson intervals)." if n else "")


def _thumb(path: Path, px: int) -> str:
    image = load_image(path)
    image.thumbnail((px, px))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()



def pick_examples(records: Sequence[Any], verdicts: Sequence[str | None], count: int) -> list[int]:
    """Indices: per language a right match, a right non-match and a failure, in turn, up to `count`."""
    buckets = []
    for lang in sorted({_get(r, "language") for r in records}):
        for kind in ("match", "no_match", "failure"):
            rows = [i for i, r in enumerate(records) if _get(r, "language") == lang
                    and ((verdicts[i] != _get(r, "label")) if kind == "failure"
                         else (verdicts[i] == _get(r, "label") == kind))]
            buckets.append(rows)
    picked, depth = [], 0
    while len(picked) < count and any(depth < len(b) for b in buckets):
        picked += [b[depth] for b in buckets if depth < len(b)][: count - len(picked)]
        depth += 1
    return picked


def _table_html(metrics: dict) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
    rows = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{_cell(metrics[n], k, p)}</td>" for k, _, p in COLUMNS)
                   + "</tr>" for n in _systems(metrics))
    return f"<table><tr><th>system</th>{head}</tr>{rows}</table>"


def write_report(out_dir: Path, metrics: dict, records: Sequence[Any], run: SystemRun,
                 verdicts: Sequence[str | None], base_dir: Path, examples: int = 8, thumbnail_px: int = 160) -> Path:
    """reports/gleamx/index.html (atomic): the table and `examples` pairs answered by `run`."""
    cards = []
    for i in pick_examples(records, verdicts, examples):
        rec = records[i]
        ok = verdicts[i] == _get(rec, "label")
        images = "".join(
            f'<figure><img src="{_thumb(Path(base_dir) / _get(rec, key), thumbnail_px)}" alt="{html.escape(cap)}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for key, cap in (("query_path", _get(rec, "modality")), ("satellite_path", "satellite")))
        text = (run.texts[i] if run.texts else None) or "(no text)"
        cards.append(
            f'<div class="card {"ok" if ok else "bad"}"><div class="imgs">{images}</div><div class="txt">'
            f"<p><b>pair</b> {html.escape(_get(rec, 'id'))} · {html.escape(_get(rec, 'language'))} · "
            f"label <b>{html.escape(_get(rec, 'label'))}</b> · predicted <b>{html.escape(str(verdict_or_none(verdicts[i])))}"
            f"</b> {'✓' if ok else '✗'}</p><p><b>generated ({html.escape(run.name)})</b><br>"
            f"{html.escape(text).replace(chr(10), '<br>')}</p><p><b>reference</b><br>"
            f"{html.escape(_get(rec, 'explanation'))}</p></div></div>")
    info = metrics.get("eval_set", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>GLEAM-X evaluation</title><style>
body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.card{{display:flex;gap:1em;border:1px solid #ddd;margin:1em 0;padding:.5em}} .ok{{border-left:6px solid #3a3}}
.bad{{border-left:6px solid #c33}} figure{{margin:0}} figcaption{{font-size:80%;text-align:center}}
.imgs{{display:flex;gap:.5em}} .txt{{flex:1}}</style></head><body>
<h1>GLEAM-X evaluation</h1>
<p>{info.get('pairs', '?')} pairs from {html.escape(str(info.get('path', '?')))} (sha256 {html.escape(str(info.get('sha256', '?'))[:12])}),
stratified by {html.escape(', '.join(info.get('stratified_by', [])))}; accuracy with its 95% Wilson interval.</p>
{_table_html(metrics)}
<h2>Examples ({html.escape(run.name)})</h2>
{''.join(cards)}
</body></html>
"""
    path = Path(out_dir) / "index.html"
    write_text(path, page)
    return path


def verdict_or_none(v: str | None) -> str:
    return v if v is not None else "none (unparseable)"
