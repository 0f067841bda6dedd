"""Tiny, randomly initialised GLEAM-X parts for fast CPU tests: a Llama LM, a byte-level BPE
tokenizer with a ChatML template, a 32 px MobileNetV2 GLEAM-C checkpoint, and a few records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["These two images show the same location. Verdict: match", "Verdict: no match",
          "The street map and the satellite tile do not agree.", "两张图像显示同一地点。结论：匹配", "结论：不匹配",
          "Image 1 is a drone photo: Image 2 is a satellite tile: Do both images show the same place?",
          "图像1是无人机照片：图像2是卫星影像：两张图像是否显示同一地点？请简要说明理由"]


def tiny_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out_dir)
    return fast


def tiny_lm_dir(out_dir: Path) -> Path:
    """A 2-layer Llama (hidden 32) + tokenizer saved as an HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(out_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out_dir)
    return out_dir


def tiny_encoder_checkpoint(path: Path) -> Path:
    from gleam_models.checkpoint import save_model
    from gleam_models.config import EncoderConfig
    from gleam_models.encoder import create_encoder

    size = {v: (32, 32) for v in ("satellite", "uav", "street_map", "panorama", "ground")}
    size["panorama"] = (32, 64)
    import torch
    torch.manual_seed(0)
    enc = create_encoder(EncoderConfig(weights="none", input_size=size, channels_last=False))
    save_model(path, enc, None)
    return path


def tiny_records(root: Path, n_locations: int = 6, prefix: str = "") -> Path:
    """data/gleamx/{train,val,test}.jsonl with random images under root/images (val empty)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_locations):
        for kind in ("sat", "uav"):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"{kind}{i}.png")
    for i in range(n_locations):
        for label, j in (("match", i), ("no_match", (i + 1) % n_locations)):
            lang = "en" if (i + (label == "match")) % 2 else "zh"
            expl = ("These two images show the same location. Both show 2 buildings." if label == "match" else
                    "These images do not show the same place. Roads differ.") if lang == "en" else (
                    "两张图像显示同一地点。两者都有 2 栋建筑。" if label == "match" else "两张图像不是同一地点。道路不同。")
            rows.append({"id": f"p{i}{label}", "split": "train", "query_path": f"{prefix}images/uav{i}.png",
                         "satellite_path": f"{prefix}images/sat{j}.png", "modality": "uav", "label": label,
                         "negative_kind": None if label == "match" else "random", "language": lang,
                         "explanation": expl, "evidence": [], "teacher": "facts", "model": "grounded-facts",
                         "prompt_version": "t", "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                         "created_at": "2026-01-01T00:00:00+00:00", "query_location_id": f"l{i}",
                         "satellite_location_id": f"l{j}", "revision": None})
    out = root / "gleamx"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (out / "val.jsonl").write_text("")
    (out / "test.jsonl").write_text("".join(json.dumps({**r, "split": "test"}, ensure_ascii=False) + "\n" for r in rows[:4]))
    return out


def tiny_project(root: Path, prefix: str = ""):
    """(records_dir, model_cfg, train_cfg) for a tiny end-to-end run under root."""
    from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig, LoraConfig

    records = tiny_records(root, prefix=prefix)
    lm = tiny_lm_dir(root / "lm")
    ckpt = tiny_encoder_checkpoint(root / "gleamc.safetensors")
    model_cfg = GleamXModelConfig(lm_source=str(lm), vision_checkpoint=str(ckpt), projector_hidden=16,
                                  lora=LoraConfig(r=4, alpha=8, dropout=0.1))
    train_cfg = GleamXTrainConfig(steps=4, batch_size=4, grad_accum=2, lr=5e-3, warmup_steps=1,
                                  checkpoint_every_steps=2, train_subsample=None, progress=False, max_new_tokens=8)
    return records, model_cfg, train_cfg


VLM_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
                "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
                "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_vlm_dir(out_dir: Path) -> Path:
    """A randomly initialised LLaVA (AutoModelForImageTextToText): 1-layer CLIP (32 px) + 2-layer Llama,
    with its AutoProcessor, saved as a local directory."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = tiny_tokenizer(out_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=32)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(out_dir)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=VLM_TEMPLATE)
    processor.save_pretrained(out_dir)
    return out_dir
