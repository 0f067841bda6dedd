"""The Great Expectations suite over a manifest, and how its results become named bad rows.

Two suites run on one in-memory (ephemeral) GX context:
- row checks on the whole manifest plus helper columns (file facts, location splits); each failing
  row index comes back with result_format COMPLETE, so every bad row can be named;
- table checks on the rows that survive (pairs per split and modality above the floor), which no
  amount of dropping rows can fix and so fail the stage outright.

GX is used directly (the dagster-ge integration is outdated). Nothing is written to disk: the
context keeps its stores in memory, and analytics / progress bars are switched off.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # read when GX is imported: never phone home

from dataclasses import dataclass, field
from typing import Any, Collection

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import AndCondition, Column

from data_assets.manifest import KINDS, MODALITIES, SCHEMA, SPLITS
from data_assets.validation.config import ValidateConfig
from data_assets.validation.docs import store_result

IS_PAIR = Column("kind") == "pair"
LEAK = "test|train"  # location_splits value of a location seen in both train and test
# split is part of the key: VIGOR same-area lists one satellite tile in the train and the test gallery.
DUPLICATE_PAIR_KEY = ["source", "split", "query_path", "satellite_path"]


@dataclass(frozen=True)
class Check:
    """One GX expectation plus what to write in quarantine.csv for a row that fails it."""

    name: str  # stable id in report.json / quarantine.csv
    reason: str  # short, user-facing: what is wrong with a failing row
    expectation: gxe.Expectation
    detail_column: str | None = None  # helper column with a per-row explanation (file errors)
    keep_first_of: tuple[str, ...] = ()  # duplicates: the first row of each group stays


@dataclass
class Outcome:
    """What GX said about one check, in plain Python."""

    check: Check
    success: bool
    expectation_type: str
    columns: list[str]
    element_count: int | None = None
    unexpected_index: list[int] = field(default_factory=list)  # positions in the validated frame
    unexpected_values: list[Any] = field(default_factory=list)
    observed_value: Any = None
    exception: str | None = None  # GX could not evaluate the expectation at all


def _expect(cls, name: str, reason: str, **kwargs) -> gxe.Expectation:
    return cls(meta={"gleam_check": name}, description=reason, **kwargs)


def row_checks(cfg: ValidateConfig) -> list[Check]:
    """Checks whose failures name rows; those rows are quarantined."""
    checks = []
    for col in [f.name for f in SCHEMA if not f.nullable]:
        reason = f"required field {col} is null"
        checks.append(Check(f"not_null:{col}", reason,
                            _expect(gxe.ExpectColumnValuesToNotBeNull, f"not_null:{col}", reason, column=col)))
    for col in ("modality", "query_path"):  # a pair needs a query; gallery rows have none
        reason = f"pair row has no {col}"
        checks.append(Check(f"not_null:{col}", reason,
                            _expect(gxe.ExpectColumnValuesToNotBeNull, f"not_null:{col}", reason,
                                    column=col, row_condition=IS_PAIR)))
    for col, allowed in (("kind", KINDS), ("split", SPLITS), ("modality", MODALITIES)):
        reason = f"{col} is not one of {', '.join(allowed)}"
        checks.append(Check(f"in_set:{col}", reason,
                            _expect(gxe.ExpectColumnValuesToBeInSet, f"in_set:{col}", reason,
                                    column=col, value_set=list(allowed))))

    for view in ("query", "satellite"):
        condition = {"row_condition": IS_PAIR} if view == "query" else {}
        missing = "query image does not exist" if view == "query" else \
            "satellite image does not exist (the query has no satellite image)"
        for fact, reason in ((f"{view}_exists", missing),
                             (f"{view}_decodes", f"{view} image cannot be decoded")):
            checks.append(Check(fact, reason,
                                _expect(gxe.ExpectColumnValuesToBeInSet, fact, reason,
                                        column=fact, value_set=[True], **condition),
                                detail_column=f"{view}_error"))
        for side in ("width", "height"):
            col = f"{view}_{side}"
            reason = f"{view} image {side} outside [{cfg.min_image_side}, {cfg.max_image_side}] px"
            checks.append(Check(f"size:{col}", reason,
                                _expect(gxe.ExpectColumnValuesToBeBetween, f"size:{col}", reason, column=col,
                                        min_value=cfg.min_image_side, max_value=cfg.max_image_side)))

    for col, bound in (("lat", 90), ("lon", 180)):  # nulls (unknown position) are allowed
        reason = f"{col} outside [-{bound}, {bound}]"
        checks.append(Check(f"range:{col}", reason,
                            _expect(gxe.ExpectColumnValuesToBeBetween, f"range:{col}", reason,
                                    column=col, min_value=-bound, max_value=bound)))

    for col in ("query_meta", "ground_truth"):  # later stages parse them; nulls are allowed
        reason = f"{col} is not valid JSON"
        checks.append(Check(f"json:{col}", reason,
                            _expect(gxe.ExpectColumnValuesToBeJsonParseable, f"json:{col}", reason, column=col)))

    reason = "location_id is in both train and test (leak): all its rows are quarantined"
    checks.append(Check("no_train_test_leak", reason,
                        _expect(gxe.ExpectColumnValuesToNotBeInSet, "no_train_test_leak", reason,
                                column="location_splits", value_set=[LEAK])))
    reason = "duplicate pair (same source, query_path and satellite_path as an earlier row)"
    checks.append(Check("unique_pair", reason,
                        _expect(gxe.ExpectCompoundColumnsToBeUnique, "unique_pair", reason,
                                column_list=DUPLICATE_PAIR_KEY),
                        keep_first_of=tuple(DUPLICATE_PAIR_KEY)))
    reason = "duplicate pair_id (an earlier row has the same id)"
    checks.append(Check("unique_pair_id", reason,
                        _expect(gxe.ExpectColumnValuesToBeUnique, "unique_pair_id", reason, column="pair_id"),
                        keep_first_of=("pair_id",)))
    return checks


def table_checks(cfg: ValidateConfig, combos: list[tuple[str, str]]) -> list[Check]:
    """Checks on the surviving rows as a whole; a failure fails the stage, no row to blame.

    The floor counts real queries: University-1652's gallery_drone / gallery_street extras
    (query_meta {"role": "gallery"}) are never used as queries, so they cannot make up for them.
    """
    reason = "no pairs left after validation"
    checks = [Check("pairs_present", reason,
                    _expect(gxe.ExpectTableRowCountToBeBetween, "pairs_present", reason,
                            min_value=1, row_condition=IS_PAIR))]
    if cfg.min_pairs_per_modality > 0:
        for split, modality in combos:
            name = f"min_pairs:{split}/{modality}"
            reason = f"fewer than {cfg.min_pairs_per_modality} valid {modality} query pairs in {split}"
            condition = AndCondition(conditions=[Column("role") == "query", Column("split") == split,
                                                 Column("modality") == modality])
            checks.append(Check(name, reason,
                                _expect(gxe.ExpectTableRowCountToBeBetween, name, reason,
                                        min_value=cfg.min_pairs_per_modality, row_condition=condition)))
    return checks


def add_row_facts(frame: pd.DataFrame, shared_satellite_sources: Collection[str] = ()) -> pd.DataFrame:
    """Helper columns from the manifest alone.

    location_splits: which of train/test the row's location appears in ("", "train", "test",
    "test|train"); role: "query", "gallery_view" (a pair whose query_meta says role=gallery) or
    "gallery" (a satellite-only row). Sources whose protocol shares satellite tiles between train
    and test by design (VIGOR same-area; the ingest stage records it) are exempt from the leak check.
    """
    out = frame.copy()
    in_train = out["split"].eq("train").groupby(out["location_id"], dropna=False).transform("any")
    in_test = out["split"].eq("test").groupby(out["location_id"], dropna=False).transform("any")
    out["location_splits"] = np.select([in_train & in_test, in_train, in_test], [LEAK, "train", "test"], "")
    shared = out["source"].isin(list(shared_satellite_sources)) & out["location_splits"].eq(LEAK)
    out.loc[shared, "location_splits"] = "shared_by_protocol"
    gallery_view = out["query_meta"].map(_is_gallery_view).astype(bool)
    out["role"] = np.select([out["kind"].ne("pair"), gallery_view], ["gallery", "gallery_view"], "query")
    return out


def _is_gallery_view(meta: object) -> bool:
    if not isinstance(meta, str) or '"role"' not in meta:  # skip parsing 100k plain metas
        return False
    try:
        doc = json.loads(meta)
    except ValueError:
        return False  # reported by the json:query_meta expectation
    return isinstance(doc, dict) and doc.get("role") == "gallery"


def gx_context():
    """An in-memory GX context: no files, no home directory, no analytics, no progress bars."""
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(),
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def run_checks(context, name: str, frame: pd.DataFrame, checks: list[Check], run_id=None) -> list[Outcome]:
    """Validate `frame` as one GX suite; outcomes in `checks` order, row indices by position.
    With a GX `run_id`, the result is also kept in the context for its Data Docs (docs.py)."""
    used = {"kind", "split", "modality", "role"}  # row conditions read these
    for check in checks:
        kwargs = check.expectation.configuration.kwargs
        used |= {kwargs["column"]} if "column" in kwargs else set(kwargs.get("column_list") or [])
    # only the columns the suite reads: GX copies the frame per row condition (10x faster on 100k rows)
    frame = frame[[c for c in frame.columns if c in used]].reset_index(drop=True)
    asset = context.data_sources.add_pandas(f"{name}_source").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=[c.expectation for c in checks]))
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    if run_id is not None:
        store_result(context, result, batch.id, run_id)
    by_name = {r.expectation_config.meta["gleam_check"]: r for r in result.results}
    return [_outcome(check, by_name[check.name]) for check in checks]


def _outcome(check: Check, r) -> Outcome:
    kwargs = r.expectation_config.kwargs
    columns = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list") or [])
    info = r.exception_info or {}
    if info.get("raised_exception"):
        return Outcome(check, False, r.expectation_config.type, columns,
                       exception=str(info.get("exception_message") or "GX raised an exception"))
    res = r.result or {}
    return Outcome(check, bool(r.success), r.expectation_config.type, columns,
                   element_count=res.get("element_count"),
                   unexpected_index=[int(i) for i in res.get("unexpected_index_list") or []],
                   unexpected_values=[plain(v) for v in res.get("unexpected_list") or []],
                   observed_value=plain(res.get("observed_value")))


def plain(value: Any) -> Any:
    """numpy / pandas scalars -> JSON-able Python values (NaN / NA -> None)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return plain(value.item())
    return value
