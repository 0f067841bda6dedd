"""Dagster code location: only wiring. Open the UI with `dagster dev` from the project root."""
from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, PipesSubprocessClient, define_asset_job, load_asset_checks_from_modules, load_assets_from_modules

from orchestration.assets import data, gleamc, gleamx
from orchestration.env import configure_environment
from orchestration.resources import GleamConfigResource

configure_environment(Path(__file__).resolve().parents[1])

ASSET_MODULES = [data, gleamx, gleamc]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)

# A Dagster job holds assets of one partitioning, so the partitioned GLEAM-X slices get their own
# job (backfill it from the UI); `gleam pipeline` runs both in order on this machine.
partitioned = AssetSelection.assets(gleamx.gleamx_records)
gleamx_records_job = define_asset_job("gleamx_records_job", selection=partitioned,
                                      partitions_def=gleamx.GLEAMX_PARTITIONS,
                                      description="GLEAM-X teacher answers, one run per (modality, shard).")
gleam_pipeline = define_asset_job("gleam_pipeline", selection=AssetSelection.all() - partitioned,
                                  description="Every unpartitioned asset in order (run the GLEAM-X slices first).")

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[gleam_pipeline, gleamx_records_job],
    resources={"gleam": GleamConfigResource(), "pipes_subprocess_client": PipesSubprocessClient()},
)
