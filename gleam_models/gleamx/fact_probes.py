"""Measured facts: linear probes that read an image's land cover from its GLEAM-C embedding.

A 135M LM with a few image tokens states the facts of its explanations mostly wrong (the dominant
land cover and its share are ~90% of what it says, and ~27% of it was true). These probes are
fitted on the training locations' ground truth, per view (satellite and each query modality):
a multinomial logistic regression for the dominant cover class and a ridge regression per class
for its share. Their reading of both images goes into the prompt in the teacher's own phrases
(`hint_text`), so the explanation can state what was measured instead of guessing.

The probes see only the image: ground truth is used to fit them, never to describe a test pair.
Training prompts carry cross-fitted readings (each location read by probes fitted without it), so
the LM learns to trust them as much as they deserve on new ground. Weights are plain arrays in a
safetensors file (no pickle).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_assets.errors import DataError
from data_assets.gleamx import facts as F

CLASSES = ("road", "building", "tree", "other")  # what `dominant` can be (bare counts as other, as the checker does)
MIN_SAMPLES = 8  # a view with fewer labelled images is read by the probe fitted on every view
FOLDS = 5  # cross-fitting of the training prompts' readings
ALL_VIEWS = "all"
PROBES_FILE = "fact_probes.safetensors"  # beside a trained model's weights


def dominant_class(truth: dict) -> str:
    return "other" if truth.get("dominant") in ("bare", "other", None) else truth["dominant"]


@dataclass
class ViewProbe:
    dominant_w: np.ndarray  # [C, D] logistic weights over CLASSES (classes never seen get -inf bias)
    dominant_b: np.ndarray  # [C]
    share_w: np.ndarray  # [C, D] ridge weights: the share of each class (NaN rows: class never annotated)
    share_b: np.ndarray  # [C]

    def read(self, emb: np.ndarray) -> list[dict]:
        """One truth-like dict per row of emb [N, D]: {"dominant", "land_cover": {class: share},
        "confidence": the dominant class's probability}."""
        logits = emb @ self.dominant_w.T + self.dominant_b
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        shares = np.clip(emb @ self.share_w.T + self.share_b, 0.0, 1.0)
        out = []
        for row_probs, row_shares in zip(probs, shares):
            best = int(np.argmax(row_probs))
            cover = {c: round(float(s), 2) for c, s in zip(CLASSES, row_shares) if np.isfinite(s)}
            out.append({"dominant": CLASSES[best], "land_cover": cover, "confidence": round(float(row_probs[best]), 2)})
        return out


def fit_view(emb: np.ndarray, truths: list[dict]) -> ViewProbe:
    from sklearn.linear_model import LogisticRegression, Ridge

    dims = emb.shape[1]
    labels = np.array([CLASSES.index(dominant_class(t)) for t in truths])
    dom_w, dom_b = np.zeros((len(CLASSES), dims)), np.full(len(CLASSES), -np.inf)
    seen = np.unique(labels)
    if len(seen) == 1:
        dom_b[seen[0]] = 0.0
    else:
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(emb, labels)
        rows = clf.coef_ if len(seen) > 2 else np.stack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        bias = clf.intercept_ if len(seen) > 2 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
        dom_w[seen], dom_b[seen] = rows, bias
    share_w, share_b = np.full((len(CLASSES), dims), np.nan), np.full(len(CLASSES), np.nan)
    for i, cls in enumerate(CLASSES):
        values = [((t.get("land_cover") or {}).get(cls), k) for k, t in enumerate(truths)]
        known = [(v, k) for v, k in values if v is not None]
        if len(known) >= MIN_SAMPLES:
            reg = Ridge(alpha=1.0).fit(emb[[k for _, k in known]], [v for v, _ in known])
            share_w[i], share_b[i] = reg.coef_, reg.intercept_
    return ViewProbe(dom_w, dom_b, share_w, share_b)


class FactProbes:
    """One ViewProbe per view with enough labelled images, and one over all views as a fallback."""

    def __init__(self, probes: dict[str, ViewProbe]):
        self.probes = probes

    @classmethod
    def fit(cls, emb: np.ndarray, views: list[str], truths: list[dict]) -> FactProbes:
        views_arr = np.array(views)
        probes = {ALL_VIEWS: fit_view(emb, truths)}
        for view in sorted(set(views)):
            idx = np.flatnonzero(views_arr == view)
            if len(idx) >= MIN_SAMPLES:
                probes[view] = fit_view(emb[idx], [truths[i] for i in idx])
        return cls(probes)

    def read(self, emb: np.ndarray, views: list[str]) -> list[dict]:
        out: list[dict | None] = [None] * len(views)
        for view in sorted(set(views)):
            idx = [i for i, v in enumerate(views) if v == view]
            for i, reading in zip(idx, self.probes.get(view, self.probes[ALL_VIEWS]).read(emb[idx])):
                out[i] = reading
        return out  # type: ignore[return-value]

    def save(self, path: Path) -> None:
        """Same probes, same bytes: the file is part of a DVC output (models/gleamx*), and safetensors
        alone writes the metadata keys in a random order (fresh clones' dvc.lock differed by that)."""
        import torch

        from gleam_models.safetensors_io import save_file

        tensors = {f"{view}.{name}": torch.from_numpy(np.ascontiguousarray(getattr(p, name), dtype=np.float32))
                   for view, p in self.probes.items() for name in ("dominant_w", "dominant_b", "share_w", "share_b")}
        save_file(tensors, path, metadata={"classes": json.dumps(CLASSES), "views": json.dumps(sorted(self.probes))})

    @classmethod
    def load(cls, path: Path) -> FactProbes:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(path, "fact probes missing: this model was trained with gleamx_model.fact_hints")
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            if json.loads(meta["classes"]) != list(CLASSES):
                raise DataError(path, f"fact probes over classes {meta['classes']}, expected {list(CLASSES)}")
            probes = {view: ViewProbe(*(f.get_tensor(f"{view}.{n}").astype(np.float64)
                                        for n in ("dominant_w", "dominant_b", "share_w", "share_b")))
                      for view in json.loads(meta["views"])}
        return cls(probes)


def cross_fitted(emb: np.ndarray, views: list[str], truths: list[dict], groups: list[str], seed: int = 0) -> list[dict]:
    """Each image read by probes fitted on the other folds' locations (GroupKFold by location)."""
    from sklearn.model_selection import GroupKFold

    out: list[dict | None] = [None] * len(views)
    n_groups = len(set(groups))
    if n_groups < 2:
        return FactProbes.fit(emb, views, truths).read(emb, views)
    splitter = GroupKFold(n_splits=min(FOLDS, n_groups), shuffle=True, random_state=seed)
    for fit_idx, read_idx in splitter.split(emb, groups=groups):
        probes = FactProbes.fit(emb[fit_idx], [views[i] for i in fit_idx], [truths[i] for i in fit_idx])
        for i, reading in zip(read_idx, probes.read(emb[read_idx], [views[i] for i in read_idx])):
            out[i] = reading
    return out  # type: ignore[return-value]


# what the prompt says of an image whose reading is below gleamx_model.fact_hint_min_confidence
UNCLEAR = {"en": "not clear enough to measure", "zh": "无法可靠测量"}


def is_measured(reading: dict, min_confidence: float = 0.0) -> bool:
    """Whether the reading is sure enough to be stated (readings without a confidence always are)."""
    return reading.get("confidence", 1.0) >= min_confidence


def reading_phrase(reading: dict, lang: str, min_confidence: float = 0.0) -> str:
    """The teacher's phrase for the dominant cover and its share ("mostly tree cover (about 60% of the area)")."""
    if not is_measured(reading, min_confidence):
        return UNCLEAR[lang]
    dom = reading["dominant"]
    share = reading["land_cover"].get(dom)
    return F.dominant_phrase({"dominant": dom, "land_cover": {dom: share} if share is not None else {}}, lang)


def hint_text(query: dict, satellite: dict, lang: str, languages: list[str] | None = None,
              min_confidence: float = 0.0) -> str | None:
    """The prompt line with both readings, in the record's language (None where `languages` leaves it out);
    a reading below min_confidence is said to be unclear instead of stated."""
    if languages is not None and lang not in languages:
        return None
    q, s = (reading_phrase(r, lang, min_confidence) for r in (query, satellite))
    if lang == "en":
        return f"Measured: image 1 is {q}; image 2 is {s}."
    return F._space_zh(f"测量：图1{q}；图2{s}。")


def unmeasured_images(query: dict, satellite: dict, min_confidence: float) -> frozenset[str]:
    """The images ("query", "satellite") whose land cover the prompt calls unclear."""
    return frozenset(name for name, r in (("query", query), ("satellite", satellite))
                     if not is_measured(r, min_confidence))
