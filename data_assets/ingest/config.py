"""Config for the ingestion stage: which datasets to read and how."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_assets.settings import Section

ADAPTER_NAMES = ("university1652", "vigor", "cvusa", "manifest")


class SourceConfig(Section):
    # the on-disk layout to read; "auto" recognises it from the folders/files under root
    adapter: Literal["auto", "university1652", "vigor", "cvusa", "manifest"]
    root: str  # dataset root; relative paths are taken from the project root
    name: str | None = None  # the manifest's `source` value; defaults to the adapter name
    vigor_mode: Literal["same_area", "cross_area"] = "same_area"  # VIGOR split protocol
    manifest_file: str = "manifest.csv"  # manifest adapter: CSV or Parquet file inside root
    include_4k_drone: bool = False  # University-1652: also ingest test/4K_drone views
    # only these splits (a partial download, e.g. just VIGOR's test cities); None = every split
    # the dataset's protocol defines, and then a folder that protocol needs must exist
    splits: list[Literal["train", "val", "test"]] | None = None

    @model_validator(mode="after")
    def _name_is_a_plain_prefix(self) -> "SourceConfig":
        # the name prefixes every location_id ("<name>/<id>"), so it must be one path-like word
        if self.name is not None and (not self.name or "/" in self.name or self.name != self.name.strip()):
            raise ValueError(f"name {self.name!r} must be non-empty, without '/' or surrounding spaces")
        return self


class IngestConfig(Section):
    sources: list[SourceConfig] = Field(min_length=1)  # every dataset merged into one manifest
    hash_images: bool = True  # content hashes let validation find duplicates and DVC stay honest
    workers: int = Field(default=2, ge=1)  # threads for hashing
