"""GLEAM-X inference: greedy, batched (left padding), KV cache; the API that evaluation and the CLI use.

    explainer = load_explainer(Path("models/gleamx"), cache_dir=Path(".cache"))
    [out] = explainer.explain([ExplainInput(query, satellite, "uav", "en")], batch_size=32)
    out.verdict, out.text, out.new_tokens, out.seconds
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessorList

from data_assets.errors import ConfigError, DataError
from data_assets.io import load_image
from gleam_models.gleamx.build import build_model, load_merged, load_trained
from gleam_models.gleamx.config import GleamXModelConfig
from gleam_models.gleamx.data import FeatureCache, PairInput, pad_batch, prompt_ids
from gleam_models.gleamx.fact_probes import PROBES_FILE, FactProbes, hint_text
from gleam_models.gleamx.model_dir import MERGED_FORMAT, VLM_ADAPTER_FORMAT, VLM_MERGED_FORMAT, read_model_meta
from gleam_models.gleamx.prompts import check_language, parse_verdict
from gleam_models.gleamx.stance import StanceGuard


@dataclass
class ExplainInput:
    query_path: Path
    satellite_path: Path
    modality: str  # uav | street_map | panorama | ground
    language: str  # en | zh
    cosine: float | None = None  # GLEAM-C similarity; None = computed with the model's own tower


@dataclass
class ExplainOutput:
    text: str  # the generated answer (explanation + verdict line)
    verdict: str | None  # "match" | "no_match" | None (no parseable verdict line)
    new_tokens: int  # generated tokens, end-of-turn included
    seconds: float  # this item's share of its batch's generation time
    stance_changed: int = 0  # decoding steps where the stance guard (stance.py) changed the greedy token


class GleamXExplainer:
    def __init__(self, model, tokenizer, meta: dict, device: str = "cpu", cache_dir: Path | None = None,
                 max_new_tokens: int = 72, stance_guard: bool = False):
        self.model, self.tokenizer, self.meta, self.device = model.to(device).eval(), tokenizer, meta, device
        self.max_new_tokens = max_new_tokens
        self.stance_guard = stance_guard and self._writes_explanations()
        self.features = FeatureCache(model, meta.get("vision_fingerprint", "unknown"), cache_dir)
        self.stats = {"new_tokens": 0, "seconds": 0.0}
        # a model trained with fact_hints reads both images with its probes (the untuned base model has none)
        self.probes = None
        if getattr(model.config, "fact_hints", False) and meta.get("model_dir"):
            self.probes = FactProbes.load(Path(meta["model_dir"]) / PROBES_FILE)

    def hints(self, items: list[ExplainInput]) -> list[str | None]:
        """The prompt's measured-facts line per item (None without probes)."""
        if self.probes is None:
            return [None] * len(items)
        q, s = self.features.pair_embeddings([PairInput(Path(i.query_path), Path(i.satellite_path), i.modality)
                                              for i in items])
        q_read = self.probes.read(q.numpy(), [i.modality for i in items])
        s_read = self.probes.read(s.numpy(), ["satellite"] * len(items))
        cfg = self.model.config
        return [hint_text(a, b, i.language, cfg.fact_hint_languages, getattr(cfg, "fact_hint_min_confidence", 0.0))
                for a, b, i in zip(q_read, s_read, items)]

    def _writes_explanations(self) -> bool:
        """A fine-tuned verdict-first explainer: the only kind whose opening follows a verdict line."""
        return self._verdict_first() and not self.meta.get("label_only") and not self.meta.get("untuned")

    def _verdict_first(self) -> bool:
        return bool(self.meta.get("model", {}).get("verdict_first", False))

    def _stance(self, items: list[ExplainInput]) -> StanceGuard | None:
        if not self.stance_guard:
            return None
        return StanceGuard(self.tokenizer, [i.modality for i in items], [i.language for i in items])

    @property
    def tokens_per_s(self) -> float:
        return self.stats["new_tokens"] / max(1e-9, self.stats["seconds"])

    def check(self, item: ExplainInput) -> None:
        check_language(item.language)
        views = self.model.config.vision_config["input_size"]
        if item.modality not in views or item.modality == "satellite":
            raise ConfigError(f"modality {item.modality!r} is unknown; use one of: "
                              f"{', '.join(v for v in views if v != 'satellite')}")
        for path in (item.query_path, item.satellite_path):
            load_image(Path(path))  # DataError naming the file when missing or unreadable

    def explain(self, items: list[ExplainInput], batch_size: int = 32,
                max_new_tokens: int | None = None) -> list[ExplainOutput]:
        for item in items:
            self.check(item)
        out: list[ExplainOutput] = []
        for start in range(0, len(items), batch_size):
            out += self._batch(items[start:start + batch_size], max_new_tokens or self.max_new_tokens)
        return out

    @torch.no_grad()
    def _batch(self, items: list[ExplainInput], max_new_tokens: int) -> list[ExplainOutput]:
        cfg, tok = self.model.config, self.tokenizer
        tokens, cosine = self.features.pair_features(
            [PairInput(Path(i.query_path), Path(i.satellite_path), i.modality) for i in items])
        given = torch.tensor([float("nan") if i.cosine is None else i.cosine for i in items])
        cosine = torch.where(torch.isnan(given), cosine, given)
        prompts = [prompt_ids(tok, i.modality, i.language, cfg.use_cosine, cfg.tokens_per_image, cfg.image_token_id,
                              getattr(cfg, "verdict_first", False), hint) for i, hint in zip(items, self.hints(items))]
        ids, mask = pad_batch(prompts, tok.pad_token_id, left=True)
        stance = self._stance(items)
        t0 = time.perf_counter()
        new = self.model.generate(ids.to(self.device), mask.to(self.device), tokens.to(self.device),
                                  cosine.to(self.device) if cfg.use_cosine else None,
                                  max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id,
                                  logits_processor=LogitsProcessorList([stance]) if stance else None)
        return self._outputs(items, new.cpu().tolist(), time.perf_counter() - t0, stance)

    def _outputs(self, items: list[ExplainInput], rows: list[list[int]], seconds: float,
                 stance: StanceGuard | None = None) -> list[ExplainOutput]:
        tok = self.tokenizer
        results = []
        for k, (item, row) in enumerate(zip(items, rows)):
            ends = [j for j, t in enumerate(row) if t == tok.eos_token_id]
            row = row[: ends[0] + 1] if ends else row
            text = tok.decode(row, skip_special_tokens=True).strip()
            results.append(ExplainOutput(text, parse_verdict(text, item.language), len(row), seconds / len(items),
                                         stance.changed[k] if stance else 0))
        self.stats["new_tokens"] += sum(r.new_tokens for r in results)
        self.stats["seconds"] += seconds
        return results


class VlmExplainer(GleamXExplainer):
    """The same interface over an off-the-shelf VLM (kind=vlm): its processor makes the inputs."""

    def __init__(self, model, processor, meta: dict, device: str = "cpu", max_new_tokens: int = 72,
                 stance_guard: bool = False):
        self.model, self.processor, self.tokenizer = model.to(device).eval(), processor, processor.tokenizer
        self.meta, self.device, self.max_new_tokens = meta, device, max_new_tokens
        self.stance_guard = stance_guard and self._writes_explanations()
        self.stats = {"new_tokens": 0, "seconds": 0.0}

    def check(self, item: ExplainInput) -> None:
        check_language(item.language)
        for path in (item.query_path, item.satellite_path):
            load_image(Path(path))

    def _batch(self, items: list[ExplainInput], max_new_tokens: int) -> list[ExplainOutput]:
        from gleam_models.gleamx.vlm import vlm_generate

        stance = self._stance(items)
        rows, seconds = vlm_generate(self.model, self.processor, items, max_new_tokens, self._verdict_first(),
                                     LogitsProcessorList([stance]) if stance else None)
        return self._outputs(items, rows, seconds, stance)


def load_explainer(model_dir: Path, device: str = "cpu", cache_dir: Path | None = None,
                   base_dir: Path | None = None, max_new_tokens: int = 72,
                   stance_guard: bool = False) -> GleamXExplainer:
    """A trained adapter directory (models/gleamx/) or a merged one (gleam gleamx-merge).

    `stance_guard`: the explanation may not state the opposite of its verdict line in the teacher's
    stance sentences (stance.py); applies to verdict-first explanation models only.
    """
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if meta.get("format") in (VLM_ADAPTER_FORMAT, VLM_MERGED_FORMAT):
        from gleam_models.gleamx.vlm import load_vlm, load_vlm_trained
        model, processor, meta = (load_vlm_trained(model_dir) if meta["format"] == VLM_ADAPTER_FORMAT else
                                  (*load_vlm(model_dir), meta))
        return VlmExplainer(model, processor, {**meta, "model_dir": str(model_dir)}, device, max_new_tokens,
                            stance_guard)
    if meta.get("format") == MERGED_FORMAT:
        if not (model_dir / "model.safetensors").is_file():
            raise DataError(model_dir / "model.safetensors", "merged GLEAM-X weights missing")
        model, tok, meta = load_merged(model_dir)
    else:
        model, tok, meta = load_trained(model_dir, Path(base_dir or Path.cwd()), cache_dir)
    return GleamXExplainer(model, tok, {**meta, "model_dir": str(model_dir)}, device, cache_dir, max_new_tokens,
                           stance_guard)


def load_base_explainer(model_cfg: GleamXModelConfig, base_dir: Path | None = None, cache_dir: Path | None = None,
                        device: str = "cpu", seed: int = 0, max_new_tokens: int = 72) -> GleamXExplainer:
    """The untuned base model (LM as shipped, projector at its seeded init): the baseline."""
    if model_cfg.kind == "vlm":
        from gleam_models.gleamx.build import resolve_path
        from gleam_models.gleamx.vlm import load_vlm, vlm_fingerprint
        source = resolve_path(model_cfg.lm_source, Path(base_dir or Path.cwd()))
        model, processor = load_vlm(source)
        return VlmExplainer(model, processor, {"lm_source": str(source), "lm_fingerprint": vlm_fingerprint(source),
                                               "untuned": True,
                                               "model": model_cfg.model_dump(mode="json")}, device, max_new_tokens)
    model, tok, info = build_model(model_cfg, Path(base_dir or Path.cwd()), cache_dir, seed)
    return GleamXExplainer(model, tok, {**info, "model_dir": None, "untuned": True}, device, cache_dir, max_new_tokens)
