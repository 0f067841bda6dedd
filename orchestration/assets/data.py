"""Data assets: embedded dataset -> ingested manifest -> validated manifest (+ the GX check)."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MaterializeResult, asset, asset_check

from orchestration import stages
from orchestration.metadata import to_metadata
from orchestration.resources import GleamConfigResource
from orchestration.versions import code_version, data_version

GROUP = "data"


@asset(group_name=GROUP, code_version=code_version("embedded_dataset"),
       description="Embedded default dataset built from registry-shipped SpaceNet and NEON imagery.")
def embedded_dataset(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    project = gleam.project()
    result = stages.embedded_dataset(project)
    return MaterializeResult(metadata=to_metadata(result), data_version=data_version("embedded_dataset", project))


@asset(group_name=GROUP, deps=[embedded_dataset], code_version=code_version("ingested_manifest"),
       description="Every configured dataset read into one Parquet manifest of (query, satellite) pairs.")
def ingested_manifest(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    project = gleam.project()
    result = stages.ingested_manifest(project)
    return MaterializeResult(metadata=to_metadata(result), data_version=data_version("ingested_manifest", project))


@asset(group_name=GROUP, deps=[ingested_manifest], code_version=code_version("validated_manifest"),
       description="The manifest after the Great Expectations suite; bad rows quarantined with reasons.")
def validated_manifest(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    project = gleam.project()
    result = stages.validated_manifest(project)
    if not result.passed:
        context.log.warning("validation failed its threshold; the blocking check will stop downstream assets")
    return MaterializeResult(metadata=to_metadata(result), data_version=data_version("validated_manifest", project))


@asset_check(asset=validated_manifest, blocking=True, name="gx_suite",
             description="Great Expectations suite passed and the bad-row share is under validate.max_bad_fraction.")
def gx_suite(gleam: GleamConfigResource) -> AssetCheckResult:
    from data_assets.validation import load_report

    project = gleam.project()
    report = load_report(project.validated_dir / "report.json")
    failed = [f for f in report.get("expectations", []) if not f.get("success", True)]
    return AssetCheckResult(
        passed=bool(report["passed"]),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "bad_fraction": float(report["counts"]["bad_fraction"]),  # load_report checked the schema
            "failed_expectations": [f.get("name", "?") for f in failed],
            "report": str(project.validated_dir / "report.json"),
        },
    )
