"""Validation stage: a Great Expectations suite over the manifest and every image it names.

    from data_assets.validation import ValidateConfig, validate_manifest, load_report, ValidationResult
    from data_assets.validation import require_valid_manifest   # every consumer's gate

Importing this package does not import Great Expectations (that happens inside validate_manifest),
so the Dagster check that only reads report.json stays fast.
"""
from data_assets.validation.config import ValidateConfig
from data_assets.validation.gate import require_valid_manifest
from data_assets.validation.report import load_report
from data_assets.validation.validate import ValidationResult, validate_manifest

__all__ = ["ValidateConfig", "ValidationResult", "load_report", "require_valid_manifest", "validate_manifest"]
