"""Retrieval metrics for cross-view geo-localization, as the field defines them (percent, 0..100).

- Recall@K: share of queries with a true gallery item in the top K.
- Recall@1%: a true item within the top 1% of the gallery. The cut-off is ceil(1% of the gallery
  size), at least 1: a gallery of 250 gives the top 3 (Sample4Geo's `round()` would give 2).
- AP: average precision over the whole ranked gallery, per query, then averaged (mAP). Several
  gallery items may be true for one query (satellite->drone on University-1652).
- Hit rate (VIGOR): the top-1 item is the positive or one of the query's semi-positives.

A gallery item is true for a query when their labels are equal. Similarity is the inner product
of L2-normalised float32 rows (cosine). Ties are counted against the query: a false item scoring
exactly as high as a true one is ranked ahead of it, so a collapsed encoder that maps everything
to one vector scores ~0, not 100.

Full similarity rows are needed for AP, so they are computed chunk by chunk (numpy matmul over a
bounded number of query rows) and never as one dense [queries x gallery] matrix. `topk` uses FAISS
exact inner-product search for the few best items (pictures, quick looks).

No torch here: everything is numpy, so the module runs anywhere the embeddings can be loaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Sequence

import faiss
import numpy as np
import pandas as pd

from data_assets.errors import DataError

DEFAULT_CHUNK_MB = 256  # similarity rows held at once; ~10 bytes per (query, gallery) cell in flight
_BYTES_PER_CELL = 10  # float32 scores + float32 false-only copy + bool masks


@dataclass(frozen=True)
class QueryOutcomes:
    """Per-query results against one gallery; outcomes from several galleries can be pooled."""

    first_rank: np.ndarray  # int64 [Nq]: 1-based rank of the best-ranked true item
    ap: np.ndarray  # float64 [Nq]: average precision over the full ranking, 0..1
    one_percent: np.ndarray  # int64 [Nq]: the top-1% cut-off of the gallery this query saw
    hit: np.ndarray | None  # bool [Nq]: top-1 is true or semi-positive; None without semi-positives
    n_gallery: int  # size of the gallery these queries were ranked against


def one_percent_cutoff(n_gallery: int) -> int:
    """Top 1% of a gallery, rounded up, at least one item (250 -> 3, 100 -> 1, 51355 -> 514)."""
    return max(1, math.ceil(n_gallery / 100))


def unit_rows(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """float32, C-contiguous, L2-normalised copy of a 2-D array (zero rows stay zero)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(None, f"{what} must be a 2-D array [N, D], got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float32).copy()
    if not np.isfinite(x).all():
        raise DataError(None, f"{what} contain NaN or infinite values")
    faiss.normalize_L2(x)
    return x


def topk(query_emb: np.ndarray, gallery_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine similarity with FAISS: (scores [Nq, k'], indices [Nq, k']), k' = min(k, Ng)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q, g = unit_rows(query_emb, "query embeddings"), unit_rows(gallery_emb, "gallery embeddings")
    _check_dims(q, g)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    scores, indices = index.search(q, min(k, g.shape[0]))
    return scores, indices.astype(np.int64)


def rows_per_chunk(n_gallery: int, chunk_mb: int = DEFAULT_CHUNK_MB) -> int:
    """How many query rows fit the memory budget at once (at least one)."""
    return max(1, (chunk_mb << 20) // (_BYTES_PER_CELL * max(1, n_gallery)))


def rank_queries(
    query_emb: np.ndarray,
    query_labels: Sequence[str],
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[str],
    semi_positives: Sequence[Collection[str]] | None = None,
    chunk_rows: int | None = None,
) -> QueryOutcomes:
    """Rank the full gallery for every query and keep what the metrics need, chunk by chunk."""
    q, g = unit_rows(query_emb, "query embeddings"), unit_rows(gallery_emb, "gallery embeddings")
    _check_dims(q, g)
    if len(query_labels) != len(q) or len(gallery_labels) != len(g):
        raise DataError(None, f"{len(query_labels)} query labels for {len(q)} query rows and "
                              f"{len(gallery_labels)} gallery labels for {len(g)} gallery rows")
    if semi_positives is not None and len(semi_positives) != len(q):
        raise DataError(None, f"{len(semi_positives)} semi-positive lists for {len(q)} queries")

    gallery_codes, uniques = pd.factorize(pd.Index(list(gallery_labels), dtype=object))
    query_codes = pd.Index(uniques).get_indexer(pd.Index(list(query_labels), dtype=object))
    orphans = np.flatnonzero(query_codes < 0)
    if len(orphans):
        raise DataError(None, f"{len(orphans)} of {len(q)} queries have no true item in the gallery "
                              f"(e.g. label {query_labels[orphans[0]]!r})")

    semi_index = _semi_positive_index(semi_positives, uniques, gallery_codes)
    chunk_rows = chunk_rows or rows_per_chunk(len(g))
    first, ap, hit = [], [], []
    for start in range(0, len(q), chunk_rows):
        stop = min(start + chunk_rows, len(q))
        sims = q[start:stop] @ g.T  # [c, Ng] float32, bounded by chunk_rows
        true_mask = gallery_codes[None, :] == query_codes[start:stop, None]
        f, a = _true_item_ranks(sims, true_mask)
        first.append(f)
        ap.append(a)
        if semi_index is not None:
            hit.append(_top1_hits(sims, true_mask, semi_index[start:stop]))
    return QueryOutcomes(
        first_rank=np.concatenate(first),
        ap=np.concatenate(ap),
        one_percent=np.full(len(q), one_percent_cutoff(len(g)), dtype=np.int64),
        hit=np.concatenate(hit) if semi_index is not None else None,
        n_gallery=len(g),
    )


def summarize(outcomes: QueryOutcomes | Sequence[QueryOutcomes], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Pool per-query outcomes (one or several galleries) into percentages.

    When pooling, `n_gallery` is the summed size of the galleries, and a gallery without
    semi-positives counts its plain top-1 hits towards the pooled hit rate.
    """
    parts = [outcomes] if isinstance(outcomes, QueryOutcomes) else list(outcomes)
    first = np.concatenate([p.first_rank for p in parts]) if parts else np.empty(0, np.int64)
    if len(first) == 0:
        raise DataError(None, "no queries to evaluate")
    cutoff = np.concatenate([p.one_percent for p in parts])
    ap = np.concatenate([p.ap for p in parts])
    out: dict = {f"R@{k}": _percent(first <= k) for k in _check_ks(ks)}
    out["R@1%"] = _percent(first <= cutoff)
    out["AP"] = 100.0 * float(ap.mean())
    if any(p.hit is not None for p in parts):
        out["hit_rate"] = _percent(np.concatenate([p.hit if p.hit is not None else p.first_rank == 1 for p in parts]))
    out["n_queries"] = int(len(first))
    out["n_gallery"] = int(sum(p.n_gallery for p in parts))
    return out


def retrieval_metrics(
    query_emb: np.ndarray,
    query_labels: Sequence[str],
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    semi_positives: Sequence[Collection[str]] | None = None,
    chunk_rows: int | None = None,
) -> dict:
    """R@K for each K, R@1%, AP (and hit_rate when semi-positives exist), n_queries, n_gallery."""
    if semi_positives is not None and not any(len(s) for s in semi_positives):
        semi_positives = None  # hit rate is reported only where semi-positives exist
    outcomes = rank_queries(query_emb, query_labels, gallery_emb, gallery_labels, semi_positives, chunk_rows)
    return summarize(outcomes, ks)


# --- the ranking itself -------------------------------------------------------------------------

def _true_item_ranks(sims: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First true rank and AP per row, from full similarity rows.

    With the true scores of a row sorted descending, the i-th true item (0-based) sits at rank
    1 + i + (number of false items scoring >= it): ties with false items count against us.
    """
    n_true = true_mask.sum(axis=1)
    false_scores = np.where(true_mask, -np.inf, sims)
    true_scores = _true_scores_descending(sims, true_mask, n_true)  # [c, max true], NaN padded
    ahead = np.zeros(true_scores.shape, dtype=np.int64)  # false items at or above each true item
    for j in range(true_scores.shape[1]):
        rows = np.flatnonzero(n_true > j)
        block = false_scores if len(rows) == len(sims) else false_scores[rows]
        ahead[rows, j] = (block >= true_scores[rows, j, None]).sum(axis=1)
    position = np.arange(true_scores.shape[1]) + 1  # how many true items up to and including this one
    ranks = ahead + position
    valid = position[None, :] <= n_true[:, None]
    precision = np.where(valid, position / ranks, 0.0)
    return ranks[:, 0].astype(np.int64), precision.sum(axis=1) / n_true


def _true_scores_descending(sims: np.ndarray, true_mask: np.ndarray, n_true: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(true_mask)
    values = sims[rows, cols]
    order = np.lexsort((-values, rows))  # by row, then score descending
    rows, values = rows[order], values[order]
    row_start = np.concatenate([[0], np.cumsum(n_true)[:-1]])
    slot = np.arange(len(rows)) - row_start[rows]
    out = np.full((len(sims), int(n_true.max())), np.nan, dtype=np.float32)
    out[rows, slot] = values
    return out


def _semi_positive_index(semi_positives, uniques, gallery_codes) -> list[np.ndarray] | None:
    """Per query, the gallery indices of its semi-positives (labels absent from the gallery are skipped)."""
    if semi_positives is None:
        return None
    by_code = pd.Series(np.arange(len(gallery_codes))).groupby(gallery_codes).indices
    label_code = pd.Index(uniques)
    out = []
    for labels in semi_positives:
        codes = label_code.get_indexer(pd.Index(list(labels), dtype=object)) if len(labels) else []
        found = [by_code[c] for c in codes if c >= 0]
        out.append(np.concatenate(found) if found else np.empty(0, np.int64))
    return out


def _top1_hits(sims: np.ndarray, true_mask: np.ndarray, semi_idx: list[np.ndarray]) -> np.ndarray:
    """Top-1 is true or semi-positive: the best good score beats every other score (ties lose)."""
    good = true_mask.copy()
    rows = np.repeat(np.arange(len(semi_idx)), [len(s) for s in semi_idx])
    if len(rows):
        good[rows, np.concatenate(semi_idx)] = True
    best_good = np.where(good, sims, -np.inf).max(axis=1)
    best_other = np.where(good, -np.inf, sims).max(axis=1)
    return best_good > best_other


def _check_dims(q: np.ndarray, g: np.ndarray) -> None:
    if len(q) == 0:
        raise DataError(None, "no queries to evaluate (empty query embeddings)")
    if len(g) == 0:
        raise DataError(None, "empty gallery: nothing to retrieve")
    if q.shape[1] != g.shape[1]:
        raise DataError(None, f"query embeddings have {q.shape[1]} dims, gallery embeddings {g.shape[1]}")


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    return ks


def _percent(flags: np.ndarray) -> float:
    return 100.0 * float(np.mean(flags))
