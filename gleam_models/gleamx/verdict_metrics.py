"""Verdict metrics: accuracy (with a 95% Wilson interval), precision, recall, F1; positive = "match".

An answer without a parseable verdict (None) is counted WRONG, never dropped: on a match pair it is a
missed positive (FN); on a non-match pair it is simply not a true negative (it made no claim of a
match, so precision's denominator is untouched). Its share is reported as `unparseable`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

from data_assets.errors import DataError

LABELS = ("match", "no_match")
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1], sane at 0 or n)."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def verdict_metrics(labels: Sequence[str], verdicts: Sequence[str | None]) -> dict:
    """Accuracy, its 95% CI, precision/recall/F1 (positive = match), the unparseable share, counts."""
    if len(labels) != len(verdicts):
        raise DataError(None, f"{len(labels)} labels but {len(verdicts)} verdicts")
    bad = [v for v in verdicts if v is not None and v not in LABELS]
    if bad:
        raise DataError(None, f"verdicts must be match, no_match or None; got {bad[0]!r}")
    tp = sum(y == "match" and v == "match" for y, v in zip(labels, verdicts))
    fp = sum(y == "no_match" and v == "match" for y, v in zip(labels, verdicts))
    tn = sum(y == "no_match" and v == "no_match" for y, v in zip(labels, verdicts))
    fn = sum(y == "match" and v != "match" for y, v in zip(labels, verdicts))  # None on a match = missed
    n, unparsed = len(labels), sum(v is None for v in verdicts)
    correct = tp + tn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    lo, hi = wilson_interval(correct, n)
    return {
        "n": n, "accuracy": _ratio(correct, n), "accuracy_ci95": [lo, hi],
        "precision": precision, "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "unparseable": _ratio(unparsed, n),
        "predicted_match_share": _ratio(tp + fp, n),  # a biased model shows here (the paper's base model)
        "counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "unparseable": unparsed},
    }


def grouped_verdict_metrics(labels: Sequence[str], verdicts: Sequence[str | None],
                            groups: dict[str, Sequence[str]]) -> dict:
    """{"overall": ..., "<group name>": {value: metrics}} e.g. groups={"modality": [...], "language": [...]}."""
    out = {"overall": verdict_metrics(labels, verdicts)}
    for name, keys in groups.items():
        if len(keys) != len(labels):
            raise DataError(None, f"group {name!r} has {len(keys)} keys for {len(labels)} answers")
        idx = defaultdict(list)
        for i, key in enumerate(keys):
            idx[key].append(i)
        out[name] = {key: verdict_metrics([labels[i] for i in rows], [verdicts[i] for i in rows])
                     for key, rows in sorted(idx.items())}
    return out
