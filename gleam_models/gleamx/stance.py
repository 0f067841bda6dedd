"""A decoding constraint: the explanation may not restate the opposite of its own verdict line.

With `verdict_first` the model writes "Verdict: ..." and then an explanation that often opens with
one of the teacher's stance sentences (`OPEN_MATCH` / `OPEN_NO_MATCH`, closing with `CLOSE_*`).
30 LoRA steps do not tie those sentences to the verdict line: in Chinese the two openings differ by
one character (不), and on val half of the Chinese answers said the opposite of their own verdict
(README). The teacher's sentences come in pairs, one per verdict, that start alike and fork where
the stance is decided ("拍摄的是" / "拍摄的不是", "show the same" / "show different").
`StanceGuard` watches each row's current sentence; when it ends the way a pair ends right before
its fork and the model's greedy token takes the other verdict's branch, that token becomes the
verdict's own branch (不 -> 是, " different" -> " the"); where the two branches share a
byte-level token, the first token of the other branch that no own sentence writes is banned
instead. The model writes everything else: a sentence that does not reach a fork (a fact,
"两者都显示…") is untouched, a pair that forks at its first token is not guarded, and the verdict
itself is never constrained.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor

from data_assets.gleamx.facts import CLOSE_MATCH, CLOSE_NO_MATCH, OPEN_MATCH, OPEN_NO_MATCH
from data_assets.gleamx.prompts import VIEW_NAMES
from gleam_models.gleamx.prompts import parse_verdict

STANCE_TEMPLATES = {"match": (OPEN_MATCH, CLOSE_MATCH), "no_match": (OPEN_NO_MATCH, CLOSE_NO_MATCH)}
SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", "\n")
CONTEXT_CHARS = {"en": 10, "zh": 3}  # text before a fork that must match: " tile show", "拍摄的"
MIN_CONTEXT_CHARS = 2  # a pair whose common start is shorter ("这些" is two) is not guarded
# {the tokens right before a fork: {the other branch's token: the own branch's token, or None to ban it}}
Forks = dict[tuple[int, ...], dict[int, int | None]]


def stance_pairs(verdict: str, modality: str, language: str) -> list[tuple[str, str]]:
    """(this verdict's sentence, the other verdict's counterpart) for each template pair of the teacher."""
    view = VIEW_NAMES[language][modality]
    opposite = "no_match" if verdict == "match" else "match"
    return [(own.format(view=view), other.format(view=view))
            for own_group, other_group in zip(STANCE_TEMPLATES[verdict], STANCE_TEMPLATES[opposite])
            for own, other in zip(own_group[language], other_group[language]) if own and other]


class StanceGuard(LogitsProcessor):
    """Per batch row: after its verdict line, the token that turns a teacher stance sentence into the
    other verdict's is replaced by (or, between byte-level pieces, banned in favour of) the verdict's own.

    `changed[r]` counts the steps at which the guard changed row r's greedy choice.
    """

    def __init__(self, tokenizer, modalities: list[str], languages: list[str]):
        self.tokenizer, self.languages = tokenizer, languages
        # one table per view and language, not per row: a batch of 32 has at most 8 distinct ones
        tables = {(m, lang): {v: self._forks(tokenizer, v, m, lang) for v in STANCE_TEMPLATES}
                  for m, lang in set(zip(modalities, languages))}
        self.forks = [tables[m, lang] for m, lang in zip(modalities, languages)]
        self.start: int | None = None  # input_ids length at the first step (the prompt's, or 0 with embeds)
        self.verdicts: list[str | None] = [None] * len(modalities)
        self.sentence_start = [0] * len(modalities)  # index in the row's generated tokens
        self.changed = [0] * len(modalities)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        for r in range(scores.shape[0]):
            generated = input_ids[r, self.start:].tolist()
            # the last few tokens: byte-level BPE may spell "。" in three
            if generated and self.tokenizer.decode(generated[-3:]).rstrip(" ").endswith(SENTENCE_ENDS):
                self._sentence_ended(r, generated)
            if self.verdicts[r] is not None:
                self._steer(r, generated[self.sentence_start[r]:], scores[r])
        return scores

    @staticmethod
    def _forks(tokenizer, verdict: str, modality: str, language: str) -> Forks:
        """Where `verdict`'s answers are steered, for this view and language.

        The context is the end of what the pair has in common, not all of it: the model blends
        templates ("这张{view}与卫星影像" + "并不吻合", seen on val), and what decides the stance is what
        comes right before the fork. It holds CONTEXT_CHARS characters of text where the common start
        has them and at least MIN_CONTEXT_CHARS, so that a lone space or a shared first character
        never triggers.
        """
        text = lambda ids: tokenizer.decode(ids).replace("\ufffd", "").strip()  # noqa: E731
        encode = lambda t: tokenizer(t, add_special_tokens=False).input_ids  # noqa: E731
        # a sentence after the first follows a space in English ("... area). The layouts ..."),
        # which byte-level BPE may fold into the sentence's first token
        pairs = [(encode(pad + own), encode(pad + other)) for own, other in stance_pairs(verdict, modality, language)
                 for pad in ("", " ")]
        forks: Forks = {}
        for a, b in pairs:
            fork = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), None)
            if fork is None or len(text(a[:fork])) < MIN_CONTEXT_CHARS:
                continue
            # the first token on the other branch that no own sentence writes after the same context
            # (a byte-level token can start both 切 and 并: then it falls after the fork, and is banned)
            for k in range(fork, len(b)):
                start = next((j for j in range(k - 1, -1, -1) if len(text(b[j:k])) >= CONTEXT_CHARS[language]), 0)
                context = tuple(b[start:k])
                if b[k] not in {o[j] for o, _ in pairs for j in range(len(context), len(o))
                                if tuple(o[j - len(context):j]) == context}:
                    forks.setdefault(context, {})[b[k]] = a[k] if k == fork else None
                    break
        return forks

    def _sentence_ended(self, r: int, generated: list[int]) -> None:
        if self.verdicts[r] is None:  # the first line closed: it is the verdict line, or there is none
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            self.verdicts[r] = parse_verdict(text, self.languages[r]) if "\n" in text else None
        self.sentence_start[r] = len(generated)

    def _steer(self, r: int, sentence: list[int], row_scores: torch.Tensor) -> None:
        greedy = int(row_scores.argmax())
        for context, branches in self.forks[r][self.verdicts[r]].items():
            if greedy in branches and tuple(sentence[-len(context):]) == context:
                own = branches[greedy]
                if own is None:
                    row_scores[greedy] = float("-inf")
                else:
                    row_scores.fill_(float("-inf"))
                    row_scores[own] = 0.0
                self.changed[r] += 1
                return
