"""Dagster code location: only wiring. Open the UI with `dagster dev` from the project root."""
from __future__ import annotations

from pathlib import Path

from dagster import (AssetSelection, Definitions, PipesSubprocessClient, define_asset_job, load_asset_checks_from_modules,
                     load_assets_from_modules)

from orchestration.assets import data, edge, gleamc, gleamx, gleamx_model
from orchestration.env import configure_environment
from orchestration.resources import GleamConfigResource

configure_environment(Path(__file__).resolve().parents[1])

# In the mission's order: data -> GLEAM-X data -> GLEAM-C -> GLEAM-X model -> edge deployment.
ASSET_MODULES = [data, gleamx, gleamc, gleamx_model, edge]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)

# A Dagster job holds assets of one partitioning, so the partitioned GLEAM-X slices get their own
# job (a backfill from the UI, or `gleam pipeline`); every other job leaves them out.
partitioned = AssetSelection.assets(gleamx.gleamx_records)
gleamx_records_job = define_asset_job("gleamx_records_job", selection=partitioned,
                                      partitions_def=gleamx.GLEAMX_PARTITIONS,
                                      description="GLEAM-X teacher answers, one run per (modality, shard).")
gleam_pipeline = define_asset_job("gleam_pipeline", selection=AssetSelection.all() - partitioned,
                                  description="Every unpartitioned asset in order (run the GLEAM-X slices first).")
part_jobs = [
    define_asset_job(f"{group}_job", selection=AssetSelection.groups(group) - partitioned, description=text)
    for group, text in [("data", "Embedded dataset, ingestion, validation."),
                        ("gleamx", "Merge the GLEAM-X slices into the dataset."),
                        ("gleamc", "GLEAM-C phase 1, phase 2, evaluation."),
                        ("gleamx_model", "GLEAM-X fine-tuning and evaluation."),
                        ("edge", "Gallery, localisation, ONNX export, Jetson bundle.")]
]

def make_definitions(gleam: GleamConfigResource) -> Definitions:
    """The code location with a given config resource (`gleam pipeline` passes its params and overrides)."""
    return Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=[gleam_pipeline, gleamx_records_job, *part_jobs],
        resources={"gleam": gleam, "pipes_subprocess_client": PipesSubprocessClient()},
    )


defs = make_definitions(GleamConfigResource())
