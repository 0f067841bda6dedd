"""Retrieval metrics for cross-view geo-localization, exactly as the field's reference code computes
them (percent, 0..100), so a figure from this project can be set beside a paper's.

Two protocols, chosen per gallery (`protocol=`):

"university1652" (the University-1652 baseline's `compute_mAP`, copied by Sample4Geo's
`evaluate/university.py`; the default):
- R@K: share of queries with a true gallery item in the top K.
- R@1%: the best true item at 0-based position <= round(N * 0.01) (Python's round, half to even),
  i.e. 1-based rank <= round(N * 0.01) + 1: a gallery of 951 gives the top 11, 250 the top 3,
  100 the top 2, 50 the top 1.
- AP: per query, a trapezoid over the recall steps of the ranked gallery: the i-th true item
  (0-based) at 1-based rank r adds (1/n_true) * (i/(r-1) + (i+1)/r) / 2, where i/(r-1) is the
  precision just before it (1 when r = 1): precision is 0 before the first true item, so one true
  item at rank r > 1 gives 0.5/r, not 1/r. Averaged over queries.
- Ties: a false item scoring exactly as high as a true one is ranked ahead of it (the reference
  sorts with argsort, whose order among ties is arbitrary; counting them against the query keeps a
  collapsed encoder at ~0 instead of at an arbitrary figure).

"vigor" (Sample4Geo's `evaluate/vigor.py`, for galleries with semi-positives, one true tile per query):
- rank = 1 + the number of gallery items scoring strictly higher than the true tile (ties count
  for the query, as there); R@K: rank <= K; R@1%: rank <= floor(N / 100), so a gallery under 100
  tiles gives R@1% = 0, as the reference does.
- hit rate: a hit only when no tile that is neither the true tile nor one of the query's
  semi-positives scores strictly higher than the true tile (semi-positives may outrank it).
- AP is still reported with the University-1652 definition (the VIGOR code reports none).

`mAP_plain` keeps the textbook mean average precision (mean over true items of precision at their
ranks; one true item at rank r gives 1/r), which this project reported as "AP" before.

A gallery item is true for a query when their labels are equal. Similarity is the inner product
of L2-normalised float32 rows (cosine).

Full similarity rows are needed for AP, so they are computed chunk by chunk (numpy matmul over a
bounded number of query rows) and never as one dense [queries x gallery] matrix. `topk` uses FAISS
exact inner-product search for the few best items (pictures, quick looks).

No torch here: everything is numpy, so the module runs anywhere the embeddings can be loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Literal, Sequence

import faiss
import numpy as np
import pandas as pd

from data_assets.errors import DataError

DEFAULT_CHUNK_MB = 256  # similarity rows held at once; ~10 bytes per (query, gallery) cell in flight
_BYTES_PER_CELL = 10  # float32 scores + float32 false-only copy + bool masks

Protocol = Literal["university1652", "vigor"]
PROTOCOLS: tuple[Protocol, ...] = ("university1652", "vigor")


@dataclass(frozen=True)
class QueryOutcomes:
    """Per-query results against one gallery; outcomes from several galleries can be pooled."""

    first_rank: np.ndarray  # int64 [Nq]: 1-based rank of the best true item, as the protocol counts ties
    ap: np.ndarray  # float64 [Nq]: University-1652 average precision (trapezoid), 0..1
    ap_plain: np.ndarray  # float64 [Nq]: textbook average precision, 0..1
    one_percent: np.ndarray  # int64 [Nq]: largest 1-based rank that counts for R@1% in this gallery
    hit: np.ndarray | None  # bool [Nq]: VIGOR hit; None outside the vigor protocol
    n_gallery: int  # size of the gallery these queries were ranked against
    protocol: Protocol = "university1652"


def one_percent_cutoff(n_gallery: int, protocol: Protocol = "university1652") -> int:
    """Largest 1-based rank inside the "top 1%" of a gallery, as the reference code computes it.

    university1652: round(N * 0.01) + 1 with Python's round (951 -> 11, 250 -> 3, 150 -> 3, 50 -> 1).
    vigor: N // 100 (951 -> 9, 250 -> 2, 99 -> 0: nothing counts).
    """
    if protocol == "vigor":
        return n_gallery // 100
    _check_protocol(protocol)
    return round(n_gallery * 0.01) + 1  # float product and half-to-even on purpose: as the reference


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
    protocol: Protocol = "university1652",
) -> QueryOutcomes:
    """Rank the full gallery for every query and keep what the metrics need, chunk by chunk.

    `semi_positives` (per query, labels of gallery items) are used by the vigor protocol only.
    """
    _check_protocol(protocol)
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

    vigor = protocol == "vigor"
    semi_index = _semi_positive_index(semi_positives or [()] * len(q), uniques, gallery_codes) if vigor else None
    chunk_rows = chunk_rows or rows_per_chunk(len(g))
    first, ap, ap_plain, hit = [], [], [], []
    for start in range(0, len(q), chunk_rows):
        stop = min(start + chunk_rows, len(q))
        sims = q[start:stop] @ g.T  # [c, Ng] float32, bounded by chunk_rows
        true_mask = gallery_codes[None, :] == query_codes[start:stop, None]
        f, a, p = _true_item_ranks(sims, true_mask)
        if vigor:
            f, h = _vigor_rank_and_hit(sims, true_mask, semi_index[start:stop])
            hit.append(h)
        first.append(f)
        ap.append(a)
        ap_plain.append(p)
    return QueryOutcomes(
        first_rank=np.concatenate(first),
        ap=np.concatenate(ap),
        ap_plain=np.concatenate(ap_plain),
        one_percent=np.full(len(q), one_percent_cutoff(len(g), protocol), dtype=np.int64),
        hit=np.concatenate(hit) if vigor else None,
        n_gallery=len(g),
        protocol=protocol,
    )


def summarize(outcomes: QueryOutcomes | Sequence[QueryOutcomes], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Pool per-query outcomes (one or several galleries) into percentages.

    When pooling, `n_gallery` is the summed size of the galleries; each query keeps its own
    gallery's R@1% cut-off; a university1652 gallery pooled with vigor ones counts its plain top-1
    towards the pooled hit rate; `protocol` is "mixed" when the galleries' protocols differ.
    """
    parts = [outcomes] if isinstance(outcomes, QueryOutcomes) else list(outcomes)
    first = np.concatenate([p.first_rank for p in parts]) if parts else np.empty(0, np.int64)
    if len(first) == 0:
        raise DataError(None, "no queries to evaluate")
    cutoff = np.concatenate([p.one_percent for p in parts])
    out: dict = {f"R@{k}": _percent(first <= k) for k in _check_ks(ks)}
    out["R@1%"] = _percent(first <= cutoff)
    out["AP"] = 100.0 * float(np.concatenate([p.ap for p in parts]).mean())
    out["mAP_plain"] = 100.0 * float(np.concatenate([p.ap_plain for p in parts]).mean())
    if any(p.hit is not None for p in parts):
        out["hit_rate"] = _percent(np.concatenate([p.hit if p.hit is not None else p.first_rank == 1 for p in parts]))
    out["n_queries"] = int(len(first))
    out["n_gallery"] = int(sum(p.n_gallery for p in parts))
    protocols = {p.protocol for p in parts}
    out["protocol"] = protocols.pop() if len(protocols) == 1 else "mixed"
    return out


def retrieval_metrics(
    query_emb: np.ndarray,
    query_labels: Sequence[str],
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    semi_positives: Sequence[Collection[str]] | None = None,
    chunk_rows: int | None = None,
    protocol: Protocol | None = None,
) -> dict:
    """R@K for each K, R@1%, AP, mAP_plain (and hit_rate under vigor), n_queries, n_gallery, protocol.

    protocol None: "vigor" when some query has semi-positives (VIGOR-style data), else "university1652".
    """
    if protocol is None:
        protocol = "vigor" if semi_positives is not None and any(len(s) for s in semi_positives) else "university1652"
    outcomes = rank_queries(query_emb, query_labels, gallery_emb, gallery_labels, semi_positives, chunk_rows,
                            protocol)
    return summarize(outcomes, ks)


# --- the ranking itself -------------------------------------------------------------------------

def _true_item_ranks(sims: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First true rank, University-1652 AP and plain AP per row, from full similarity rows.

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
    before = np.arange(true_scores.shape[1])  # true items ranked before this one (i)
    ranks = ahead + before + 1
    valid = before[None, :] < n_true[:, None]
    precision = np.where(valid, (before + 1) / ranks, 0.0)
    # precision just before the i-th true item: i / (r - 1); 1 at rank 1 (the reference's old_precision)
    previous = np.where(ranks > 1, before / np.maximum(ranks - 1, 1), 1.0)
    trapezoid = np.where(valid, (previous + precision) / 2, 0.0)
    return ranks[:, 0].astype(np.int64), trapezoid.sum(axis=1) / n_true, precision.sum(axis=1) / n_true


def _vigor_rank_and_hit(sims: np.ndarray, true_mask: np.ndarray,
                        semi_idx: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sample4Geo's VIGOR counting: rank = 1 + items strictly above the (best) true tile; a hit when
    none of those is outside the query's semi-positives."""
    best_true = np.where(true_mask, sims, -np.inf).max(axis=1, keepdims=True)
    above = np.where(true_mask, False, sims > best_true)
    rank = 1 + above.sum(axis=1)
    rows = np.repeat(np.arange(len(semi_idx)), [len(s) for s in semi_idx])
    if len(rows):
        above[rows, np.concatenate(semi_idx)] = False
    return rank.astype(np.int64), ~above.any(axis=1)


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


def _semi_positive_index(semi_positives, uniques, gallery_codes) -> list[np.ndarray]:
    """Per query, the gallery indices of its semi-positives (labels absent from the gallery are skipped)."""
    by_code = pd.Series(np.arange(len(gallery_codes))).groupby(gallery_codes).indices
    label_code = pd.Index(uniques)
    out = []
    for labels in semi_positives:
        codes = label_code.get_indexer(pd.Index(list(labels), dtype=object)) if len(labels) else []
        found = [by_code[c] for c in codes if c >= 0]
        out.append(np.concatenate(found) if found else np.empty(0, np.int64))
    return out


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


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
