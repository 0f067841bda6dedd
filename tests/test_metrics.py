"""Retrieval metrics on cases worked out by hand, plus chunked == dense on random data.

Embeddings are points on the unit circle (`on_circle(degrees...)`): cosine similarity falls with
the angle between two points, so "nearest" is "smallest angle" and rankings can be read off.

The hand-worked values follow the reference definitions (see gleam_models/metrics.py):
University-1652 AP = mean over true items i (0-based, at 1-based rank r) of (i/(r-1) + (i+1)/r)/2,
with i/(r-1) read as 1 when r = 1; R@1% = rank <= round(N * 0.01) + 1. VIGOR (Sample4Geo): rank =
1 + items strictly above the true tile, R@1% = rank <= N // 100, hit = nothing outside the
semi-positives strictly above the true tile. mAP_plain = mean of (i+1)/r.
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
    assert m["R@1%"] == pytest.approx(100 / 3)  # gallery of 6: round(0.06) + 1 = the top 1
    # one true item at rank r > 1: precision 0 before it, 1/r at it -> trapezoid 0.5/r
    assert m["AP"] == pytest.approx(100 * (1 + 0.5 / 6 + 0.5 / 3) / 3)
    assert m["mAP_plain"] == pytest.approx(100 * (1 + 1 / 6 + 1 / 3) / 3)  # the old "AP": 1/rank
    assert (m["n_queries"], m["n_gallery"]) == (3, 6)
    assert m["protocol"] == "university1652"
    assert "hit_rate" not in m  # no semi-positives given


def test_ap_with_several_true_items():
    # query at 0; gallery at 5 (true), 10, 15 (true), 20, 25 -> true items at ranks 1 and 3 of 5
    gallery = on_circle(5, 10, 15, 20, 25)
    m = retrieval_metrics(on_circle(0), ["a"], gallery, ["a", "x", "a", "y", "z"], ks=(1,))
    # rank 1: (1 + 1)/2 = 1; rank 3: precision before it 1/2, at it 2/3 -> (1/2 + 2/3)/2 = 7/12
    assert m["AP"] == pytest.approx(100 * (1 + 7 / 12) / 2)
    assert m["mAP_plain"] == pytest.approx(100 * (1 / 1 + 2 / 3) / 2)
    assert m["R@1"] == 100.0
    # the same place seen second and fourth: (0 + 1/2)/2 = 1/4 and (1/3 + 2/4)/2 = 5/12
    m = retrieval_metrics(on_circle(0), ["a"], gallery, ["x", "a", "y", "a", "z"], ks=(1, 2))
    assert m["AP"] == pytest.approx(100 * (1 / 4 + 5 / 12) / 2)
    assert m["mAP_plain"] == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)
    assert (m["R@1"], m["R@2"]) == (0.0, 100.0)


def test_vigor_hit_rate_counts_semi_positives_but_recall_does_not():
    gallery = on_circle(0, 30, 90)
    labels = ["pos", "semi", "other"]
    # q0 at 25: "semi" (5 deg) above "pos" (25 deg), nothing else above it   -> hit, not R@1
    # q1 at 85: "other" first; its positive is "other"                       -> hit and R@1
    # q2 at 50: "semi" (20 deg) above its true "pos", but q2 lists no semi-positives -> neither
    m = retrieval_metrics(on_circle(25, 85, 50), ["pos", "other", "pos"], gallery, labels, ks=(1,),
                          semi_positives=[["semi"], [], []])
    assert m["protocol"] == "vigor"  # chosen because semi-positives exist
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["hit_rate"] == pytest.approx(200 / 3)
    # semi-positives that are all empty: the university1652 protocol, no hit rate at all
    m = retrieval_metrics(on_circle(25), ["pos"], gallery, labels, semi_positives=[[]])
    assert "hit_rate" not in m and m["protocol"] == "university1652"


def test_vigor_hit_needs_the_true_tile_above_every_non_semi_positive():
    # query at 40: semi (30, 10 deg away) first, then other (60, 20 away), then pos (0, 40 away).
    # top-1 is a semi-positive (a hit under "top-1 is good"), but "other" also outranks the true
    # tile, so Sample4Geo's VIGOR code counts a miss
    gallery = on_circle(0, 30, 60)
    m = retrieval_metrics(on_circle(40), ["pos"], gallery, ["pos", "semi", "other"], ks=(1, 3),
                          semi_positives=[["semi"]])
    assert m["hit_rate"] == 0.0 and m["R@1"] == 0.0 and m["R@3"] == 100.0
    # with "other" a semi-positive too, the hit counts
    m = retrieval_metrics(on_circle(40), ["pos"], gallery, ["pos", "semi", "other"], ks=(1,),
                          semi_positives=[["semi", "other"]])
    assert m["hit_rate"] == 100.0


def test_one_percent_cut_offs_of_the_reference_code():
    # University-1652 / Sample4Geo: 0-based CMC index round(N * 0.01) -> top round(N * 0.01) + 1
    assert [one_percent_cutoff(n) for n in (951, 250, 150, 100, 50, 6, 51355)] == [11, 3, 3, 2, 1, 1, 515]
    # VIGOR (Sample4Geo): rank <= N // 100
    assert [one_percent_cutoff(n, "vigor") for n in (951, 250, 150, 100, 99, 51355)] == [9, 2, 1, 1, 0, 513]
    with pytest.raises(ValueError, match="protocol"):
        one_percent_cutoff(10, "cvusa")


@pytest.mark.parametrize("n, inside, outside, protocol", [
    (250, 3, 4, "university1652"), (951, 11, 12, "university1652"),
    (250, 2, 3, "vigor"), (951, 9, 10, "vigor"),
])
def test_recall_at_one_percent_on_galleries_of_250_and_951(n, inside, outside, protocol):
    # gallery items at 0, 0.1, 0.2, ... degrees; a query at 0 ranks g_i at rank i + 1
    gallery = on_circle(*(np.arange(n) * 0.1))
    labels = [f"g{i}" for i in range(n)]
    m = retrieval_metrics(on_circle(0, 0), [f"g{inside - 1}", f"g{outside - 1}"], gallery, labels,
                          ks=(1, inside), protocol=protocol)
    assert m["R@1%"] == 50.0
    assert m[f"R@{inside}"] == 50.0
    assert m["R@1"] == 0.0
    assert m["n_gallery"] == n
    # University AP of the two: 0.5/rank each
    assert m["AP"] == pytest.approx(100 * (0.5 / inside + 0.5 / outside) / 2, rel=1e-6)


def test_distractor_that_outranks_the_truth_lowers_recall():
    # query at 10, its place at 30; a distractor (no query points at it) at 12
    without = retrieval_metrics(on_circle(10), ["p"], on_circle(30, 200), ["p", "far"], ks=(1, 5))
    with_distractor = retrieval_metrics(on_circle(10), ["p"], on_circle(30, 200, 12), ["p", "far", "distractor"],
                                        ks=(1, 5))
    assert without["R@1"] == 100.0 and without["AP"] == 100.0
    assert with_distractor["R@1"] == 0.0 and with_distractor["R@5"] == 100.0
    assert with_distractor["AP"] == pytest.approx(25.0)  # rank 2: 0.5 / 2
    assert with_distractor["mAP_plain"] == pytest.approx(50.0)


def test_ties_count_against_the_query_under_university1652():
    # a collapsed encoder: every embedding identical -> the true item is ranked behind all others
    same = np.ones((4, 8), dtype=np.float32)
    m = retrieval_metrics(same[:2], ["a", "b"], same, ["a", "b", "c", "d"], ks=(1, 4))
    assert m["R@1"] == 0.0
    assert m["R@4"] == 100.0
    assert m["AP"] == pytest.approx(100 * 0.5 / 4)
    assert m["mAP_plain"] == pytest.approx(100 / 4)


def test_ties_count_for_the_query_under_vigor():
    # Sample4Geo's VIGOR code counts only strictly higher scores: a collapsed encoder scores 100
    same = np.ones((4, 8), dtype=np.float32)
    m = retrieval_metrics(same[:2], ["a", "b"], same, ["a", "b", "c", "d"], ks=(1, 4),
                          semi_positives=[["c"], []])
    assert m["protocol"] == "vigor"
    assert m["R@1"] == 100.0 and m["hit_rate"] == 100.0
    assert m["R@1%"] == 0.0  # 4 // 100 = 0: nothing is inside the top 1% of a gallery under 100
    # a partial tie: b ties with the true a, c is strictly above both (query at 0: c at 0, a, b at 30/-30)
    m = retrieval_metrics(on_circle(0), ["a"], on_circle(30, -30, 0), ["a", "b", "c"], ks=(1, 2),
                          semi_positives=[["b"]])
    assert (m["R@1"], m["R@2"], m["hit_rate"]) == (0.0, 100.0, 0.0)
    m = retrieval_metrics(on_circle(0), ["a"], on_circle(30, -30, 0), ["a", "b", "c"], ks=(1, 2),
                          protocol="university1652")
    assert (m["R@1"], m["R@2"]) == (0.0, 0.0)  # b's tie counts against the query: rank 3


def test_embeddings_are_compared_by_cosine():
    # scaling a row changes nothing: rows are L2-normalised before the inner product
    g = on_circle(0, 40)
    m = retrieval_metrics(on_circle(30) * 7.0, ["b"], g * np.array([[100.0], [1.0]], dtype=np.float32), ["a", "b"])
    assert m["R@1"] == 100.0


def _dense_reference(q, q_labels, g, g_labels):
    """The University-1652 baseline's compute_mAP, written out: whole similarity matrix, descending
    sort, CMC from the first good row, AP as a trapezoid over recall steps; plus the textbook AP."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    order = np.argsort(-(q @ g.T), axis=1, kind="stable")
    first, ap, plain = [], [], []
    for i, row in enumerate(order):
        rows_good = np.flatnonzero(np.asarray(g_labels)[row] == q_labels[i])  # 0-based positions
        first.append(rows_good[0] + 1)
        total = 0.0
        for j, pos in enumerate(rows_good):
            precision = (j + 1) / (pos + 1)
            old_precision = j / pos if pos != 0 else 1.0
            total += (old_precision + precision) / 2 / len(rows_good)
        ap.append(total)
        plain.append(np.mean(np.arange(1, len(rows_good) + 1) / (rows_good + 1)))
    return np.array(first), np.array(ap), np.array(plain)


def test_chunked_equals_dense_reference_on_random_data():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(300, 16)).astype(np.float32)
    g_labels = [f"loc{i}" for i in rng.integers(0, 60, size=300)]  # several true items per label
    q = rng.normal(size=(57, 16)).astype(np.float32)
    q_labels = [g_labels[i] for i in rng.integers(0, 300, size=57)]
    first, ap, plain = _dense_reference(q, q_labels, g, g_labels)

    for chunk in (1, 7, None):  # None: one chunk holds everything here
        out = rank_queries(q, q_labels, g, g_labels, chunk_rows=chunk)
        np.testing.assert_array_equal(out.first_rank, first)
        np.testing.assert_allclose(out.ap, ap, rtol=1e-6)
        np.testing.assert_allclose(out.ap_plain, plain, rtol=1e-6)
    m = retrieval_metrics(q, q_labels, g, g_labels, ks=(1, 5, 10), chunk_rows=5)
    assert m["R@10"] == pytest.approx(100 * np.mean(first <= 10))
    assert m["AP"] == pytest.approx(100 * ap.mean())
    assert m["mAP_plain"] == pytest.approx(100 * plain.mean())
    assert m["R@1%"] == pytest.approx(100 * np.mean(first <= 4))  # CMC index round(3.0) = 3: the top 4


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
    # source 1: one query, rank 2 of 100 (cut-off round(1.0) + 1 = 2); source 2: rank 1 of 2
    g1 = on_circle(*np.arange(100) * 1.0)
    a = rank_queries(on_circle(0.6), ["g0"], g1, [f"g{i}" for i in range(100)])  # 1 deg (0.4 away) beats 0
    b = rank_queries(on_circle(0), ["e"], on_circle(5, 90), ["e", "f"])
    m = summarize([a, b], ks=(1,))
    assert m["R@1"] == 50.0 and m["R@1%"] == 100.0
    assert m["AP"] == pytest.approx(100 * (0.25 + 1) / 2)
    assert m["mAP_plain"] == pytest.approx(100 * (0.5 + 1) / 2)
    assert (m["n_queries"], m["n_gallery"]) == (2, 102)
    # a vigor gallery pooled with a university1652 one: each keeps its own cut-off and counting
    c = rank_queries(on_circle(0.6), ["g0"], g1, [f"g{i}" for i in range(100)], semi_positives=[["g1"]],
                     protocol="vigor")
    m = summarize([c, b], ks=(1,))
    assert m["protocol"] == "mixed"
    assert m["R@1%"] == 50.0  # vigor: rank 2 > 100 // 100; b: rank 1 <= 1
    assert m["hit_rate"] == 100.0  # c: only its semi-positive g1 is above g0; b: top-1 true


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
