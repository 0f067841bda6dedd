"""Retrieval evaluation of GLEAM-C on a manifest: per split, modality, direction and run.

Evaluated splits (default: "test", the same-area split, and "test_cross", the cross-area split,
where the manifest has it; see data_assets/manifest.py) each give their own galleries. For each
split and query modality:

- query_to_satellite: the queries are the pair rows of that modality, except rows whose
  query_meta says {"role": "gallery"} (gallery-only views, e.g. University-1652's gallery_drone
  images of distractor buildings). The gallery is EVERY distinct satellite image of the split
  and the same source: pair rows and kind="gallery" rows alike, so distractors stay in. A query
  is right when it retrieves its own location_id; VIGOR's semi_positive_ids give the hit rate.
- satellite_to_query: the queries are the distinct satellite images with at least one (non
  gallery-only) query of that modality; the gallery is every query image of that modality in
  the split and source, gallery-only rows included. Several gallery items are true per query,
  which is where AP differs from R@1.

Several sources with the same modality (University-1652 drones and a user's own drone set) are
not mixed into one gallery: each query is ranked against its own source's gallery, and the
per-query outcomes are pooled into one figure per modality and direction (`n_gallery` is then
the summed gallery size). A source's images never compete with another source's.

Each run (imagenet_frozen, phase1, phase2, ...) is a `Run`: an `EmbedFn` and the fingerprint of
the weights behind it. Every distinct image is embedded once per run. The metrics of all runs are
written as ONE file, whole and atomically, once every run is done (gleam_models/metrics_file.py):
a killed evaluation leaves the previous file as it was, never one model's figures beside
another's. Each run gets a picture per split and modality.
Metric definitions are the field's reference ones (gleam_models/metrics.py); a source whose
queries carry semi-positives is evaluated with the vigor protocol (evaluate.protocol=auto).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from data_assets.errors import ConfigError, DataError, GleamError
from data_assets.io import sha256_file
from data_assets.manifest import EVAL_SPLITS, MODALITIES, read_manifest, resolve_query, resolve_satellite
from data_assets.settings import Section
from gleam_models.figures import FigureRow, retrieval_figure, save_figure
from gleam_models.metrics import rank_queries, rows_per_chunk, summarize, topk
from gleam_models.metrics_file import (headline, metrics_document, metrics_table, relative_path,  # noqa: F401
                                       write_metrics)

if TYPE_CHECKING:  # gleam_models.config imports this module (EvalConfig)
    from gleam_models.config import EncoderConfig

log = logging.getLogger(__name__)

# Embeds absolute image paths seen as one view ("satellite" or a modality name) and returns
# float32 [N, D] L2-normalised rows. The model code supplies it.
EmbedFn = Callable[[list[Path], str], np.ndarray]
Direction = Literal["query_to_satellite", "satellite_to_query"]
DIRECTIONS: tuple[Direction, ...] = ("query_to_satellite", "satellite_to_query")
SATELLITE_VIEW = "satellite"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # becomes a JSON key and a directory name


class EvalConfig(Section):
    ks: list[int] = [1, 5, 10]  # Recall@K cut-offs, reported next to R@1% and AP
    # manifest splits evaluated, each with its own galleries; None = "test" and "test_cross" where present
    splits: list[Literal["train", "val", "test", "test_cross"]] | None = None
    # auto: vigor counting (Sample4Geo's VIGOR code) where queries carry semi-positives, else University-1652
    protocol: Literal["auto", "university1652", "vigor"] = "auto"
    modalities: list[str] | None = None  # None = every modality with queries in the split
    directions: list[Direction] = list(DIRECTIONS)  # query->satellite and/or satellite->query
    batch_size: int = Field(default=64, ge=1)  # images per embed call: bounds model memory
    chunk_mb: int = Field(default=256, ge=1)  # similarity rows held at once: bounds RAM on big galleries
    figure_rows: int = Field(default=6, ge=0)  # queries per picture; 0 = no pictures
    figure_k: int = Field(default=5, ge=1)  # satellite tiles shown per query
    figure_tile: int = Field(default=96, ge=16)  # tile size in pixels: keeps pictures small

    @field_validator("ks")
    @classmethod
    def _ks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("evaluate.ks must be a non-empty list of positive integers")
        return sorted(set(v))

    @field_validator("modalities")
    @classmethod
    def _known_modalities(cls, v: list[str] | None) -> list[str] | None:
        unknown = [m for m in v or [] if m not in MODALITIES]
        if unknown:
            raise ValueError(f"evaluate.modalities: unknown {unknown}; known: {list(MODALITIES)}")
        return v


@dataclass(frozen=True)
class Images:
    """One side of a retrieval problem: images, their location labels, optional semi-positives."""

    paths: list[Path]
    labels: list[str]
    view: str  # how the encoder should see them: "satellite" or a modality
    semi: list[list[str]] | None = None


@dataclass(frozen=True)
class Problem:
    """Queries ranked against a gallery of the same source."""

    source: str
    queries: Images
    gallery: Images


# --- what to evaluate ---------------------------------------------------------------------------

def split_images(manifest_path: Path, base_dir: Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The split's satellite images (pair and gallery rows) and query images, with absolute paths."""
    df = read_manifest(manifest_path)
    df = df[df["split"] == split].reset_index(drop=True)
    pair_rows = df[df["kind"] == "pair"]
    if pair_rows.empty:
        raise DataError(manifest_path, f"split {split!r} has no query rows to evaluate")
    if pair_rows["query_path"].isna().any():
        bad = pair_rows.loc[pair_rows["query_path"].isna(), "pair_id"].iloc[0]
        raise DataError(manifest_path, f"pair row {bad} has no query_path")

    # many pair rows share a satellite image: resolve each distinct one once
    sat_rows = df.drop_duplicates(["source", "dataset_root", "satellite_path", "location_id"])
    satellites = pd.DataFrame({
        "source": sat_rows["source"].to_numpy(),
        "location_id": sat_rows["location_id"].to_numpy(),
        "path": [resolve_satellite(r, base_dir) for r in sat_rows.to_dict("records")],
    }).drop_duplicates(["source", "location_id", "path"], ignore_index=True)

    records = pair_rows.to_dict("records")
    queries = pd.DataFrame({
        "source": pair_rows["source"].to_numpy(),
        "modality": pair_rows["modality"].to_numpy(),
        "location_id": pair_rows["location_id"].to_numpy(),
        "path": [resolve_query(r, base_dir) for r in records],
        "gallery_only": [_gallery_only(r, manifest_path) for r in records],
        "semi": [_as_list(r["semi_positive_ids"]) for r in records],
    }).drop_duplicates(["source", "modality", "location_id", "path"], ignore_index=True)
    if queries["modality"].isna().any():
        raise DataError(manifest_path, "pair rows without a modality in split " + repr(split))
    return satellites, queries


def evaluated_modalities(queries: pd.DataFrame, cfg: EvalConfig, manifest_path: Path, split: str) -> list[str]:
    asked = queries[~queries["gallery_only"]]
    present = [m for m in MODALITIES if (asked["modality"] == m).any()]
    if cfg.modalities is None:
        if not present:
            raise DataError(manifest_path, f"split {split!r} has only gallery-only query rows")
        return present
    empty = [m for m in cfg.modalities if m not in present]
    if empty:
        raise DataError(manifest_path, f"modality {empty[0]!r} has no queries in split {split!r} "
                                       f"(present: {present or 'none'}); fix evaluate.modalities")
    return list(cfg.modalities)


def retrieval_problems(satellites: pd.DataFrame, queries: pd.DataFrame, modality: str,
                       direction: Direction) -> list[Problem]:
    """One problem per source that has queries of this modality (see the module docstring)."""
    of_modality = queries[queries["modality"] == modality]
    asked = of_modality[~of_modality["gallery_only"]]
    problems = []
    for source in asked["source"].unique():
        src_asked = asked[asked["source"] == source]
        src_sats = satellites[satellites["source"] == source]
        if direction == "query_to_satellite":
            q = Images(list(src_asked["path"]), list(src_asked["location_id"]), modality,
                       semi=list(src_asked["semi"]))
            g = Images(list(src_sats["path"]), list(src_sats["location_id"]), SATELLITE_VIEW)
        else:
            asked_sats = src_sats[src_sats["location_id"].isin(set(src_asked["location_id"]))]
            src_views = of_modality[of_modality["source"] == source]
            q = Images(list(asked_sats["path"]), list(asked_sats["location_id"]), SATELLITE_VIEW)
            g = Images(list(src_views["path"]), list(src_views["location_id"]), modality)
        problems.append(Problem(str(source), q, g))
    return problems


# --- running it ---------------------------------------------------------------------------------

class EmbeddingCache:
    """Calls a run's EmbedFn in batches, once per distinct (view, image)."""

    def __init__(self, run: str, embed_fn: EmbedFn, batch_size: int):
        self.run, self.embed_fn, self.batch_size = run, embed_fn, batch_size
        self.vectors: dict[tuple[str, Path], np.ndarray] = {}

    def __call__(self, images: Images) -> np.ndarray:
        todo = list(dict.fromkeys(p for p in images.paths if (images.view, p) not in self.vectors))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            out = np.asarray(self.embed_fn(batch, images.view), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != len(batch):
                raise GleamError(f"run {self.run!r}: embedding {len(batch)} {images.view} images "
                                 f"returned shape {out.shape}, expected [{len(batch)}, D]")
            self.vectors.update(((images.view, p), row) for p, row in zip(batch, out))
        return np.stack([self.vectors[(images.view, p)] for p in images.paths])


@dataclass(frozen=True)
class Run:
    """One model to evaluate: how it embeds, and which weights it is (recorded with its figures)."""

    embed: EmbedFn
    weights: str  # gleam_models.checkpoint.weights_fingerprint(...), or "imagenet:<backbone>" for a frozen one

    @classmethod
    def from_checkpoint(cls, model_cfg: EncoderConfig, checkpoint: Path | None, cache_dir: Path) -> Run:
        """The GLEAM-C encoder in `checkpoint` (None = model.weights, untrained), embedding through
        the decode cache in cache_dir, with its weights fingerprint."""
        from gleam_models.embed import make_embed_fn
        from gleam_models.encoder import load_encoder

        encoder = load_encoder(model_cfg, checkpoint)
        return cls(make_embed_fn(encoder, model_cfg, cache_dir), run_fingerprint(checkpoint, model_cfg.backbone))


def run_fingerprint(checkpoint: Path | None, backbone: str) -> str:
    """What a run records as its weights: the content hash of its safetensors file, or
    "imagenet:<backbone>" for the frozen pretrained encoder (no checkpoint)."""
    if checkpoint is None:
        return f"imagenet:{backbone}"
    from gleam_models.checkpoint import weights_fingerprint  # torch: only where a checkpoint is read

    return weights_fingerprint(Path(checkpoint))


def evaluated_splits(manifest_path: Path, cfg: EvalConfig) -> list[str]:
    """cfg.splits, or "test" and "test_cross" where the manifest has query rows of them."""
    if cfg.splits is not None:
        return list(dict.fromkeys(cfg.splits))  # split_images says clearly if one is empty
    df = read_manifest(manifest_path)
    present = set(df.loc[df["kind"] == "pair", "split"].unique())
    found = [s for s in EVAL_SPLITS if s in present]
    if not found:
        raise DataError(manifest_path, f"no query rows in any of the splits {list(EVAL_SPLITS)} "
                                       f"(present: {sorted(present) or 'none'}); set evaluate.splits")
    return found


def evaluate_runs(manifest_path: Path, base_dir: Path, runs: dict[str, Run], cfg: EvalConfig,
                  metrics_path: Path, figures_dir: Path) -> dict:
    """Evaluate every run on every evaluated split; write `metrics_path` whole; draw figures.

    Returns the document written (see gleam_models/metrics_file.py):
    {"format", "manifest", "config", "definitions",
     "runs": {run: {"weights", "splits": {split: {modality: {direction: {"R@1", ..., "R@1%", "AP",
     "mAP_plain", ["hit_rate"], "n_queries", "n_gallery", "protocol"}}}}}}}
    """
    manifest_path, base_dir, metrics_path, figures_dir = map(Path, (manifest_path, base_dir, metrics_path, figures_dir))
    if not runs:
        raise ConfigError("evaluate: no runs given (nothing to evaluate)")
    bad = [r for r in runs if not _RUN_NAME.match(r)]
    if bad:
        raise ConfigError(f"evaluate: run name {bad[0]!r} must be letters, digits, '_', '-', '.'")
    unnamed = [r for r, spec in runs.items() if not isinstance(spec, Run) or not spec.weights]
    if unnamed:
        raise ConfigError(f"evaluate: run {unnamed[0]!r} must be a Run(embed, weights) naming its weights")

    plans = {}
    for split in evaluated_splits(manifest_path, cfg):
        satellites, queries = split_images(manifest_path, base_dir, split)
        modalities = evaluated_modalities(queries, cfg, manifest_path, split)
        plans[split] = {m: {d: retrieval_problems(satellites, queries, m, d) for d in DIRECTIONS} for m in modalities}
        _check_images_exist(plans[split], split)
    manifest_sha = sha256_file(manifest_path)

    results: dict = {}
    for run, spec in runs.items():
        embed = EmbeddingCache(run, spec.embed, cfg.batch_size)
        by_split: dict = {}
        for split, plan in plans.items():
            by_split[split] = {}
            for modality, by_direction in plan.items():
                by_split[split][modality] = {d: _evaluate_direction(by_direction[d], embed, cfg)
                                             for d in cfg.directions}
                for d, values in by_split[split][modality].items():
                    log.info("%s %s %s %s: R@1 %.2f AP %.2f (%d queries)", run, split, modality, d,
                             values["R@1"], values["AP"], values["n_queries"])
                if cfg.figure_rows:
                    rows = _figure_rows(by_direction["query_to_satellite"], embed, cfg)
                    save_figure(retrieval_figure(rows, cfg.figure_tile), figure_path(figures_dir, run, modality, split))
        results[run] = {"weights": spec.weights, "splits": by_split}

    document = metrics_document({"path": relative_path(manifest_path, base_dir), "sha256": manifest_sha},
                                cfg.model_dump(mode="json"), results)
    write_metrics(metrics_path, document)  # once, whole: never one model's figures beside another's
    return document


def figure_path(figures_dir: Path, run: str, modality: str, split: str = "test") -> Path:
    """<run>/<modality>.png for the same-area test split, <run>/<split>/<modality>.png for the others."""
    base = Path(figures_dir) / run
    return (base if split == "test" else base / split) / f"{modality}.png"


def _evaluate_direction(problems: list[Problem], embed: EmbeddingCache, cfg: EvalConfig) -> dict:
    outcomes = []
    for p in problems:
        semi = p.queries.semi if p.queries.semi and any(p.queries.semi) else None
        protocol = cfg.protocol if cfg.protocol != "auto" else ("vigor" if semi else "university1652")
        outcomes.append(rank_queries(embed(p.queries), p.queries.labels, embed(p.gallery), p.gallery.labels,
                                     semi_positives=semi,
                                     chunk_rows=rows_per_chunk(len(p.gallery.paths), cfg.chunk_mb),
                                     protocol=protocol))
    return summarize(outcomes, cfg.ks)


def _figure_rows(problems: list[Problem], embed: EmbeddingCache, cfg: EvalConfig) -> list[FigureRow]:
    """`figure_rows` queries spread evenly over all sources, each with its top-k satellites."""
    flat = [(p, i) for p in problems for i in range(len(p.queries.paths))]
    picks = np.unique(np.linspace(0, len(flat) - 1, min(cfg.figure_rows, len(flat))).round().astype(int))
    rows = []
    for problem in problems:
        chosen = [i for p, i in (flat[j] for j in picks) if p is problem]
        if not chosen:
            continue
        q, g = problem.queries, problem.gallery
        scores, indices = topk(embed(q)[chosen], embed(g), cfg.figure_k)
        for i, s_row, i_row in zip(chosen, scores, indices):
            rows.append(FigureRow(
                query=q.paths[i],
                results=[g.paths[j] for j in i_row],
                correct=[g.labels[j] == q.labels[i] for j in i_row],
                scores=[float(s) for s in s_row],
                caption=q.labels[i],
            ))
    return rows


def _check_images_exist(plan: dict, split: str) -> None:
    """Fail before any embedding work if an image is missing (and say how many are)."""
    paths = {p for by_dir in plan.values() for probs in by_dir.values() for pr in probs
             for p in (*pr.queries.paths, *pr.gallery.paths)}
    missing = sorted(p for p in paths if not p.is_file())
    if missing:
        raise DataError(missing[0], f"image file does not exist ({len(missing)} of {len(paths)} "
                                    f"images of split {split!r} are missing)")


def _gallery_only(row: dict, manifest_path: Path) -> bool:
    meta = row["query_meta"]
    if meta is None or (isinstance(meta, float) and np.isnan(meta)) or meta == "":
        return False
    try:
        parsed = json.loads(meta)
    except json.JSONDecodeError:
        raise DataError(manifest_path, f"pair row {row['pair_id']}: query_meta is not valid JSON") from None
    return isinstance(parsed, dict) and parsed.get("role") == "gallery"


def _as_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(v) for v in value]
