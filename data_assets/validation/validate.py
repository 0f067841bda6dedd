"""The validation stage: manifest in, validated manifest + quarantine + report + docs out.

1. Read the manifest; add helper columns: file facts (exists, decodes, width, height), location
   splits (train/test leaks) and role (query, gallery-only view, satellite-only gallery row).
2. Row checks (GX) name bad rows; every one goes to quarantine.csv with each reason it has.
3. Table checks (GX) on the surviving rows: pairs per split and modality above the floor.
4. `passed` = bad share <= max_bad_fraction and no table check failed.

Bad data never raises: that is what the report is for. Only a manifest that cannot be read or an
output folder that cannot be written raises DataError. report.json is written last, so a run
killed half-way never leaves a report that vouches for files it did not finish.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data_assets.errors import DataError
from data_assets.io import atomic_directory, relative_path, sha256_file, write_json, write_text
from data_assets.manifest import COLUMNS, MODALITIES, SPLITS, manifest_metadata, read_manifest, write_manifest
from data_assets.validation.config import ValidateConfig
from data_assets.validation.docs import build_gx_docs, new_run_id, render_docs, run_info
from data_assets.validation.files import add_file_facts
from data_assets.validation.outputs import quarantine_table, write_quarantine, write_thumbnails
from data_assets.validation.report import expectation_entry, table_failure

log = logging.getLogger(__name__)


@dataclass
class ValidationResult:
    passed: bool
    bad_fraction: float
    rows_in: int
    rows_out: int
    bad_rows: int
    counts: dict  # after validation: {"queries" | "gallery_views" | "gallery": {split: {modality: n}}}
    failures: list[dict]  # why it did not pass ([] when passed)
    report_path: Path
    quarantine_path: Path
    docs_path: Path
    manifest_path: Path
    thumbnails: list[Path]
    gx_docs_path: Path | None = None  # Great Expectations' own Data Docs (docs/gx/index.html)
    run: dict | None = None  # GX run id and time of this validation (docs/run.json; not in report.json)


def validate_manifest(manifest_path: Path, cfg: ValidateConfig, out_dir: Path, base_dir: Path,
                      cache_dir: Path | None = None) -> ValidationResult:
    """Validate `manifest_path` and its images; write manifest.parquet, quarantine.csv,
    report.json, docs/index.html and thumbnails/ into `out_dir`. Relative dataset roots are taken
    from `base_dir`; `cache_dir` remembers images already verified (None: decode everything).

    The folder is built beside `out_dir` and swapped in whole at the end: a killed run leaves the
    previous validation untouched, never a new manifest without its report."""
    from data_assets.validation import suite  # imports GX: seconds, so only when validating

    manifest_path, out_dir, base_dir = Path(manifest_path), Path(out_dir), Path(base_dir)
    df = read_manifest(manifest_path).reset_index(drop=True)
    _check_writable(out_dir.parent)
    context = suite.gx_context()
    run_id = new_run_id()  # names this validation in GX's Data Docs and in report.json
    checked = _check(df, cfg, base_dir, cache_dir, manifest_path, context, run_id)
    with atomic_directory(out_dir) as staging:
        outputs = _write_outputs(staging, manifest_path, base_dir, cfg, run_id, context, checked)
    report, run_record = outputs.pop("report"), outputs.pop("run")
    final = {k: [out_dir / Path(x).relative_to(staging) for x in v] if isinstance(v, list)
             else out_dir / Path(v).relative_to(staging) for k, v in outputs.items()}
    log.info("validated %s: %d rows in, %d out, passed=%s", manifest_path, len(df), len(checked.kept), checked.passed)
    counts = {k: v for k, v in report["counts"].items() if isinstance(v, dict)}
    return ValidationResult(passed=checked.passed, bad_fraction=report["counts"]["bad_fraction"], rows_in=len(df),
                            rows_out=len(checked.kept), bad_rows=report["counts"]["bad_rows"], counts=counts,
                            failures=checked.failures, run=run_record, **final)


@dataclass
class _Checked:
    """What the checks found: the input with its facts, the rows kept, and every outcome."""
    df: pd.DataFrame  # the manifest as read
    frame: pd.DataFrame  # df + file facts and row facts (the frame GX checks)
    kept: pd.DataFrame  # df without the quarantined rows
    kept_frame: pd.DataFrame
    quarantine: pd.DataFrame  # one line per (bad row, reason)
    row_outcomes: list
    table_outcomes: list
    table_failures: list[dict]
    failures: list[dict]  # why it did not pass ([] when passed)

    @property
    def passed(self) -> bool:
        return not self.failures


def _check(df, cfg: ValidateConfig, base_dir: Path, cache_dir, manifest_path: Path, context, run_id) -> _Checked:
    from data_assets.validation import suite

    frame = add_file_facts(df, base_dir, cfg.decode_images, cfg.workers, cache_dir, cfg.max_image_pixels)
    shared = [src["name"] for src in manifest_metadata(manifest_path).get("sources", [])
              if src.get("satellites_shared_across_splits")]
    frame = suite.add_row_facts(frame, shared_satellite_sources=shared)
    row_outcomes = suite.run_checks(context, "manifest_rows", frame, suite.row_checks(cfg), run_id=run_id)

    quarantine = quarantine_table(frame, row_outcomes)
    bad = sorted(set(quarantine["row"]))
    kept = df.drop(index=bad)
    kept_frame = frame.drop(index=bad)
    table_outcomes = suite.run_checks(context, "manifest_table", kept_frame,
                                      suite.table_checks(cfg, _split_modality_combos(frame)), run_id=run_id)

    rows_in = len(df)
    bad_fraction = len(bad) / rows_in if rows_in else 0.0
    table_failures = [table_failure(o) for o in table_outcomes if not o.success]
    table_failures += [table_failure(o) for o in row_outcomes if o.exception is not None]
    failures = list(table_failures)
    if bad_fraction > cfg.max_bad_fraction:
        failures.insert(0, {"name": "max_bad_fraction", "expectation_type": None, "observed_value": bad_fraction,
                            "reason": f"{len(bad)} of {rows_in} rows are bad ({bad_fraction:.2%}), "
                                      f"above max_bad_fraction {cfg.max_bad_fraction:.2%}; "
                                      f"first: {_first_bad(quarantine)}; all in quarantine.csv"})
    return _Checked(df, frame, kept, kept_frame, quarantine, row_outcomes, table_outcomes, table_failures, failures)


def _write_outputs(out_dir: Path, manifest_path: Path, base_dir: Path, cfg: ValidateConfig, run_id, context,
                   checked: _Checked) -> dict:
    """Every file of a validated folder, into `out_dir` (the staging folder); their paths."""
    from data_assets.validation import suite
    c = checked
    rows_in, rows_out, bad = len(c.df), len(c.kept), sorted(set(c.quarantine["row"]))
    bad_fraction = len(bad) / rows_in if rows_in else 0.0
    manifest_out = write_manifest(c.kept[list(COLUMNS)], out_dir / "manifest.parquet",
                                  metadata={**manifest_metadata(manifest_path),
                                            "validation": {"passed": c.passed, "rows_in": rows_in,
                                                           "rows_out": rows_out}})
    quarantine_path = write_quarantine(c.quarantine, out_dir / "quarantine.csv")
    queries = c.kept_frame[c.kept_frame["role"] == "query"]
    thumbnails = write_thumbnails(queries, cfg.thumbnails, base_dir, out_dir / "thumbnails")

    quarantined_by_check = c.quarantine["expectation"].value_counts().to_dict()
    report = {
        "passed": c.passed,
        "threshold": cfg.max_bad_fraction,
        "manifest": relative_path(manifest_path, base_dir),
        # what consumers check before reading the validated manifest (require_valid_manifest)
        "validated_manifest": {"file": manifest_out.name, "sha256": sha256_file(manifest_out)},
        "counts": {"rows_in": rows_in, "rows_out": rows_out, "bad_rows": len(bad), "bad_fraction": bad_fraction,
                   "quarantine_lines": len(c.quarantine), **_counts(c.kept_frame)},
        "expectations": [expectation_entry(o, "row", c.frame, int(quarantined_by_check.get(o.check.name, 0)))
                         for o in c.row_outcomes]
                        + [expectation_entry(o, "table", None, 0) for o in c.table_outcomes],
        "table_failures": c.table_failures,
        "failures": c.failures,
        "config": cfg.model_dump(),
        "great_expectations_version": suite.gx.__version__,
    }
    # report.json is a DVC output (the same bytes on every run); the run's id and time, like GX's
    # run-named pages, live under docs/, which .dvcignore and the Dagster data versions leave out
    run_record = run_info(run_id)
    gx_docs_path = build_gx_docs(context, out_dir / "docs")
    docs_path = out_dir / "docs" / "index.html"
    write_text(docs_path, render_docs({**report, "run": run_record}, c.quarantine, thumbnails))
    write_json(out_dir / "docs" / "run.json", run_record)
    report_path = out_dir / "report.json"
    write_json(report_path, report)
    return {"report": report, "run": run_record, "report_path": report_path, "quarantine_path": quarantine_path,
            "docs_path": docs_path, "manifest_path": manifest_out, "thumbnails": thumbnails,
            "gx_docs_path": gx_docs_path}


def _check_writable(folder: Path) -> None:
    """Fail before any work when the folder the output lands in cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as e:
        raise DataError(folder, f"output directory is not writable ({e.strerror or e})") from None


def _split_modality_combos(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(split, modality) with queries in the input: each must keep enough valid query pairs."""
    queries = frame[(frame["role"] == "query") & frame["split"].isin(SPLITS) & frame["modality"].isin(MODALITIES)]
    return sorted(set(zip(queries["split"], queries["modality"])))


def _counts(kept: pd.DataFrame) -> dict:
    """{group: {split: {column: n}}} for the rows that survive; empty groups are left out.

    queries: pairs used as queries, per modality; gallery_views: pairs that only join the
    satellite->query gallery (query_meta role=gallery); gallery: satellite-only rows.
    """
    groups = {}
    for group in ("query", "gallery_view", "gallery"):
        rows = kept[kept["role"] == group]
        column = rows["modality"] if group != "gallery" else pd.Series("satellite", index=rows.index)
        table: dict[str, dict[str, int]] = {}
        for (split, col), n in rows.groupby([rows["split"], column]).size().items():
            table.setdefault(str(split), {})[str(col)] = int(n)
        if table:
            groups[{"query": "queries", "gallery_view": "gallery_views", "gallery": "gallery"}[group]] = table
    return groups


def _first_bad(quarantine: pd.DataFrame, n: int = 5) -> str:
    """'path (check), ...' for the first few bad rows, so a one-line CLI error names files."""
    first = quarantine.drop_duplicates("row").head(n)
    named = [f"{q if isinstance(q, str) else s} ({check})"
             for q, s, check in zip(first["query_path"], first["satellite_path"], first["expectation"])]
    more = quarantine["row"].nunique() - len(first)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")
