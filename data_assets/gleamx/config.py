"""Config for GLEAM-X dataset generation: pairs, teacher, languages, robustness, sharding."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_assets.settings import Section

LANGUAGES = ("en", "zh")


class NegativeMix(Section):
    """Shares of each negative kind; normalised, so only the ratios matter."""

    geo: float = Field(default=0.4, ge=0.0)  # nearest other tiles by lat/lon (region/tile order without it)
    visual: float = Field(default=0.3, ge=0.0)  # most similar wrong tiles under the frozen backbone
    random: float = Field(default=0.3, ge=0.0)  # any other tile of the same split

    @model_validator(mode="after")
    def _some_share(self) -> "NegativeMix":
        if self.geo + self.visual + self.random <= 0:
            raise ValueError("at least one of geo / visual / random must be > 0")
        return self


class OpenAITeacherConfig(Section):
    """Any OpenAI-compatible chat-completions endpoint (GPT-4o, Doubao, vLLM, Ollama, llama.cpp)."""

    base_url: str = "https://api.openai.com/v1"  # the part before /chat/completions
    model: str = "gpt-4o"  # model name the endpoint expects
    api_key_env: str | None = "OPENAI_API_KEY"  # NAME of the env variable holding the key; null = no auth
    send_images: bool = True  # false for text-only endpoints (they get the ground-truth facts only)
    send_facts: bool = True  # put the locations' ground-truth facts in the prompt (grounds the answer)
    json_mode: bool = True  # ask for response_format=json_object (servers that support it)
    max_image_side: int = Field(default=768, ge=32)  # images are downscaled to this before upload
    timeout_s: float = Field(default=60.0, gt=0)  # per HTTP request
    max_retries: int = Field(default=5, ge=0)  # transport retries (429 / 5xx / timeout / connection)
    backoff_s: float = Field(default=1.0, ge=0)  # first backoff; doubles each retry, with jitter
    max_backoff_s: float = Field(default=60.0, ge=0)  # cap on one wait (also caps Retry-After)
    max_answer_retries: int = Field(default=2, ge=0)  # re-asks after bad JSON / wrong schema / contradiction
    concurrency: int = Field(default=4, ge=1)  # requests in flight at once
    requests_per_s: float = Field(default=2.0, gt=0)  # rate limit across all threads
    temperature: float = Field(default=0.2, ge=0)  # low: faithful, reproducible drafts
    max_tokens: int = Field(default=400, ge=16)  # completion budget per answer
    price_per_1k_prompt: float = Field(default=0.0025, ge=0)  # USD per 1k prompt tokens (for spend)
    price_per_1k_completion: float = Field(default=0.01, ge=0)  # USD per 1k completion tokens


class GleamXDataConfig(Section):
    teacher: Literal["facts", "openai"] = "facts"  # facts = offline grounded teacher; openai = any endpoint
    seed: int = 0  # every random choice (sampling, negatives, language, phrasing) derives from this
    negatives_per_positive: int = Field(default=1, ge=0)  # no-match pairs drawn per match pair
    negative_mix: NegativeMix = NegativeMix()  # which kinds of negatives, in what proportion
    languages: dict[str, float] = {"en": 0.5, "zh": 0.5}  # share of records per language
    max_pairs_per_modality_per_split: int | None = Field(default=None, ge=1)  # positives kept; null = all
    num_shards: int = Field(default=4, ge=1)  # slices per modality (Dagster partitions)
    progress: bool = True  # show a progress bar with count, ETA, tokens and spend
    # fail the stage (with the counts) when more than this share of pairs got no usable answer
    max_failed_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    openai: OpenAITeacherConfig = OpenAITeacherConfig()  # used when teacher = openai

    @model_validator(mode="after")
    def _languages_valid(self) -> "GleamXDataConfig":
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unknown language(s) {unknown}; supported: {list(LANGUAGES)}")
        if any(v < 0 for v in self.languages.values()) or sum(self.languages.values()) <= 0:
            raise ValueError("language shares must be >= 0 and sum to > 0")
        return self
