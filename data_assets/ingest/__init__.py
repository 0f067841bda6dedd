"""Dataset ingestion: real dataset layouts (University-1652, VIGOR, CVUSA, a generic manifest) -> one manifest.

    from data_assets.ingest import IngestConfig, SourceConfig, ingest, detect_adapter
    summary = ingest(IngestConfig(sources=[SourceConfig(adapter="auto", root="/datasets/VIGOR")]),
                     out_path=Path("data/ingested/manifest.parquet"), base_dir=Path("."))
"""
from data_assets.ingest.config import IngestConfig, SourceConfig
from data_assets.ingest.core import ADAPTERS, detect_adapter, ingest, read_source

__all__ = ["ADAPTERS", "IngestConfig", "SourceConfig", "detect_adapter", "ingest", "read_source"]
