"""GLEAM-X evaluation: every metric on hand-made cases worked out by hand, the fact checker on the
facts teacher's own explanations of real ground truth, the cosine baseline and the metrics file."""
from __future__ import annotations

import itertools
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from data_assets.errors import DataError
from data_assets.gleamx import facts
from gleam_models.gleamx import baselines, consistency, fact_check, text_metrics
from gleam_models.gleamx.evaluate import SystemRun, eval_set_info, evaluate_gleamx, stratified_subset
from gleam_models.gleamx.report import markdown_table, write_report
from gleam_models.gleamx.verdict_metrics import grouped_verdict_metrics, verdict_metrics, wilson_interval


def gt(annotated, *, roads=(), junctions=0, cover=None, buildings=None, largest=None, trees=None, per_ha=None,
       dominant="other") -> dict:
    """A ground truth shaped like the embedded builder's (unannotated classes null)."""
    cover = {c: (cover or {}).get(c, 0.0) if c in annotated else None for c in ("road", "building", "tree")}
    cover["other"] = round(1 - sum(v for v in cover.values() if v is not None), 4)
    return {"region": "x", "annotated": annotated, "land_cover": cover, "dominant": dominant,
            "roads": [{"name": None, "bearing_deg": b, "length_m": m} for b, m in roads],
            "intersections": junctions if "road" in annotated else None,
            "buildings": {"count": buildings, "mean_area_m2": largest, "largest_area_m2": largest}
            if "building" in annotated else {"count": None, "mean_area_m2": None, "largest_area_m2": None},
            "trees": {"count": trees, "per_hectare": per_ha} if "tree" in annotated else {"count": None, "per_hectare": None}}


def rec(i, label="match", lang="en", modality="uav", q="A", s="A", explanation="ref"):
    return {"id": f"p{i}", "label": label, "language": lang, "modality": modality, "query_location_id": q,
            "satellite_location_id": s, "explanation": explanation, "query_path": f"q/{q}_{modality}.jpg",
            "satellite_path": f"s/{s}.jpg"}


# --- verdicts ---------------------------------------------------------------------------------------

def test_verdict_metrics_count_unparseable_answers_as_wrong():
    labels = ["match"] * 3 + ["no_match"] * 3
    verdicts = ["match", "no_match", None, "no_match", "match", None]
    m = verdict_metrics(labels, verdicts)
    # tp=1, fn=2 (one said no_match, one said nothing), fp=1, tn=1
    assert m["counts"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 2, "unparseable": 2}
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(2 / 6)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(0.4)  # 2 * 0.5 * 1/3 / (0.5 + 1/3)
    assert m["unparseable"] == pytest.approx(1 / 3) and m["predicted_match_share"] == pytest.approx(2 / 6)
    g = grouped_verdict_metrics(labels, verdicts, {"language": ["en", "zh"] * 3})
    assert g["language"]["en"]["n"] == 3 and g["language"]["en"]["accuracy"] == pytest.approx(1 / 3)
    assert g["language"]["zh"]["accuracy"] == pytest.approx(1 / 3)  # zh: no_match->wrong, no_match ok, None wrong
    with pytest.raises(DataError):
        verdict_metrics(["match"], ["yes"])


def test_wilson_interval_matches_hand_computed_values():
    lo, hi = wilson_interval(8, 10)  # centre 0.7167, half-width 1.96 * 0.16 / 1.384
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 0) == (0.0, 0.0)


# --- text ------------------------------------------------------------------------------------------

def test_bleu_and_rouge_on_tiny_cases():
    en, zh = "Both show 2 roads crossing at right angles.", "两者都显示 2 栋建筑。"
    assert text_metrics.bleu4([en], [en], "en") == pytest.approx(100)
    assert text_metrics.bleu4(["Cats sleep."], [en], "en") == 0.0
    assert text_metrics.bleu4([zh], [zh], "zh") == pytest.approx(100)
    # per-character tokens: Chinese n-grams overlap (one "word" per sentence under 13a would give 0)
    assert 0 < text_metrics.bleu4(["两者都显示建筑屋顶"], ["两者都显示建筑"], "zh") < 100
    assert text_metrics.rouge_l([en], [en], "en") == 1.0
    # LCS 7 characters; precision 7/7, recall 7/10 (whitespace dropped) -> F = 1.4 / 1.7
    assert text_metrics.rouge_l(["两者都显示建筑"], [zh], "zh") == pytest.approx(1.4 / 1.7)
    assert text_metrics.explanation_part("Both show 2 roads.\nVerdict: no match") == "Both show 2 roads."
    assert text_metrics.explanation_part("Verdict: no match\nBoth show 2 roads.") == "Both show 2 roads."  # verdict first
    assert text_metrics.explanation_part("两者都显示 2 栋建筑。\n结论：匹配") == zh


@pytest.fixture(scope="module")
def sbert():
    return text_metrics.load_sbert()


def test_sbert_similarity_orders_identical_paraphrase_unrelated(sbert):
    ref = "Both images show two roads crossing at right angles."
    sims = text_metrics.sbert_similarities(
        [ref, "The two pictures both contain a pair of streets that cross at a right angle.",
         "A cat is sleeping on a warm windowsill."], [ref] * 3, sbert)
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[0] > sims[1] > sims[2]
    m = text_metrics.text_metrics([ref + "\nVerdict: match", "两者都显示 2 栋建筑。"], [ref, "两者都显示 2 栋建筑。"],
                                  ["en", "zh"], sbert)
    assert m["per_language"]["en"]["bleu4"] == pytest.approx(100) and m["sbert"] == pytest.approx(1.0, abs=1e-5)


# --- grounded facts -------------------------------------------------------------------------------

ROAD = gt(["road"], roads=[(5.0, 64.0)], cover={"road": 0.06})
ROAD_EW = gt(["road"], roads=[(60.0, 64.0), (150.0, 30.0)], junctions=1, cover={"road": 0.2}, dominant="road")
BUILD = gt(["building"], buildings=2, largest=420.0, cover={"building": 0.2}, dominant="building")
TRUTHS = {"R": ROAD, "R2": ROAD_EW, "B": BUILD}


def _check(text, label="no_match", q="R", s="R2", lang="en"):
    checked = fact_check.check_explanation(rec(0, label, lang, q=q, s=s), text, TRUTHS)
    return [(c.fact.key, c.fact.subject, c.status) for c in checked]


def test_wrong_bearing_count_or_image_is_flagged():
    ok = ("The drone (UAV) photo shows 1 road running north-south (about 5° from north), while the satellite "
          "tile shows 2 roads at about 60° and 150° from north.")
    assert {s for *_, s in _check(ok)} == {"correct"}
    wrong_bearing = ok.replace("about 5° from north", "about 40° from north")
    assert ("road_bearing", "query", "false") in _check(wrong_bearing)
    # the same facts told about the wrong images: every one of them is false
    swapped = ("The drone (UAV) photo shows 2 roads at about 60° and 150° from north, while the satellite "
               "tile shows 1 road running north-south (about 5° from north).")
    assert {s for *_, s in _check(swapped)} == {"false"}
    counts = _check("Both show 3 buildings, the largest about 400 m².\nVerdict: match", "match", "B", "B")
    assert counts == [("building_count", "both", "false"), ("building_largest", "both", "correct")]
    zh = _check("两者都显示 3 栋建筑（最大的约 420 平方米）。", "match", "B", "B", "zh")
    assert zh == [("building_count", "both", "false"), ("building_largest", "both", "correct")]
    # "both" on a non-match must hold for both places
    assert _check("Both show 1 road running north-south.") == [("road_count", "both", "false"),
                                                               ("road_orientation", "both", "false")]


def test_unannotated_classes_are_unverifiable_not_false():
    checked = fact_check.check_explanation(rec(0, "match", q="R", s="R"), "Both show no buildings and 12 trees.", TRUTHS)
    assert [c.status for c in checked] == ["unverifiable", "unverifiable"]
    s = fact_check.fact_summary([checked])
    assert s["checkable"] == 0 and s["correct_share"] is None and s["unverifiable_share"] == 1.0


def _teacher_pairs(manifest):
    truths = {row["location_id"]: json.loads(row["ground_truth"]) for row in manifest}
    modality = {row["location_id"]: row["modality"] for row in manifest}
    ids = sorted(truths)
    rng = np.random.default_rng(0)
    for i, lid in enumerate(ids):
        partners = [lid, ids[(i + 1) % len(ids)], ids[int(rng.integers(len(ids)))]]
        for other, lang in itertools.product(partners, ("en", "zh")):
            yield truths, lid, other, modality[lid], lang


def test_teacher_explanations_of_real_ground_truth_check_out(embedded_dir):
    import csv

    manifest = list(csv.DictReader((embedded_dir / "manifest.csv").open(encoding="utf-8")))
    n_texts = 0
    all_checked = []
    for truths, q, s, modality, lang in _teacher_pairs(manifest):
        label = "match" if q == s else "no_match"
        text = facts.explain(truths[q], truths[s], label, modality, lang, 0, f"{q}|{s}")["explanation"]
        checked = fact_check.check_explanation(rec(n_texts, label, lang, modality, q, s), text, truths)
        bad = [c for c in checked if c.status != "correct"]
        assert not bad, (text, bad)
        # every number the teacher wrote was read as (part of) a fact: nothing slipped past the parser
        numbers = sorted(int(x) for x in re.findall(r"\d+", text.replace("360-degree", "")))
        parsed = sorted(x for c in checked for v in [c.fact.value] if not isinstance(v, (bool, frozenset, str))
                        for x in (v if isinstance(v, tuple) else [v]) if isinstance(x, int) and x)
        assert sorted(parsed) == [n for n in numbers if n], (text, parsed)
        all_checked.append(checked)
        n_texts += 1
    summary = fact_check.fact_summary(all_checked)
    assert summary["correct_share"] == 1.0 and summary["hallucination_rate"] == 0.0
    assert summary["unverifiable_share"] == 0.0 and summary["facts_per_answer"] > 2


# --- verdict / explanation agreement ---------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_teacher_stance_sentence_is_read_and_no_fact_sentence_has_one(lang):
    views = list(facts.VIEW_NAMES[lang].values())
    for stance, groups in (("match", (facts.OPEN_MATCH, facts.CLOSE_MATCH)),
                           ("no_match", (facts.OPEN_NO_MATCH, facts.CLOSE_NO_MATCH, facts.CLOSE_SIMILAR))):
        for template in (t for g in groups for t in g[lang] if t):
            for view in views:
                sentence = template.format(view=view)
                assert consistency.sentence_stance(sentence, lang) == stance, sentence
    fill = {"fact": "x", "shared": "x", "q": "x", "s": "y", "name": "x", "view": views[0]}
    for group in (facts.SHARED, facts.CONTRAST, facts.SIMILAR, facts.SMALL_DIFFERENCE):
        for template in group[lang]:
            assert consistency.sentence_stance(template.format(**fill), lang) is None, template
    assert consistency.sentence_stance(facts.UNRELATED[lang].format(**fill), lang) is None


def test_teacher_explanations_agree_with_their_labels(embedded_dir):
    import csv

    manifest = list(csv.DictReader((embedded_dir / "manifest.csv").open(encoding="utf-8")))
    for truths, q, s, modality, lang in _teacher_pairs(manifest):
        label = "match" if q == s else "no_match"
        text = facts.explain(truths[q], truths[s], label, modality, lang, 0, f"{q}|{s}")["explanation"]
        assert consistency.explanation_stance(text, lang) == label, text


def test_dropping_restatements_keeps_every_fact_and_no_stance(embedded_dir):
    import csv

    manifest = list(csv.DictReader((embedded_dir / "manifest.csv").open(encoding="utf-8")))
    for truths, q, s, modality, lang in _teacher_pairs(manifest):
        label = "match" if q == s else "no_match"
        text = facts.explain(truths[q], truths[s], label, modality, lang, 0, f"{q}|{s}")["explanation"]
        kept = consistency.without_restatements(text, lang)
        assert fact_check.parse_facts(kept, lang) == fact_check.parse_facts(text, lang), text
        assert consistency.explanation_stance(kept, lang) is None, kept


def test_run_fingerprint_changes_only_when_restatements_are_dropped(tmp_path):
    from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig
    from gleam_models.gleamx.train import run_fingerprint

    (tmp_path / "train.jsonl").write_text("{}\n")
    model = GleamXModelConfig(vision_checkpoint=str(tmp_path / "none.safetensors"))
    plain = GleamXTrainConfig()
    fp = lambda t: run_fingerprint(model, t, tmp_path, tmp_path)  # noqa: E731
    assert fp(plain) == fp(GleamXTrainConfig(drop_verdict_restatements=False))
    assert fp(plain) != fp(GleamXTrainConfig(drop_verdict_restatements=True))
    assert fp(GleamXTrainConfig(drop_verdict_restatements=["zh"])) not in (fp(plain), fp(GleamXTrainConfig(
        drop_verdict_restatements=True)))


def test_restatements_are_dropped_per_language():
    import pydantic

    from gleam_models.gleamx.config import GleamXTrainConfig

    assert GleamXTrainConfig(drop_verdict_restatements=True).drop_verdict_restatements == ["en", "zh"]
    assert GleamXTrainConfig(drop_verdict_restatements=False).drop_verdict_restatements == []
    assert GleamXTrainConfig(drop_verdict_restatements=["zh"]).drop_verdict_restatements == ["zh"]
    with pytest.raises(pydantic.ValidationError, match="drop_verdict_restatements"):
        GleamXTrainConfig(drop_verdict_restatements=["fr"])


def test_dropped_restatement_leaves_room_for_a_fact_sentence():
    from gleam_models.gleamx.data import answer_for

    chars = lambda text, add_special_tokens=False: {"input_ids": list(text)}  # noqa: E731 - one token per character
    expl = "这张无人机照片与卫星影像切片拍摄的是同一地点。两者都显示以树木为主的地表（约占 60%）。布局一致，因此判定为匹配。"
    r = SimpleNamespace(explanation=expl, label="match", language="zh")
    kept = answer_for(r, chars, 2, False, 40, verdict_first=True)
    dropped = answer_for(r, chars, 2, False, 40, verdict_first=True, drop_restatements=True)
    assert kept == "结论：匹配\n这张无人机照片与卫星影像切片拍摄的是同一地点。"
    assert dropped == "结论：匹配\n两者都显示以树木为主的地表（约占 60%）。"


def test_consistency_metrics_on_hand_made_answers():
    texts = ["Verdict: match\nThe drone photo and the satellite tile show the same place.",  # agrees
             "Verdict: no match\nThese two images show the same location.",  # contradicts
             "结论：不匹配\n这张无人机照片与卫星影像切片拍摄的是同一地点。",  # contradicts (the case seen)
             "结论：不匹配\n无人机照片与卫星影像并不吻合。",  # agrees: 不吻合 is not read as 吻合
             "Verdict: match\nBoth show 5 buildings.",  # no stance
             "The drone photo matches the satellite tile. These differences rule out a match.",  # mixed, no verdict
             None]
    verdicts = ["match", "no_match", "no_match", "no_match", "match", None, None]
    langs = ["en", "en", "zh", "zh", "en", "en", "en"]
    assert [consistency.explanation_stance(t, lang) for t, lang in zip(texts, langs)] == [
        "match", "match", "match", "no_match", None, "mixed", None]
    m = consistency.consistency_metrics(texts, verdicts, langs)
    assert m["overall"] == {"n": 7, "judged": 4, "agrees": 0.5, "contradicts": 2 / 7, "no_stance": 2 / 7}
    assert m["language"]["zh"] == {"n": 2, "judged": 2, "agrees": 0.5, "contradicts": 0.5, "no_stance": 0.0}


# --- the cosine baseline -----------------------------------------------------------------------------

def test_threshold_is_tuned_for_accuracy():
    thr, acc = baselines.tune_threshold([0.9, 0.8, 0.7, 0.4, 0.3, 0.75], ["match", "match", "no_match", "no_match",
                                                                           "no_match", "match"])
    assert thr == pytest.approx(0.725) and acc == 1.0
    # 0.2 n, 0.5 m, 0.6 n, 0.9 m: cutting below 0.5 or below 0.9 both get 3 of 4; the first middle one wins
    thr, acc = baselines.tune_threshold([0.2, 0.5, 0.6, 0.9], ["no_match", "match", "no_match", "match"])
    assert thr == pytest.approx(0.35) and acc == 0.75
    assert baselines.threshold_verdicts([0.3, 0.35, 0.9], 0.35) == ["no_match", "match", "match"]


def test_pair_cosines_and_baseline_on_a_hand_made_similarity_set(tmp_path):
    vec = {"A": [1.0, 0.0], "B": [0.0, 1.0], "C": [0.6, 0.8]}
    calls = []

    def embed(paths, view):
        calls.append((view, len(paths)))
        return np.array([vec[p.stem.split("_")[0]] for p in paths], dtype=np.float32)

    tune = [rec(0, "match", q="A", s="A"), rec(1, "no_match", q="A", s="B"), rec(2, "match", q="B", s="B"),
            rec(3, "no_match", q="B", s="A")]
    ev = [rec(4, "match", q="C", s="C"), rec(5, "no_match", q="C", s="A", modality="ground")]
    for r in tune + ev:
        for key in ("query_path", "satellite_path"):
            (tmp_path / r[key]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / r[key]).touch()
    assert baselines.pair_cosines(ev, embed, tmp_path).tolist() == pytest.approx([1.0, 0.6])
    assert ("ground", 1) in calls and ("uav", 1) in calls  # query view = the record's modality
    out = baselines.cosine_threshold_baseline(tune, ev, embed, tmp_path)
    assert out["threshold"] == pytest.approx(0.5) and out["tune_accuracy"] == 1.0
    assert out["verdicts"] == ["match", "match"]  # 0.6 >= 0.5: a wrong answer the metrics will count
    with pytest.raises(DataError):
        baselines.pair_cosines([rec(6, q="Z", s="Z")], embed, tmp_path)


# --- subset, metrics file, report ---------------------------------------------------------------------

def _records(n=60):
    return [rec(i, ["match", "no_match", "no_match"][i % 3], ["en", "zh"][i // 3 % 2], ["uav", "ground"][i // 6 % 2])
            for i in range(n)]


def test_stratified_subset_is_proportional_and_deterministic():
    records = _records(60)
    a = stratified_subset(records, 20, seed=0)
    assert len(a) == 20 and a == stratified_subset(list(reversed(records)), 20, 0)[::-1]
    strata = {(r["modality"], r["language"], r["label"]) for r in records}
    assert {(r["modality"], r["language"], r["label"]) for r in a} == strata
    # 8 strata of 5 matches or 10 non-matches: quotas 1.67 -> 2 and 3.33 -> 3 (largest remainders)
    assert sum(r["label"] == "match" for r in a) == 8
    assert stratified_subset(records, 20, seed=1) != a and stratified_subset(records, None, 0) == records


def test_metrics_json_written_whole_with_fingerprints(tmp_path, sbert):
    truths = {"A": BUILD}
    ref = facts.explain(BUILD, BUILD, "match", "uav", "en", 0, "p")["explanation"]
    records = [rec(i, "match", explanation=ref) for i in range(3)] + [rec(3, "no_match", explanation=ref)]
    eval_file = tmp_path / "test.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    good = [ref + "\nVerdict: match"] * 3 + ["Both show 5 buildings.\nVerdict: no match"]
    systems = [SystemRun("gleamx", "fp-gleamx", good),
               SystemRun("label_only", "fp-label", ["Verdict: match"] * 4, explains=False),
               SystemRun("cosine_threshold", "fp-gleamc", None, verdicts=["match", "no_match", "match", "match"],
                         info={"threshold": 0.5})]
    out = tmp_path / "metrics" / "gleamx.json"
    info = eval_set_info(eval_file, 4, records, None, 0)
    m = evaluate_gleamx(records, systems, truths, out, info, sbert_model=sbert,
                        parse_verdict=lambda t, lang: "match" if "Verdict: match" in t else
                        "no_match" if "no match" in t else None)
    assert json.loads(out.read_text()) == m
    assert [m[s]["fingerprint"] for s in ("gleamx", "label_only", "cosine_threshold")] == ["fp-gleamx", "fp-label",
                                                                                          "fp-gleamc"]
    assert m["gleamx"]["accuracy"] == 1.0 and m["cosine_threshold"]["accuracy"] == 0.5
    assert m["gleamx"]["hallucination"] == pytest.approx(1 / 13, abs=1e-4)  # 3 x 4 true facts + 1 false count
    assert m["gleamx"]["explanation_agrees_with_verdict"] == 1.0 and m["gleamx"]["explanation_contradicts_verdict"] == 0
    assert "sbert" not in m["label_only"] and m["eval_set"]["sha256"] and m["eval_set"]["pairs"] == 4
    assert all(len(str(v).split(".")[-1]) <= 4 for v in m["gleamx"].values() if isinstance(v, float))
    before = out.read_bytes()
    with pytest.raises(DataError):  # answers not aligned with the pairs: nothing is (re)written
        evaluate_gleamx(records, [SystemRun("gleamx", "x", good[:2])], truths, out, info, sbert_model=sbert)
    assert out.read_bytes() == before and [p.name for p in out.parent.iterdir()] == ["gleamx.json"]
    table = markdown_table(m)
    assert "| gleamx | 100.0% [" in table and "cosine_threshold" in table


def test_report_page_shows_both_images_and_both_texts(tmp_path):
    from PIL import Image

    records = [rec(i, lbl, lang, q=f"L{i}", s=f"L{i}", explanation=f"reference {i}")
               for i, (lbl, lang) in enumerate(itertools.product(("match", "no_match"), ("en", "zh")))]
    for r in records:
        for key in ("query_path", "satellite_path"):
            (tmp_path / r[key]).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), (200, 10, 10)).save(tmp_path / r[key])
    run = SystemRun("gleamx", "fp", [f"generated <{i}>\nVerdict: match" for i in range(4)])
    verdicts = ["match", "match", None, "no_match"]
    metrics = {"gleamx": {"accuracy": 0.5, "accuracy_ci95": [0.1, 0.9], "f1": 0.6}, "eval_set": {"pairs": 4}}
    page = write_report(tmp_path / "report", metrics, records, run, verdicts, tmp_path, examples=4).read_text()
    assert page.count("data:image/jpeg;base64,") == 8 and "generated &lt;2&gt;" in page and "reference 3" in page
    assert "none (unparseable)" in page and "50.0% [10.0, 90.0]" in page


def test_run_explainer_keeps_pairs_aligned_and_counts_tokens(tmp_path):
    from gleam_models.gleamx.evaluate import run_explainer

    class FakeExplainer:  # the agreed GleamXExplainer.explain interface
        def explain(self, items, batch_size):
            from gleam_models.gleamx.generate import ExplainOutput
            return [ExplainOutput(f"{i.modality} {i.cosine}\nVerdict: match", "match", 4, 0.5) for i in items]

    records = [rec(0), rec(1, modality="ground")]
    run = run_explainer("gleamx", FakeExplainer(), records, tmp_path, "fp", cosines=[0.25, 0.75])
    assert run.texts == ["uav 0.25\nVerdict: match", "ground 0.75\nVerdict: match"]
    assert run.verdicts == ["match", "match"] and run.timing["tokens_per_s"] == pytest.approx(8.0)
    assert run.info["new_tokens"] == 8 and not {"tokens_per_s", "generation_s"} & set(run.info)  # not in metrics


def test_shortened_cover_names_are_still_read_as_facts():
    """A fine-tuned model writes "mostly buildings" for the teacher's "mostly buildings and rooftops":
    the share it states must still be checked (else a false share counts as no fact at all)."""
    from gleam_models.gleamx.fact_check import parse_facts

    en = parse_facts("These two images show the same place. Both show mostly buildings (about 99% of the area).", "en")
    assert [(f.key, f.value, f.subject) for f in en] == [("dominant", "building", "both"),
                                                         ("cover", ("building", 99), "both")]
    zh = parse_facts("两张图像显示的是同一位置。两者都以建筑为主（约占 40%）。", "zh")
    assert ("cover", ("building", 40)) in [(f.key, f.value) for f in zh]


@pytest.mark.parametrize("images", [{"query"}, {"satellite"}, {"query", "satellite"}])
def test_answers_say_nothing_of_the_cover_of_an_image_the_prompt_calls_unclear(embedded_dir, images):
    import csv

    manifest = list(csv.DictReader((embedded_dir / "manifest.csv").open(encoding="utf-8")))
    dropped_some = False
    for truths, q, s, modality, lang in _teacher_pairs(manifest):
        label = "match" if q == s else "no_match"
        text = facts.explain(truths[q], truths[s], label, modality, lang, 0, f"{q}|{s}")["explanation"]
        kept = fact_check.without_cover_facts(text, lang, frozenset(images))
        left = fact_check.parse_facts(kept, lang)
        assert not [f for f in left if f.key in fact_check.COVER_KEYS and f.subject in images | {"both", "either"}], kept
        # whole sentences go, in order: what is left is the text's own sentences
        sentences = fact_check.split_sentences(text, lang)
        assert [x for x in sentences if x in fact_check.split_sentences(kept, lang)] == fact_check.split_sentences(kept, lang)
        dropped_some |= kept != text
    assert dropped_some
    assert fact_check.without_cover_facts("Both show 5 buildings.", "en", frozenset()) == "Both show 5 buildings."


def test_an_unclear_image_leaves_its_cover_out_of_the_training_answer():
    from gleam_models.gleamx.data import answer_for

    words = lambda text, add_special_tokens=False: {"input_ids": text.split()}  # noqa: E731
    expl = ("The drone image is mostly tree cover (about 60% of the area), while the satellite tile is mostly "
            "buildings (about 40% of the area). The satellite tile shows 3 buildings.")
    r = SimpleNamespace(explanation=expl, label="no_match", language="en")
    full = answer_for(r, words, None, False, 200, verdict_first=True)
    gated = answer_for(r, words, None, False, 200, verdict_first=True, unmeasured=frozenset({"query"}))
    assert "tree cover" in full and "tree cover" not in gated and "3 buildings" in gated, gated
