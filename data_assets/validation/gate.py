"""The gate every consumer of the validated manifest passes first (training, GLEAM-X, evaluation).

A validated manifest is only as good as the report next to it: the stage writes the manifest even
when validation fails (so the quarantine can be inspected), and a manifest copied in from elsewhere
or edited afterwards carries no report of its own. So a consumer refuses it unless report.json
(1) says passed and (2) recorded the sha256 of exactly this manifest file.
"""
from __future__ import annotations

from pathlib import Path

from data_assets.errors import DataError
from data_assets.io import sha256_file
from data_assets.validation.report import load_report

REPORT_FILE = "report.json"


def require_valid_manifest(manifest_path: str | Path, report_path: str | Path | None = None) -> dict:
    """The validation report of `manifest_path` if it passed and vouches for this very file.

    DataError (one line, naming the file and what to run) otherwise.
    """
    manifest_path = Path(manifest_path)
    report_path = Path(report_path) if report_path else manifest_path.parent / REPORT_FILE
    if not manifest_path.is_file():
        raise DataError(manifest_path, "validated manifest not found: run `gleam validated-manifest` first")
    report = load_report(report_path)
    if not report["passed"]:
        reasons = "; ".join(str(f.get("reason") or f.get("name")) for f in report["failures"][:2]) or "see the report"
        raise DataError(report_path, f"the manifest failed validation ({reasons}); fix the data or "
                                     f"validate.max_bad_fraction and re-run `gleam validated-manifest`")
    recorded = (report.get("validated_manifest") or {}).get("sha256")
    if not recorded:
        raise DataError(report_path, "the report records no manifest hash (written by an older GLEAM); "
                                     "re-run `gleam validated-manifest`")
    actual = sha256_file(manifest_path)
    if actual != recorded:
        raise DataError(manifest_path, f"this manifest is not the one the validation report vouches for "
                                       f"(sha256 {actual[:12]}... != {recorded[:12]}... in {report_path}): it was "
                                       f"changed or copied in after validation; re-run `gleam validated-manifest`")
    return report
