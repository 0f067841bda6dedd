"""Human revision of the test split: export a sheet, let experts edit it, import it back.

The sheet is a UTF-8 CSV (with a byte-order mark, so spreadsheet programs show Chinese correctly)
with one row per record: what the teacher wrote, absolute image paths to look at, and empty columns
for the reviser. Importing keeps unreviewed records as they were and reports what changed.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from data_assets.errors import DataError
from data_assets.gleamx.schema import GleamXRecord, Revision, read_records, write_jsonl
from data_assets.io import write_json, write_text

SHEET_COLUMNS = ["id", "query_image", "satellite_image", "modality", "label", "language", "explanation",
                 "evidence", "revised_verdict", "revised_explanation", "reviewer", "notes"]
REVISER_COLUMNS = ("revised_verdict", "revised_explanation", "reviewer", "notes")
VERDICTS = ("match", "no_match")


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insert / delete / substitute), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalised_edit_distance(a: str, b: str) -> float:
    return levenshtein(a, b) / max(len(a), len(b)) if (a or b) else 0.0


def export_revision_sheet(records_path: Path, out_csv: Path, base_dir: Path) -> int:
    """Write the revision sheet for every record in records_path; returns the number of rows."""
    records = read_records(records_path)
    base_dir = Path(base_dir).resolve()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SHEET_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({"id": r.id, "query_image": str(base_dir / r.query_path),
                         "satellite_image": str(base_dir / r.satellite_path), "modality": r.modality,
                         "label": r.label, "language": r.language, "explanation": r.explanation,
                         "evidence": json.dumps(r.evidence, ensure_ascii=False),
                         **{c: "" for c in REVISER_COLUMNS}})
    write_text(out_csv, "\ufeff" + buf.getvalue())
    return len(records)


def _read_sheet(sheet_csv: Path) -> list[dict]:
    sheet_csv = Path(sheet_csv)
    if not sheet_csv.is_file():
        raise DataError(sheet_csv, "revision sheet not found")
    try:
        text = sheet_csv.read_text(encoding="utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text, newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(sheet_csv, f"not a readable UTF-8 CSV ({e})") from None
    header = list(rows[0].keys()) if rows else next(csv.reader(io.StringIO(text)), [])
    missing = [c for c in ("id", "label", *REVISER_COLUMNS) if c not in header]
    if missing:
        raise DataError(sheet_csv, f"missing column(s) {', '.join(missing)}; export a fresh sheet")
    for n, row in enumerate(rows, 2):  # row 1 is the header
        if None in row or any(v is None for v in row.values()):
            raise DataError(sheet_csv, f"row {n}: wrong number of cells (expected {len(header)})")
    return rows


def import_revision_sheet(sheet_csv: Path, records_path: Path, out_path: Path) -> dict:
    """Apply a revised sheet to records_path, write the revised set to out_path; returns the change report."""
    sheet_csv = Path(sheet_csv)
    records = {r.id: r for r in read_records(records_path)}
    revised: dict[str, GleamXRecord] = {}
    for n, row in enumerate(_read_sheet(sheet_csv), 2):
        rid = (row["id"] or "").strip()
        if rid not in records:
            raise DataError(sheet_csv, f"row {n}: id {rid!r} is not in {records_path}")
        if rid in revised:
            raise DataError(sheet_csv, f"row {n}: id {rid!r} appears twice")
        verdict = (row["revised_verdict"] or "").strip().lower().replace("-", "_").replace(" ", "_")
        if verdict and verdict not in VERDICTS:
            raise DataError(sheet_csv, f"row {n}: revised_verdict {row['revised_verdict']!r} must be empty, "
                                       f"'match' or 'no_match'")
        new_text = (row["revised_explanation"] or "").strip()
        if verdict and verdict != records[rid].label and not new_text:
            raise DataError(sheet_csv, f"row {n}: verdict flipped to {verdict} but revised_explanation is empty; "
                                       f"a flipped verdict needs a new explanation")
        if not (verdict or new_text or row["reviewer"].strip() or row["notes"].strip()):
            continue  # nobody touched this row
        revised[rid] = _revise(records[rid], verdict, new_text, row)
    final = [revised.get(rid, rec) for rid, rec in sorted(records.items())]
    write_jsonl(Path(out_path), final)
    report = _change_report(final, revised)
    write_json(Path(out_path).with_suffix(".report.json"), report)
    return report


def _revise(rec: GleamXRecord, verdict: str, new_text: str, row: dict) -> GleamXRecord:
    label = verdict or rec.label
    text = new_text or rec.explanation
    rev = Revision(reviewer=row["reviewer"].strip() or None, notes=row["notes"].strip() or None,
                   original_label=rec.label, original_explanation=rec.explanation,
                   verdict_flipped=label != rec.label, explanation_edited=text != rec.explanation,
                   normalised_edit_distance=round(normalised_edit_distance(rec.explanation, text), 6))
    return rec.model_copy(update={"label": label, "explanation": text, "revision": rev})


def _change_report(final: list[GleamXRecord], revised: dict[str, GleamXRecord]) -> dict:
    edited = [r for r in revised.values() if r.revision.explanation_edited]
    dists = [r.revision.normalised_edit_distance for r in final if r.revision]
    return {
        "records": len(final),
        "reviewed": len(revised),
        "explanations_edited": len(edited),
        "verdicts_flipped": sum(r.revision.verdict_flipped for r in revised.values()),
        "mean_normalised_edit_distance": round(sum(dists) / len(final), 6) if final else 0.0,
        "mean_normalised_edit_distance_edited": round(sum(r.revision.normalised_edit_distance for r in edited)
                                                      / len(edited), 6) if edited else 0.0,
        "reviewers": sorted({r.revision.reviewer for r in revised.values() if r.revision.reviewer}),
    }
