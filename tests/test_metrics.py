"""Retrieval metrics on cases worked out by hand, plus chunked == dense on random data.

Embeddings are points on the unit circle (`on_circle(degrees...)`): cosine similarity falls with
the angle between two points, so "nearest" is "smallest angle" and rankings can be read off.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from data_assets.errors import DataError
from gleam_models.metrics import (
    one_percent_cutoff, rank_queries, retrieval_metrics, rows_per_chunk, summarize, topk,
)


def on_circle(*degrees: float) -> np.ndarray:
    r = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(r), np.sin(r)], axis=1).astype(np.float32)


def test_recall_at_k_and_ap_by_hand():
    # gallery g0..g5 at 0, 20, 40, 60, 80, 100 degrees
    gallery = on_circle(0, 20, 40, 60, 80, 100)
    labels = ["g0", "g1", "g2", "g3", "g4", "g5"]
    # q0 at 0, true g0: g0 is nearest                                   -> rank 1
    # q1 at 45, true g5 (100): order 40, 60, 20, 80, 0, 100            -> rank 6
    # q2 at 65, true g2 (40): order 60 (5), 80 (15), 40 (25)           -> rank 3
    queries = on_circle(0, 45, 65)
    m = retrieval_metrics(queries, ["g0", "g5", "g2"], gallery, labels, ks=(1, 5, 10))
    assert m["R@1"] == pytest.approx(100 / 3)  # rank 1 only
    assert m["R@5"] == pytest.approx(200 / 3)  # ranks 1 and 3
    assert m["R@10"] == pytest.approx(100.0)
    assert m["R@1%"] == pytest.approx(100 / 3)  # gallery of 6: the top 1% is the top 1
    assert m["AP"] == pytest.approx(100 * (1 + 1 / 6 + 1 / 3) / 3)  # one true item: AP = 1/rank
    assert (m["n_queries"], m["n_gallery"]) == (3, 6)
    assert "hit_rate" not in m  # no semi-positives given


def test_ap_with_several_true_items():
    # query at 0; gallery at 5 (true), 10, 15 (true), 20, 25 -> true items at ranks 1 and 3 of 5
    gallery = on_circle(5, 10, 15, 20, 25)
    m = retrieval_metrics(on_circle(0), ["a"], gallery, ["a", "x", "a", "y", "z"], ks=(1,))
    assert m["AP"] == pytest.approx(100 * (1 / 1 + 2 / 3) / 2)
    assert m["R@1"] == 100.0
    # the same place seen second and fourth: precision 1/2 and 2/4
    m = retrieval_metrics(on_circle(0), ["a"], gallery, ["x", "a", "y", "a", "z"], ks=(1, 2))
    assert m["AP"] == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)
    assert (m["R@1"], m["R@2"]) == (0.0, 100.0)


def test_hit_rate_counts_semi_positives_but_recall_does_not():
    gallery = on_circle(0, 30, 90)
    labels = ["pos", "semi", "other"]
    # q0 at 25: top-1 is "semi" (5 deg) before "pos" (25 deg)   -> hit, not R@1
    # q1 at 85: top-1 is "other"; its positive is "other"        -> hit and R@1
    # q2 at 50: top-1 is "semi" (20 deg) but q2 lists no semi-positives, true "pos" -> neither
    m = retrieval_metrics(on_circle(25, 85, 50), ["pos", "other", "pos"], gallery, labels, ks=(1,),
                          semi_positives=[["semi"], [], []])
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["hit_rate"] == pytest.approx(200 / 3)
    # semi-positives that are all empty: no hit rate at all
    m = retrieval_metrics(on_circle(25), ["pos"], gallery, labels, semi_positives=[[]])
    assert "hit_rate" not in m


def test_recall_at_one_percent_rounds_up_on_a_gallery_of_250():
    # 250 gallery items at 0, 0.5, 1.0, ... degrees; 1% of 250 = 2.5 -> ceil -> the top 3
    assert one_percent_cutoff(250) == 3
    assert [one_percent_cutoff(n) for n in (1, 99, 100, 101, 51355)] == [1, 1, 1, 2, 514]
    gallery = on_circle(*(np.arange(250) * 0.5))
    labels = [f"g{i}" for i in range(250)]
    # both queries at 0: g2 (1.0 deg) is rank 3 -> inside; g3 (1.5 deg) is rank 4 -> outside
    m = retrieval_metrics(on_circle(0, 0), ["g2", "g3"], gallery, labels, ks=(1, 3))
    assert m["R@1%"] == 50.0
    assert m["R@3"] == 50.0
    assert m["R@1"] == 0.0


def test_distractor_that_outranks_the_truth_lowers_recall():
    # query at 10, its place at 30; a distractor (no query points at it) at 12
    without = retrieval_metrics(on_circle(10), ["p"], on_circle(30, 200), ["p", "far"], ks=(1, 5))
    with_distractor = retrieval_metrics(on_circle(10), ["p"], on_circle(30, 200, 12), ["p", "far", "distractor"],
                                        ks=(1, 5))
    assert without["R@1"] == 100.0 and without["AP"] == 100.0
    assert with_distractor["R@1"] == 0.0 and with_distractor["R@5"] == 100.0
    assert with_distractor["AP"] == pytest.approx(50.0)


def test_ties_count_against_the_query():
    # a collapsed encoder: every embedding identical -> the true item is ranked behind all others
    same = np.ones((4, 8), dtype=np.float32)
    m = retrieval_metrics(same[:2], ["a", "b"], same, ["a", "b", "c", "d"], ks=(1, 4),
                          semi_positives=[["c"], []])
    assert m["R@1"] == 0.0 and m["hit_rate"] == 0.0
    assert m["R@4"] == 100.0
    assert m["AP"] == pytest.approx(100 / 4)


def test_embeddings_are_compared_by_cosine():
    # scaling a row changes nothing: rows are L2-normalised before the inner product
    g = on_circle(0, 40)
    m = retrieval_metrics(on_circle(30) * 7.0, ["b"], g * np.array([[100.0], [1.0]], dtype=np.float32), ["a", "b"])
    assert m["R@1"] == 100.0


def _dense_reference(q, q_labels, g, g_labels):
    """Textbook version: the whole similarity matrix, argsort, AP by its definition."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1, kind="stable")
    first, ap = [], []
    for i, row in enumerate(order):
        hits = np.asarray(g_labels)[row] == q_labels[i]
        ranks = np.flatnonzero(hits) + 1
        first.append(ranks[0])
        ap.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return np.array(first), np.array(ap)


def test_chunked_equals_dense_reference_on_random_data():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(300, 16)).astype(np.float32)
    g_labels = [f"loc{i}" for i in rng.integers(0, 60, size=300)]  # several true items per label
    q = rng.normal(size=(57, 16)).astype(np.float32)
    q_labels = [g_labels[i] for i in rng.integers(0, 300, size=57)]
    first, ap = _dense_reference(q, q_labels, g, g_labels)

    for chunk in (1, 7, None):  # None: one chunk holds everything here
        out = rank_queries(q, q_labels, g, g_labels, chunk_rows=chunk)
        np.testing.assert_array_equal(out.first_rank, first)
        np.testing.assert_allclose(out.ap, ap, rtol=1e-6)
    m = retrieval_metrics(q, q_labels, g, g_labels, ks=(1, 5, 10), chunk_rows=5)
    assert m["R@10"] == pytest.approx(100 * np.mean(first <= 10))
    assert m["AP"] == pytest.approx(100 * ap.mean())
    assert m["R@1%"] == pytest.approx(100 * np.mean(first <= 3))  # 1% of 300 = 3


def test_topk_matches_a_full_sort():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(9, 12)), rng.normal(size=(40, 12))
    scores, idx = topk(q, g, 5)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = qn @ gn.T
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, idx, axis=1), rtol=1e-5)
    assert topk(q, g[:3], 5)[1].shape == (9, 3)  # k larger than the gallery: the whole gallery


def test_memory_stays_bounded_by_the_chunk_budget():
    # 2000 x 3000 dense float32 scores would be 24 MB; a 1 MB budget must stay far below that
    rng = np.random.default_rng(2)
    g = rng.normal(size=(3000, 8)).astype(np.float32)
    labels = [str(i) for i in range(3000)]
    q = rng.normal(size=(2000, 8)).astype(np.float32)
    chunk = rows_per_chunk(3000, chunk_mb=1)
    assert chunk * 3000 * 10 <= 1 << 20
    tracemalloc.start()
    rank_queries(q, labels[:2000], g, labels, chunk_rows=chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_pooling_outcomes_from_two_galleries():
    # source 1: one query, rank 2 of 100 (cut-off 1); source 2: one query, rank 1 of 2
    g1 = on_circle(*np.arange(100) * 1.0)
    a = rank_queries(on_circle(0.6), ["g0"], g1, [f"g{i}" for i in range(100)])  # 1 deg (0.4 away) beats 0
    b = rank_queries(on_circle(0), ["e"], on_circle(5, 90), ["e", "f"])
    m = summarize([a, b], ks=(1,))
    assert m["R@1"] == 50.0 and m["R@1%"] == 50.0
    assert m["AP"] == pytest.approx(100 * (0.5 + 1) / 2)
    assert (m["n_queries"], m["n_gallery"]) == (2, 102)


def test_bad_inputs_raise_clear_errors():
    g = on_circle(0, 90)
    with pytest.raises(DataError, match="no true item in the gallery"):
        retrieval_metrics(on_circle(0), ["missing"], g, ["a", "b"])
    with pytest.raises(DataError, match="no queries"):
        retrieval_metrics(np.zeros((0, 2), np.float32), [], g, ["a", "b"])
    with pytest.raises(DataError, match="empty gallery"):
        retrieval_metrics(on_circle(0), ["a"], np.zeros((0, 2), np.float32), [])
    with pytest.raises(DataError, match="dims"):
        retrieval_metrics(on_circle(0), ["a"], np.ones((2, 3), np.float32), ["a", "b"])
    with pytest.raises(DataError, match="NaN"):
        retrieval_metrics(np.full((1, 2), np.nan, np.float32), ["a"], g, ["a", "b"])
    with pytest.raises(DataError, match="labels"):
        retrieval_metrics(on_circle(0), ["a", "b"], g, ["a", "b"])
    with pytest.raises(DataError, match="no queries"):
        summarize([], ks=(1,))
