"""GLEAM-X training data: records, stratified subsets, cached tower features, tokenised examples.

The frozen tower sees each image once ever: its tokens and embedding are cached as one
safetensors file per image, keyed by the image's content hash and the tower's fingerprint.
The loss covers the answer tokens only (labels are -100 on the prompt and on padding).
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from data_assets.errors import DataError
from data_assets.gleamx.schema import GleamXRecord, read_records
from data_assets.io import atomic_path, clean_stale_temporaries, sha256_file, sha256_text
from gleam_models.gleamx.consistency import without_restatements
from gleam_models.gleamx.fact_check import without_cover_facts
from gleam_models.gleamx.prompts import COSINE_MARKER, IMAGE_MARKER, MARKERS, build_answer, prompt_text

IGNORE = -100


# ----------------------------------------------------------------------------- records and subsets

def stratum(r) -> tuple[str, str, str]:
    return (r.modality, r.language, r.label)


def stratified_subsample(records: list, n: int | None, seed: int, key=stratum) -> list:
    """`n` records with each (modality, language, label) stratum in proportion (largest remainder);
    deterministic for the seed; all records (in a seeded order) when n is None or >= len."""
    rng = random.Random(seed)
    groups: dict = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    keys = sorted(groups)
    for k in keys:
        rng.shuffle(groups[k])
    if n is None or n >= len(records):
        out = [r for k in keys for r in groups[k]]
    else:
        quota = {k: n * len(groups[k]) / len(records) for k in keys}
        take = {k: int(q) for k, q in quota.items()}
        for k in sorted(keys, key=lambda k: (take[k] - quota[k], k))[: n - sum(take.values())]:
            take[k] += 1
        out = [r for k in keys for r in groups[k][: take[k]]]
    rng.shuffle(out)
    return out


def train_val_records(records_dir: Path, val_fraction: float, seed: int) -> tuple[list, list, str]:
    """(train, val, where val came from). An empty val.jsonl -> val = a share of train LOCATIONS."""
    records_dir = Path(records_dir)
    train = read_records(records_dir / "train.jsonl")
    if not train:
        raise DataError(records_dir / "train.jsonl", "no training records")
    val_path = records_dir / "val.jsonl"
    val = read_records(val_path) if val_path.is_file() else []
    if val:
        return train, val, "val.jsonl"
    locations = sorted({r.query_location_id for r in train})
    held = set(random.Random(seed).sample(locations, max(1, round(len(locations) * val_fraction))))
    inside = lambda r: r.query_location_id in held or r.satellite_location_id in held  # noqa: E731
    return ([r for r in train if not inside(r)], [r for r in train if r.query_location_id in held],
            f"carved from train: {len(held)} of {len(locations)} query locations (val.jsonl empty)")


def answer_for(record: GleamXRecord, tokenizer, sentences: int | None, label_only: bool, max_tokens: int,
               verdict_first: bool = False, drop_restatements: bool = False,
               unmeasured: frozenset[str] = frozenset()) -> str:
    """unmeasured: images whose land cover the prompt calls unclear; the answer says nothing of it."""
    fits = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1 <= max_tokens  # noqa: E731
    explanation = without_restatements(record.explanation, record.language) if drop_restatements else record.explanation
    explanation = without_cover_facts(explanation, record.language, unmeasured)
    return build_answer(explanation, record.label, record.language, sentences, label_only, fits, verdict_first)


# ----------------------------------------------------------------------------- tokenisation

def prompt_ids(tokenizer, modality: str, language: str, use_cosine: bool, tokens_per_image: int,
               image_token_id: int, verdict_first: bool = False, hint: str | None = None) -> list[int]:
    """Token ids of the chat prompt with each marker expanded to its placeholder ids."""
    ids: list[int] = []
    for part in MARKERS.split(prompt_text(tokenizer, modality, language, use_cosine, verdict_first, hint)):
        if part == IMAGE_MARKER:
            ids += [image_token_id] * tokens_per_image
        elif part == COSINE_MARKER:
            ids.append(image_token_id)
        elif part:
            ids += tokenizer(part, add_special_tokens=False)["input_ids"]
    return ids


def training_example(tokenizer, prompt: list[int], answer: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the answer + end-of-turn token are learned, the prompt is not."""
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + target, [IGNORE] * len(prompt) + target


def verdict_weights(tokenizer, answer: str, verdict: str, weight: float,
                    restated: Sequence[str] = (), restated_weight: float = 1.0) -> list[float]:
    """Loss weight per target token of `answer` (+ end-of-turn): `weight` on the tokens that spell
    the verdict line, `restated_weight` on those of the `restated` sentences (the ones that restate
    the verdict), 1 elsewhere. The decision is one or two tokens among ~60 explanation tokens;
    without extra weight the explanation's loss drowns it (label-only training sees nothing else)."""
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    spans = [(answer.rfind(verdict), len(verdict), weight)] + [(answer.find(s), len(s), restated_weight) for s in restated]
    spans = [(start, start + n, w) for start, n, w in spans if start >= 0]
    weights = [max([w for start, end, w in spans if a < end and b > start], default=1.0) for a, b in enc["offset_mapping"]]
    return weights + [1.0]


def pad_batch(seqs: list[list[int]], pad_id: int, left: bool, labels: list[list[int]] | None = None):
    """(input_ids, attention_mask[, labels]) as tensors; left padding for generation."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    lab = torch.full((len(seqs), width), IGNORE, dtype=torch.long) if labels is not None else None
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
        if lab is not None:
            lab[i, sl] = torch.tensor(labels[i])
    return (ids, mask) if lab is None else (ids, mask, lab)


# ----------------------------------------------------------------------------- tower features

@dataclass
class PairInput:
    query_path: Path
    satellite_path: Path
    modality: str


class FeatureCache:
    """Frozen-tower tokens + embedding per image, computed once, on disk as safetensors."""

    def __init__(self, model, vision_fingerprint: str, cache_dir: Path | None, batch_size: int = 32):
        self.model, self.batch_size = model, batch_size
        cfg = model.config
        self.tag = sha256_text(f"{vision_fingerprint}|grid={cfg.grid}|global={cfg.global_token}")[:16]
        self.root = None if cache_dir is None else Path(cache_dir) / "gleamx-features" / self.tag
        self.ram: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _file(self, path: Path, view: str) -> Path | None:
        if self.root is None:
            return None
        key = sha256_text(f"{sha256_file(path)}|{view}")[:32]
        return self.root / key[:2] / f"{key}.safetensors"

    def get_many(self, paths: list[Path], view: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from gleam_models.data import decode_resized

        todo = []
        for p in dict.fromkeys(Path(p) for p in paths):
            if (str(p), view) in self.ram:
                continue
            if not p.is_file():
                raise DataError(p, "image file does not exist")
            f = self._file(p, view)
            if f is not None and f.is_file():
                t = load_file(str(f))
                self.ram[(str(p), view)] = (t["tokens"], t["embedding"])
            else:
                todo.append((p, f))
        size = tuple(self.model.config.vision_config["input_size"][view])
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            images = torch.stack([torch.as_tensor(decode_resized(p, size)) for p, _ in chunk]).permute(0, 3, 1, 2)
            tokens, emb = self.model.encode_images(images)
            for (p, f), t, e in zip(chunk, tokens.cpu(), emb.cpu()):
                self.ram[(str(p), view)] = (t.contiguous(), e.contiguous())
                if f is not None:
                    _write_entry(f, {"tokens": t.contiguous(), "embedding": e.contiguous()})
        return [self.ram[(str(Path(p)), view)] for p in paths]

    def _pair_entries(self, pairs: list[PairInput]) -> tuple[list, list]:
        """(query entries, satellite entries), each (tokens, embedding), in the pairs' order."""
        q: list = [None] * len(pairs)
        for view in sorted({p.modality for p in pairs}):
            idx = [i for i, p in enumerate(pairs) if p.modality == view]
            for i, feat in zip(idx, self.get_many([pairs[i].query_path for i in idx], view)):
                q[i] = feat
        return q, self.get_many([p.satellite_path for p in pairs], "satellite")

    def pair_features(self, pairs: list[PairInput]) -> tuple[torch.Tensor, torch.Tensor]:
        """(image_tokens [N, 2, T, C], GLEAM-C cosine [N]) for query/satellite pairs."""
        q, s = self._pair_entries(pairs)
        tokens = torch.stack([torch.stack([a[0], b[0]]) for a, b in zip(q, s)])
        cosine = torch.stack([(a[1] * b[1]).sum() for a, b in zip(q, s)])
        return tokens, cosine

    def pair_embeddings(self, pairs: list[PairInput]) -> tuple[torch.Tensor, torch.Tensor]:
        """(query embeddings [N, D], satellite embeddings [N, D]): the tower's pooled output."""
        q, s = self._pair_entries(pairs)
        return torch.stack([a[1] for a in q]), torch.stack([b[1] for b in s])


def _write_entry(path: Path, tensors: dict) -> None:
    """One cache file, atomically; drops a killed writer's leftover of the same entry first. A
    concurrent writer of the same entry may remove our temporary: its identical file lands instead."""
    clean_stale_temporaries(path)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
    except FileNotFoundError:
        pass


def record_pair(r: GleamXRecord, base_dir: Path) -> PairInput:
    return PairInput(Path(base_dir) / r.query_path, Path(base_dir) / r.satellite_path, r.modality)
