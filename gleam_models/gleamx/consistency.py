"""Does the explanation say what the verdict line says? Verdict/explanation agreement.

An answer can end "Verdict: no match" after a paragraph that calls the two images the same place
(seen in a Chinese answer of the embedded model): the verdict metrics count it right and the text
metrics barely notice, yet a reader is told two opposite things. The teacher states its stance in
fixed sentences (facts.OPEN_MATCH / OPEN_NO_MATCH / CLOSE_* / CLOSE_SIMILAR); the patterns below
are those sentences' stance words, and the tests check every template against them, so the
parser and the teacher cannot drift apart. Negative patterns are tried first ("不是同一地点"
contains "是同一地点", "does not match" contains "match").

Per answer: the explanation's stance is "match", "no_match", "mixed" (sentences of both) or None
(no stance stated). Metrics over the answers that have both a parseable verdict and a stance:
`agrees` (stance == verdict); over all answers: `contradicts` (a stance, mixed included, that is
not the verdict) and `no_stance`.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

from gleam_models.gleamx.fact_check import join_sentences, parse_facts, split_sentences
from gleam_models.gleamx.text_metrics import explanation_part

STANCE_PATTERNS = {  # (stance, pattern), first hit per sentence wins
    "en": [("no_match", re.compile(r"\b(different (places|locations)|do(es)? not (match|line up)|not a match|"
                                   r"rule out a match|not the same)\b", re.I)),
           ("match", re.compile(r"\b(same (place|location|area)|matches|a match|line up)\b", re.I))],
    "zh": [("no_match", re.compile(r"不是同一|不同的(地点|位置)|不吻合|排除了匹配|不一致|对不上|无法对应|不匹配")),
           ("match", re.compile(r"同一(地点|位置|地区)|吻合|判定为匹配|两者匹配"))],
}


def sentence_stance(sentence: str, lang: str) -> str | None:
    return next((stance for stance, pattern in STANCE_PATTERNS[lang] if pattern.search(sentence)), None)


def is_restatement(sentence: str, lang: str) -> bool:
    """A sentence that states a stance and no fact: it only restates the verdict."""
    return sentence_stance(sentence, lang) is not None and not parse_facts(sentence, lang)


def restatements(text: str, lang: str) -> list[str]:
    return [s for s in split_sentences(explanation_part(text), lang) if is_restatement(s, lang)]


def without_restatements(explanation: str, lang: str) -> str:
    """The explanation minus the sentences that only restate the verdict."""
    return join_sentences([s for s in split_sentences(explanation, lang) if not is_restatement(s, lang)], lang)


def explanation_stance(text: str | None, lang: str) -> str | None:
    """"match" | "no_match" | "mixed" | None: what the answer's explanation (verdict lines removed) says."""
    stances = {sentence_stance(s, lang) for s in split_sentences(explanation_part(text), lang)} - {None}
    return "mixed" if len(stances) > 1 else next(iter(stances), None)


def consistency_metrics(texts: Sequence[str | None], verdicts: Sequence[str | None], langs: Sequence[str]) -> dict:
    """{"overall": {...}, "language": {lang: {...}}} with n, agrees, contradicts, no_stance."""
    by_lang: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
    for text, verdict, lang in zip(texts, verdicts, langs):
        by_lang[lang].append((explanation_stance(text, lang), verdict))
    rows = [row for lang in sorted(by_lang) for row in by_lang[lang]]
    return {"overall": _summary(rows), "language": {lang: _summary(by_lang[lang]) for lang in sorted(by_lang)}}


def _summary(rows: list[tuple[str | None, str | None]]) -> dict:
    judged = [(s, v) for s, v in rows if s is not None and v is not None]
    n = len(rows)
    return {"n": n, "judged": len(judged),
            "agrees": sum(s == v for s, v in judged) / len(judged) if judged else None,
            "contradicts": sum(s != v for s, v in judged) / n if n else None,
            "no_stance": sum(s is None for s, _ in rows) / n if n else None}
