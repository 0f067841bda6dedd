"""report.json: what the suite found, in a shape the Dagster check and the CLI read without GX.

`load_report` is deliberately light (no Great Expectations import): the blocking asset check only
reads this file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_assets.errors import DataError
from data_assets.io import read_json

if TYPE_CHECKING:  # importing the suite imports GX (seconds); only the type is needed here
    from data_assets.validation.suite import Outcome

EXAMPLES = 5  # failing rows shown per expectation (all of them are in quarantine.csv)


class _Counts(BaseModel):
    model_config = ConfigDict(extra="allow")
    rows_in: int = Field(ge=0)
    rows_out: int = Field(ge=0)
    bad_rows: int = Field(ge=0)
    bad_fraction: float = Field(ge=0.0, le=1.0)


class _Expectation(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    success: bool
    unexpected_count: int = Field(ge=0)


class _Report(BaseModel):
    """The fields other stages rely on; anything else in the file is kept as is."""

    model_config = ConfigDict(extra="allow")
    passed: bool
    threshold: float = Field(ge=0.0, le=1.0)
    counts: _Counts
    expectations: list[_Expectation]
    table_failures: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def load_report(path: Path) -> dict:
    """report.json content, checked; DataError naming the file and the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "validation report not found (run the validated_manifest stage first)")
    try:
        doc = read_json(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"validation report is not valid JSON ({e})") from None
    try:
        _Report.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataError(path, f"not a validation report: {where}: {first['msg']}") from None
    return doc


def expectation_entry(o: Outcome, level: str, frame: pd.DataFrame | None, quarantined: int) -> dict:
    """One expectation's result for report.json / the HTML docs."""
    examples = []
    for i, value in list(zip(o.unexpected_index, o.unexpected_values))[:EXAMPLES]:
        pair_id = None if frame is None else frame["pair_id"].iat[i]
        examples.append({"row": i, "pair_id": None if pd.isna(pair_id) else pair_id, "value": value})
    return {
        "name": o.check.name,
        "level": level,  # "row": failing rows are quarantined; "table": fails the stage
        "expectation_type": o.expectation_type,
        "columns": o.columns,
        "success": o.success,
        "reason": o.check.reason,
        "element_count": o.element_count,
        "unexpected_count": len(o.unexpected_index),
        "quarantined": quarantined,
        "observed_value": o.observed_value,
        "examples": examples,
        "exception": o.exception,
    }


def table_failure(o: Outcome) -> dict:
    reason = o.check.reason if o.exception is None else f"expectation could not run: {o.exception}"
    return {"name": o.check.name, "expectation_type": o.expectation_type, "reason": reason,
            "observed_value": o.observed_value}
