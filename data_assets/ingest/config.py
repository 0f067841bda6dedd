"""Config for the ingestion stage: which datasets to read and how."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from data_assets.settings import Section


class SourceConfig(Section):
    adapter: Literal["university1652", "vigor", "cvusa", "manifest"]  # the on-disk layout to read
    root: str  # dataset root; relative paths are taken from the project root
    name: str | None = None  # the manifest's `source` value; defaults to the adapter name
    vigor_mode: Literal["same_area", "cross_area"] = "same_area"  # VIGOR split protocol
    manifest_file: str = "manifest.csv"  # manifest adapter: CSV or Parquet file inside root
    include_4k_drone: bool = False  # University-1652: also ingest test/4K_drone views


class IngestConfig(Section):
    sources: list[SourceConfig] = Field(min_length=1)  # every dataset merged into one manifest
    hash_images: bool = True  # content hashes let validation find duplicates and DVC stay honest
    workers: int = Field(default=2, ge=1)  # threads for hashing
