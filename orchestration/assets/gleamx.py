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
       retry_policy=RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL),
       description="Teacher answers for one (modality, shard) slice of the GLEAM-X pairs.")
def gleamx_records(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    result = stages.gleamx_dataset(gleam.project(), modality=keys["modality"], shard=int(keys["shard"]))
    return MaterializeResult(metadata=to_metadata(result))


@asset(group_name=GROUP, deps=[gleamx_records],
       description="GLEAM-X match-and-explain records (train/val/test JSONL), rejects and report.")
def gleamx_dataset(context: AssetExecutionContext, gleam: GleamConfigResource) -> MaterializeResult:
    result = stages.gleamx_merge(gleam.project())
    return MaterializeResult(metadata=to_metadata(result))
