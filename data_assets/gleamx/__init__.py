"""GLEAM-X dataset generation: match / no-match pairs explained by a teacher, with human revision.

Library code: no dagster import; every function is usable from a Python shell.
"""
from data_assets.gleamx.config import GleamXDataConfig, NegativeMix, OpenAITeacherConfig
from data_assets.gleamx.generate import generate_gleamx_dataset, merge_shards
from data_assets.gleamx.pairs import build_pairs
from data_assets.gleamx.revision import export_revision_sheet, import_revision_sheet
from data_assets.gleamx.schema import GleamXRecord, read_records
from data_assets.gleamx.teachers import make_teacher

__all__ = ["GleamXDataConfig", "NegativeMix", "OpenAITeacherConfig", "build_pairs", "generate_gleamx_dataset",
           "merge_shards", "export_revision_sheet", "import_revision_sheet", "make_teacher", "GleamXRecord",
           "read_records"]
