"""Assemble, save, load and merge GLEAM-X models (kind=llava).

A trained model directory (models/gleamx/) holds only what training changed:
    gleamx.json              format, model config, resolved sources and their fingerprints
    projector.safetensors    the projector(s), fully trained
    adapter/                 the LM's LoRA adapters in peft's format
A merged directory (`gleam gleamx-merge`) is standalone: config.json + model.safetensors
(tower + projector + LM with the adapters folded in) + the tokenizer, loadable by
GleamXForConditionalGeneration.from_pretrained / AutoModel.from_pretrained.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from data_assets.errors import ConfigError, DataError
from data_assets.io import (atomic_directory, atomic_path, read_json, relative_path, sha256_file, sha256_text,
                             write_json)
from gleam_models.gleamx.config import GleamXModelConfig, LoraConfig
from gleam_models.gleamx.fact_probes import PROBES_FILE
from gleam_models.gleamx.model_dir import ADAPTER_FORMAT, MERGED_FORMAT, VLM_ADAPTER_FORMAT, check_model_dir, read_model_meta
from gleam_models.gleamx.modeling import GleamXConfig, GleamXForConditionalGeneration
from gleam_models.gleamx.prompts import fallback_chat_template


def resolve_path(path: str | Path, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


# ----------------------------------------------------------------------------- language model

def resolve_lm_source(source: str, base_dir: Path, cache_dir: Path | None = None) -> Path:
    if source.startswith("registry:"):
        from data_assets.registry_assets import asset_path
        # cache_dir: where an asset assembled from chunk packages (Gemma) is written once
        return asset_path(source.removeprefix("registry:"), cache_dir)
    path = resolve_path(source, base_dir)
    if not path.exists():
        raise DataError(path, "gleamx_model.lm_source: no such GGUF file or model directory")
    return path


def load_language_model(source: str, base_dir: Path, cache_dir: Path | None, cache_dequantised: bool = True):
    """(causal LM in fp32, tokenizer, {"lm_source", "lm_fingerprint"}) from a GGUF file or an HF dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_lm_source(source, base_dir, cache_dir)
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors"))
        fingerprint = _dir_fingerprint(weights) if weights else sha256_text(str(path.resolve()))[:16]
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(path)
    else:
        fingerprint = "gguf:" + sha256_file(path)[:16]
        cached = Path(cache_dir) / "gleamx-lm" / fingerprint.replace(":", "-") if cache_dir and cache_dequantised else None
        if cached is not None and (cached / "config.json").is_file():
            lm = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(cached)
        else:
            lm = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            _drop_gguf_marks(lm)
            if cached is not None:  # dequantised once: later loads skip the GGUF decoding
                with atomic_directory(cached) as tmp:
                    lm.save_pretrained(tmp)
                    tok.save_pretrained(tmp)
    if not getattr(tok, "chat_template", None):  # the Gemma 3 GGUF ships none
        tok.chat_template = fallback_chat_template(lm.config.model_type)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return lm, tok, {"lm_source": str(path), "lm_fingerprint": fingerprint}


def _drop_gguf_marks(lm) -> None:
    """transformers dequantises GGUF to plain fp32 but still flags the model as quantized, which
    blocks save_pretrained (and would follow it into merged configs): drop the flags."""
    lm.hf_quantizer = None
    if hasattr(lm, "is_quantized"):
        lm.is_quantized = False
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config


def _dir_fingerprint(files: list[Path]) -> str:
    from gleam_models.checkpoint import weights_fingerprint
    return sha256_text("|".join(weights_fingerprint(f) for f in files))[:16]


# ----------------------------------------------------------------------------- vision tower

def load_vision_tower(checkpoint: Path):
    """(frozen GLEAM-C encoder, vision_config dict, fingerprint) from a GLEAM-C model.safetensors."""
    from gleam_models.checkpoint import weights_fingerprint
    from gleam_models.encoder import load_encoder, read_checkpoint
    from gleam_models.gleamx.modeling import encoder_config

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(checkpoint, "gleamx_model.vision_checkpoint: GLEAM-C checkpoint not found (train GLEAM-C first)")
    state, meta = read_checkpoint(checkpoint)
    if "backbone" not in meta or "input_size" not in meta:
        raise DataError(checkpoint, "not a GLEAM-C checkpoint (no backbone/input_size in its metadata)")
    proj = state.get("encoder.proj.weight")
    vision = {"backbone": meta["backbone"], "input_size": json.loads(meta["input_size"]),
              "embed_dim": None if proj is None else int(proj.shape[0])}
    encoder = load_encoder(encoder_config(vision), checkpoint)
    vision["feature_dim"] = int(encoder.backbone.num_features)
    encoder.eval().requires_grad_(False)
    return encoder, vision, weights_fingerprint(checkpoint)


# ----------------------------------------------------------------------------- assembly

def build_model(model_cfg: GleamXModelConfig, base_dir: Path, cache_dir: Path | None, seed: int = 0):
    """(untrained GLEAM-X model, tokenizer, sources) with a seeded projector init."""
    if model_cfg.kind != "llava":
        raise ConfigError("gleamx_model.kind=vlm is built by gleam_models.gleamx.vlm, not build_model")
    tower, vision, vision_fp = load_vision_tower(resolve_path(model_cfg.vision_checkpoint, base_dir))
    lm, tok, lm_info = load_language_model(model_cfg.lm_source, base_dir, cache_dir, model_cfg.cache_dequantised)
    # a copy: PreTrainedModel.__init__ resets the sub-config's attention implementation, which must
    # not reach the live LM (its causal attention would be lost)
    config = GleamXConfig(text_config=copy.deepcopy(lm.config), vision_config=vision, grid=model_cfg.grid,
                          global_token=model_cfg.global_token, projector_hidden=model_cfg.projector_hidden,
                          use_cosine=model_cfg.use_cosine, verdict_first=model_cfg.verdict_first,
                          image_token_id=len(tok), fact_hints=model_cfg.fact_hints,
                          fact_hint_languages=model_cfg.fact_hint_languages,
                          fact_hint_min_confidence=model_cfg.fact_hint_min_confidence)
    model = GleamXForConditionalGeneration(config, language_model=lm, vision_tower=tower)
    model.init_projectors(seed)
    model.vision_tower.requires_grad_(not model_cfg.freeze_vision)
    # relative to the project root: gleamx.json and summary.json are DVC outputs, the same in every clone
    info = {**lm_info, "lm_source": relative_path(lm_info["lm_source"], base_dir),
            "vision_checkpoint": relative_path(resolve_path(model_cfg.vision_checkpoint, base_dir), base_dir),
            "vision_fingerprint": vision_fp}
    return model, tok, info


def add_lora(model: GleamXForConditionalGeneration, lora: LoraConfig, seed: int) -> None:
    """Wrap the LM with peft LoRA adapters (seeded init); only adapters + projectors train."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    model.language_model.requires_grad_(False)
    torch.manual_seed(seed)
    peft_cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                              target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")
    model.language_model = get_peft_model(model.language_model, peft_cfg)


def projector_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if k.startswith(("projector.", "cosine_projector."))}


def save_trained(model, out_dir: Path, model_cfg: GleamXModelConfig, info: dict, extra: dict | None = None) -> None:
    """Write the adapter layout (module docstring), each part atomically, gleamx.json last."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "projector.safetensors") as tmp:
        save_file(projector_state(model), str(tmp))
    # peft writes the LM's load path (a cache folder or an absolute path) into adapter_config.json and
    # its README: name the source as gleamx.json does instead (loading passes the base model itself);
    # and target_modules is a set, listed in a per-process hash order: sort it (a DVC output)
    for peft_cfg in getattr(model.language_model, "peft_config", {}).values():
        peft_cfg.base_model_name_or_path = info["lm_source"]
        if isinstance(peft_cfg.target_modules, set):
            peft_cfg.target_modules = sorted(peft_cfg.target_modules)
    with atomic_directory(out_dir / "adapter") as tmp:
        model.language_model.save_pretrained(tmp)
        # peft's model card names the LM by its absolute load path (differs per clone) and is not
        # needed to load the adapter
        (tmp / "README.md").unlink(missing_ok=True)
    write_json(out_dir / "gleamx.json", {"format": ADAPTER_FORMAT, "model": model_cfg.model_dump(mode="json"),
                                         "gleamx_config": _config_dict(model.config), **info, **(extra or {})})


def _config_dict(config: GleamXConfig) -> dict:
    d = config.to_dict()
    d.pop("text_config", None)
    return d


def load_trained(model_dir: Path, base_dir: Path, cache_dir: Path | None):
    """(model with adapters, tokenizer, gleamx.json) from a trained adapter directory."""
    from peft import PeftModel

    meta = check_model_dir(model_dir)
    if meta.get("format") != ADAPTER_FORMAT:
        raise DataError(model_dir, f"not a GLEAM-X adapter directory (format {meta.get('format')!r})")
    model_cfg = GleamXModelConfig.model_validate(meta["model"])
    model, tok, info = build_model(model_cfg.model_copy(update={"vision_checkpoint": meta["vision_checkpoint"]}),
                                   base_dir, cache_dir)
    if info["vision_fingerprint"] != meta["vision_fingerprint"]:
        raise DataError(meta["vision_checkpoint"], f"vision tower changed since training (fingerprint "
                                                   f"{info['vision_fingerprint']} != {meta['vision_fingerprint']}); re-train GLEAM-X")
    model.load_state_dict(load_file(str(model_dir / "projector.safetensors")), strict=False)
    saved = meta.get("gleamx_config", {})
    model.config.cosine_mean = saved.get("cosine_mean", 0.0)
    model.config.cosine_std = saved.get("cosine_std", 1.0)
    model.language_model = PeftModel.from_pretrained(model.language_model, model_dir / "adapter")
    return model.eval(), tok, meta


def merge(model_dir: Path, out_dir: Path, base_dir: Path, cache_dir: Path | None) -> Path:
    """Fold the LoRA adapters into the LM and write a standalone merged model directory."""
    from gleam_models.gleamx.vlm import merge_vlm

    if read_model_meta(Path(model_dir)).get("format") == VLM_ADAPTER_FORMAT:
        return merge_vlm(Path(model_dir), Path(out_dir))
    model, tok, meta = load_trained(Path(model_dir), base_dir, cache_dir)
    model.language_model = model.language_model.merge_and_unload()
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if (Path(model_dir) / PROBES_FILE).is_file():
            shutil.copy2(Path(model_dir) / PROBES_FILE, tmp / PROBES_FILE)
        write_json(tmp / "gleamx.json", {**meta, "format": MERGED_FORMAT, "merged_from": str(model_dir)})
    return Path(out_dir)


def load_merged(model_dir: Path):
    from transformers import AutoTokenizer

    model = GleamXForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    meta = read_json(model_dir / "gleamx.json") if (model_dir / "gleamx.json").is_file() else {}
    return model.eval(), tok, meta
