"""Dagster code location: only wiring. Open the UI with `dagster dev` from the project root."""
from __future__ import annotations

from pathlib import Path

from dagster import Definitions, define_asset_job, load_asset_checks_from_modules, load_assets_from_modules

from orchestration.assets import data
from orchestration.env import configure_environment
from orchestration.resources import GleamConfigResource

configure_environment(Path(__file__).resolve().parents[1])

ASSET_MODULES = [data]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules(ASSET_MODULES)

gleam_pipeline = define_asset_job("gleam_pipeline", selection="*", description="The whole GLEAM pipeline in order.")

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[gleam_pipeline],
    resources={"gleam": GleamConfigResource()},
)
