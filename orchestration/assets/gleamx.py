"""GLEAM-X data: records generated per (modality, shard) partition, then merged into one dataset.

Partitions let a large teacher run backfill in parallel across Dagster's run workers; each
partition retries on its own, and the answer cache means a retry never pays twice.
"""

from pathlib import Path

from dagster import (AssetExecutionContext, Backoff, MaterializeResult, MultiPartitionsDefinition, RetryPolicy,
                     StaticPartitionsDefinition, asset)

from data_assets.manifest import MODALITIES
from orchestration import stages
from orchestration.assets.data import validated_manifest
from orchestration.config import load_project
from orchestration.metadata import to_metadata
from orchestration.resources import GleamConfigResource
from orchestration.versions import code_version, data_version

GROUP = "gleamx"
PROJECT_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

# Partition keys must be known when the definitions load, so the shard count is read from
# params.yaml here; a run-time override of gleamx.num_shards that disagrees is refused clearly.
NUM_SHARDS = load_project(PROJECT_PARAMS).cfg.gleamx.num_shards if PROJECT_PARAMS.is_file() else 1
GLEAMX_PARTITIONS = MultiPartitionsDefinition({
    "modality": StaticPartitionsDefinition(list(MODALITIES)),
    "shard": StaticPartitionsDefinition([str(i) for i in range(NUM_SHARDS)]),
})


@asset(group_name=GROUP, deps=[validated_manifest], partitions_def=GLEAMX_PARTITIONS,
       code_version=code_version("gleamx_records"),
       retry_policy=RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL),
       description="Teacher answers for one (modality, shard) slice of the GLEAM-X pairs.")
def gleamx_records(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    project = gleam.project()
    result = stages.gleamx_dataset(project, modality=keys["modality"], shard=int(keys["shard"]))
    return MaterializeResult(metadata=to_metadata(result), data_version=data_version("gleamx_records", project, keys))


@asset(group_name=GROUP, deps=[gleamx_records], code_version=code_version("gleamx_dataset"),
       description="GLEAM-X match-and-explain records (train/val/test JSONL), rejects and report.")
def gleamx_dataset(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    project = gleam.project()
    result = stages.gleamx_merge(project)
    return MaterializeResult(metadata=to_metadata(result), data_version=data_version("gleamx_dataset", project))
