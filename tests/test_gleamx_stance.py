"""The stance guard: decoding may not restate the opposite of the verdict line (gleam_models/gleamx/stance.py).

A scripted "model" prefers the tokens of a given answer and, as its second choice, the tokens of
another; greedy decoding through the guard shows which one comes out.
"""
from __future__ import annotations

import pytest
import torch

from data_assets.gleamx.prompts import VIEW_NAMES
from gleam_models.gleamx.consistency import explanation_stance
from gleam_models.gleamx.prompts import verdict_line
from gleam_models.gleamx.stance import STANCE_TEMPLATES, StanceGuard, stance_pairs
from gleamx_tiny import tiny_tokenizer

PROMPT = [5, 6, 7]  # stands for the prompt ids (the llava path passes none: the guard counts from its first call)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("stance-tok"))


def decode_through_guard(tok, wanted: list[str], second: list[str], modalities: list[str], languages: list[str]):
    """Greedy decoding through the guard of a batch whose "model" prefers the answer `wanted` and, as
    its second choice, `second`; once a row has left one of them it follows the other (or stops)."""
    encode = lambda text: tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]  # noqa: E731
    answers = [(encode(a), encode(b)) for a, b in zip(wanted, second)]
    guard = StanceGuard(tok, modalities, languages)
    rows, done = [list(PROMPT) for _ in wanted], [False] * len(wanted)
    for _ in range(max(len(a) for pair in answers for a in pair)):
        scores = torch.zeros(len(rows), len(tok))
        for r, row in enumerate(rows):
            made = row[len(PROMPT):]
            following = [a for a in answers[r] if a[:len(made)] == made and len(a) > len(made)]
            choices = [a[len(made)] for a in following] + [tok.eos_token_id]
            for rank, token in reversed(list(enumerate(choices))):
                scores[r, token] = 3.0 - rank
        scores = guard(torch.tensor(rows), scores)
        for r, row in enumerate(rows):
            row.append(tok.pad_token_id if done[r] else int(scores[r].argmax()))
            done[r] = done[r] or row[-1] == tok.eos_token_id
    texts = [tok.decode(row[len(PROMPT):], skip_special_tokens=True) for row in rows]
    return texts, guard


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_contradicting_opening_comes_out_as_the_verdicts_own(tok, language):
    """The Chinese case seen on val: "结论：不匹配" then "…拍摄的是同一地点" (the model's first choice)."""
    view = VIEW_NAMES[language]["ground"]
    match, no_match = stance_pairs("match", "ground", language)[0]
    wanted = [f"{verdict_line('no_match', language)}\n{match}", f"{verdict_line('match', language)}\n{match}"]
    second = [f"{verdict_line('no_match', language)}\n{no_match}", f"{verdict_line('match', language)}\n{no_match}"]
    texts, guard = decode_through_guard(tok, wanted, second, ["ground", "ground"], [language, language])
    assert view in texts[0] and explanation_stance(texts[0], language) == "no_match"
    assert texts[0].startswith(verdict_line("no_match", language))  # the verdict is never touched
    assert texts[1] == wanted[1] and guard.changed == [1, 0]  # an answer that agrees is left as it is


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("modality", sorted(VIEW_NAMES["en"]))
@pytest.mark.parametrize("verdict", sorted(STANCE_TEMPLATES))
def test_no_opening_of_the_other_verdict_gets_through(tok, language, modality, verdict):
    """Every teacher opening, and every closing whose pair shares its start, is stopped at the fork."""
    line = verdict_line(verdict, language)
    openings = {t.format(view=VIEW_NAMES[language][modality])
                for t in STANCE_TEMPLATES["no_match" if verdict == "match" else "match"][0][language]}
    encode = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    others = [other for own, other in stance_pairs(verdict, modality, language)
              if other in openings or encode(own)[0] == encode(other)[0]]
    assert openings <= set(others)
    texts, _ = decode_through_guard(tok, [f"{line}\n{s}" for s in others], [line] * len(others),
                                    [modality] * len(others), [language] * len(others))
    for sentence, text in zip(others, texts):
        assert sentence not in text and explanation_stance(text, language) in (None, verdict), text


def test_answers_without_a_verdict_line_or_stance_are_untouched(tok):
    wanted = ["The drone (UAV) photo and the satellite tile show the same place.",  # no verdict line first
              "Verdict: no match\nBoth show mostly tree cover (about 40% of the area).",
              "结论：不匹配\n两者都显示以树木为主的地表。"]
    texts, guard = decode_through_guard(tok, wanted, ["x"] * 3, ["uav"] * 3, ["en", "en", "zh"])
    assert texts == wanted and guard.changed == [0, 0, 0]


def test_a_closing_sentence_after_the_evidence_is_guarded_too(tok):
    """In English the later sentences follow a space, which byte-level BPE folds into their first token."""
    fact = "Both show mostly tree cover (about 40% of the area)."
    wanted = [f"Verdict: match\n{fact} The layouts do not line up, so this is not a match.",
              "结论：匹配\n两者都显示以树木为主的地表。这些差异排除了匹配的可能。"]
    texts, guard = decode_through_guard(tok, wanted, ["", ""], ["uav", "uav"], ["en", "zh"])
    assert texts[0].startswith(f"Verdict: match\n{fact} The layouts") and "do not line up" not in texts[0]
    assert texts[1].startswith("结论：匹配\n两者都显示以树木为主的地表。这些") and "排除" not in texts[1]
    assert guard.changed == [1, 1]


def test_a_fact_sentence_that_starts_like_an_unpaired_stance_is_untouched(tok):
    """"两者都显示…" (a fact) starts like "两者布局不一致…", whose match counterpart starts otherwise."""
    wanted = ["结论：匹配\n两者都显示以树木为主的地表。", "结论：匹配\n两者布局不一致，因此不是同一地点。"]
    texts, guard = decode_through_guard(tok, wanted, ["", ""], ["uav", "uav"], ["zh", "zh"])
    assert texts == wanted and guard.changed == [0, 0]  # the second is left for the agreement metric to count
