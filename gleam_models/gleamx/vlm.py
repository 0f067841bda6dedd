"""kind=vlm: fine-tune an off-the-shelf VLM (AutoModelForImageTextToText + AutoProcessor) from a
local directory (Qwen2.5-VL, SmolVLM, LLaVA, ...), with the same prompts, trainer and inference.

The processor turns each (prompt + answer, [query, satellite]) into the model's own inputs, so
any VLM whose processor has a chat template works. LoRA goes on the language model's attention
projections only; the vision-language connector is trained fully (peft modules_to_save); the
vision encoder stays frozen.
"""
from __future__ import annotations

from pathlib import Path

import torch

from data_assets.errors import DataError
from data_assets.io import atomic_directory, load_image, read_json, sha256_text, write_json
from gleam_models.gleamx.data import IGNORE
from gleam_models.gleamx.model_dir import VLM_ADAPTER_FORMAT, VLM_MERGED_FORMAT
from gleam_models.gleamx.prompts import IMAGE_MARKER, SYSTEM, instruction

CONNECTORS = ("multi_modal_projector", "connector", "merger", "mm_projector")  # names across VLM families


def vlm_messages(modality: str, language: str, answer: str | None = None, verdict_first: bool = False) -> list[dict]:
    """Processor-style messages: the instruction's two image markers become image entries."""
    text = instruction(modality, language, with_cosine=False, verdict_first=verdict_first)
    content: list[dict] = []
    for i, part in enumerate(text.split(IMAGE_MARKER)):
        if i:
            content.append({"type": "image"})
        if part:
            content.append({"type": "text", "text": part})
    msgs = [{"role": "system", "content": [{"type": "text", "text": SYSTEM[language]}]},
            {"role": "user", "content": content}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def load_vlm(source: Path, dtype=torch.float32):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = Path(source)
    if not (source / "config.json").is_file():
        raise DataError(source, "gleamx_model.lm_source (kind=vlm): not a local model directory with config.json")
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    processor = AutoProcessor.from_pretrained(source)
    return model, processor


def vlm_fingerprint(source: Path) -> str:
    from gleam_models.checkpoint import weights_fingerprint
    files = sorted(Path(source).glob("*.safetensors"))
    return sha256_text("|".join(weights_fingerprint(f) for f in files))[:16] if files else "unknown"


def add_vlm_lora(model, lora, seed: int):
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    connectors = [c for c in CONNECTORS if c in names]
    targets = "|".join(lora.target_modules)
    torch.manual_seed(seed)
    cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                         target_modules=rf".*language_model.*\.({targets})", modules_to_save=connectors or None)
    return get_peft_model(model, cfg)


def prompt_and_full(processor, modality: str, language: str, answer: str,
                    verdict_first: bool = False) -> tuple[str, str]:
    prompt = processor.apply_chat_template(vlm_messages(modality, language, verdict_first=verdict_first),
                                           add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(vlm_messages(modality, language, answer, verdict_first), tokenize=False)
    if not full.startswith(prompt):  # templates that rewrite earlier turns: fall back to prompt + answer
        full = prompt + answer + (processor.tokenizer.eos_token or "")
    return prompt, full


class VlmBatches:
    """Micro-batches for the trainer: processor inputs + labels on the answer tokens only."""

    def __init__(self, processor, rows: list[tuple[str, str, Path, Path]]):
        # rows: (prompt text, full text, query path, satellite path)
        self.processor, self.rows = processor, rows
        self.images = {p: load_image(p) for r in rows for p in r[2:]}
        tok = processor.tokenizer
        self.prompt_len = [len(processor(text=[r[0]], images=[[self.images[r[2]], self.images[r[3]]]])["input_ids"][0])
                           for r in rows]
        tok.padding_side = "right"

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, idx: list[int]) -> dict:
        rows = [self.rows[i] for i in idx]
        enc = self.processor(text=[r[1] for r in rows], images=[[self.images[r[2]], self.images[r[3]]] for r in rows],
                             padding=True, return_tensors="pt")
        labels = enc["input_ids"].clone()
        for j, i in enumerate(idx):
            labels[j, : self.prompt_len[i]] = IGNORE
        labels[enc["attention_mask"] == 0] = IGNORE
        return {**enc, "labels": labels}


def save_vlm_trained(model, out_dir: Path, model_cfg, info: dict, extra: dict) -> None:
    with atomic_directory(Path(out_dir) / "adapter") as tmp:
        model.save_pretrained(tmp)
    write_json(Path(out_dir) / "gleamx.json", {"format": VLM_ADAPTER_FORMAT, "model": model_cfg.model_dump(mode="json"),
                                               **info, **extra})


def load_vlm_trained(model_dir: Path):
    from peft import PeftModel

    meta = read_json(Path(model_dir) / "gleamx.json")
    model, processor = load_vlm(Path(meta["lm_source"]))
    model = PeftModel.from_pretrained(model, Path(model_dir) / "adapter")
    return model.eval(), processor, meta


def merge_vlm(model_dir: Path, out_dir: Path) -> Path:
    model, processor, meta = load_vlm_trained(model_dir)
    merged = model.merge_and_unload()
    with atomic_directory(out_dir) as tmp:
        merged.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / "gleamx.json", {**meta, "format": VLM_MERGED_FORMAT, "lm_source": str(out_dir)})
    return Path(out_dir)


@torch.no_grad()
def vlm_generate(model, processor, items, max_new_tokens: int, verdict_first: bool = False,
                 logits_processor=None) -> tuple[list[list[int]], float]:
    """Greedy, batched with left padding, KV cache; returns the new token ids per item and seconds."""
    import time

    processor.tokenizer.padding_side = "left"
    prompts = [processor.apply_chat_template(vlm_messages(i.modality, i.language, verdict_first=verdict_first),
                                             add_generation_prompt=True,
                                             tokenize=False) for i in items]
    images = [[load_image(Path(i.query_path)), load_image(Path(i.satellite_path))] for i in items]
    enc = processor(text=prompts, images=images, padding=True, return_tensors="pt").to(model.device)
    t0 = time.perf_counter()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                         pad_token_id=processor.tokenizer.pad_token_id, logits_processor=logits_processor)
    return out[:, enc["input_ids"].shape[1]:].cpu().tolist(), time.perf_counter() - t0
