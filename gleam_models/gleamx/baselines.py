"""The GLEAM-C cosine-similarity baseline: "match" when the two views' embeddings are close enough.

Query and satellite are embedded with the GLEAM-C phase-2 encoder (query view = the record's
modality, satellite view = "satellite"); the threshold maximises accuracy on tuning pairs (train/val,
never the evaluated split) and is then applied unchanged to the evaluation pairs. `pair_cosines` is
also what GLEAM-X can feed to its model as the similarity input.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from data_assets.errors import DataError
from data_assets.gleamx.schema import record_field as _get

EmbedFn = Callable[[list[Path], str], np.ndarray]



def pair_cosines(records: Sequence[Any], embed_fn: EmbedFn, base_dir: Path) -> np.ndarray:
    """Cosine similarity of each record's query and satellite image (float32 [N]).

    Each distinct image is embedded once; embed_fn returns L2-normalised rows."""
    base_dir = Path(base_dir)
    wanted: dict[str, set[str]] = defaultdict(set)  # view -> relative paths
    for r in records:
        wanted[_get(r, "modality")].add(_get(r, "query_path"))
        wanted["satellite"].add(_get(r, "satellite_path"))
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for view, rel_paths in sorted(wanted.items()):
        rels = sorted(rel_paths)
        missing = [p for p in rels if not (base_dir / p).is_file()]
        if missing:
            raise DataError(base_dir / missing[0], f"image of {len(missing)} pair(s) not found")
        emb = embed_fn([base_dir / p for p in rels], view)
        vectors.update({(view, p): e for p, e in zip(rels, emb)})
    if not records:
        return np.zeros(0, dtype=np.float32)
    q = np.stack([vectors[(_get(r, "modality"), _get(r, "query_path"))] for r in records])
    s = np.stack([vectors[("satellite", _get(r, "satellite_path"))] for r in records])
    return (q * s).sum(axis=1).astype(np.float32)


def tune_threshold(cosines: Sequence[float], labels: Sequence[str]) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of "match if cosine >= threshold" on these pairs.

    Candidates lie midway between consecutive distinct cosines (plus below all / above all); among
    equally accurate ones the middle one is taken, the widest margin on both sides."""
    c = np.asarray(cosines, dtype=np.float64)
    y = np.asarray([lab == "match" for lab in labels])
    if len(c) == 0 or len(c) != len(y):
        raise DataError(None, f"threshold tuning needs one label per cosine ({len(c)} cosines, {len(y)} labels)")
    order = np.argsort(c, kind="stable")
    c, y = c[order], y[order]
    # threshold before position i: pairs [0, i) say no_match, [i, n) say match
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_above = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = neg_below + pos_above
    cuts = [0] + [i for i in range(1, len(c)) if c[i] > c[i - 1]] + [len(c)]
    best = max(correct[i] for i in cuts)
    winners = [i for i in cuts if correct[i] == best]
    i = winners[(len(winners) - 1) // 2]
    if i == 0:
        threshold = c[0] - 1e-3
    elif i == len(c):
        threshold = c[-1] + 1e-3
    else:
        threshold = (c[i - 1] + c[i]) / 2
    return float(threshold), float(best / len(c))


def threshold_verdicts(cosines: Sequence[float], threshold: float) -> list[str]:
    return ["match" if float(x) >= threshold else "no_match" for x in cosines]


def gleamc_embed_fn(model_cfg, checkpoint: Path, cache_dir: Path, batch_size: int = 64,
                    device: str = "cpu") -> tuple[EmbedFn, str]:
    """(embed_fn, weights fingerprint) of a trained GLEAM-C encoder (the phase-2 model)."""
    from gleam_models.checkpoint import weights_fingerprint
    from gleam_models.embed import make_embed_fn
    from gleam_models.encoder import load_encoder

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(checkpoint, "GLEAM-C model not found (run the train stage first)")
    encoder = load_encoder(model_cfg, checkpoint).to(device)
    return make_embed_fn(encoder, model_cfg, Path(cache_dir), batch_size), weights_fingerprint(checkpoint)


def cosine_threshold_baseline(tune_records: Sequence[Any], eval_records: Sequence[Any], embed_fn: EmbedFn,
                              base_dir: Path) -> dict:
    """Tune on tune_records, apply to eval_records: threshold, tuning accuracy, eval cosines and verdicts."""
    tune_cos = pair_cosines(tune_records, embed_fn, base_dir)
    threshold, tune_acc = tune_threshold(tune_cos, [_get(r, "label") for r in tune_records])
    eval_cos = pair_cosines(eval_records, embed_fn, base_dir)
    return {"threshold": threshold, "tune_accuracy": tune_acc, "tune_pairs": len(tune_records),
            "cosines": eval_cos.tolist(), "verdicts": threshold_verdicts(eval_cos, threshold)}
