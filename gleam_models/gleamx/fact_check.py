"""Grounded-fact accuracy: parse every fact an explanation states and check it against ground truth.

The explanations follow the facts teacher's phrasing (data_assets.gleamx.facts), so the parser is
built from that module's own templates and vocabularies (COVER, ORIENT, VIEW_NAMES, CONTRAST, ...):
1. split the text into sentences; match each against the teacher's sentence templates to learn
   which image a clause is about (a contrast's first half = the query, its second = the satellite
   tile; "Both show ..." = both). A sentence no template fits falls back to a plain reading: "both"
   words -> both images, otherwise text before the satellite tile's name -> query, after -> satellite.
2. scan each clause for atomic facts: dominant cover and its share, cover shares, road count /
   orientations / bearings / total length / junctions / right-angle crossings / names, building count
   and largest footprint, tree count and density.
3. check each atomic fact against the ground truth of the location it is about, with the teacher's
   own TOLERANCE: a stated value is true when the teacher would not call it a difference from the
   truth (counts of roads, junctions, buildings must be exact; trees count by density).
A fact about a class the location's source does not annotate is "unverifiable" (unknown, not
absent): reported on its own, outside the correct share and the hallucination rate.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from data_assets.errors import DataError
from data_assets.gleamx import facts as F
from data_assets.gleamx.prompts import VIEW_NAMES
from data_assets.gleamx.schema import record_field as _get
from gleam_models.gleamx.fact_patterns import EN, ORIENT_INDEX, alternation, scan, scan_short
from gleam_models.gleamx.text_metrics import explanation_part

SENTENCE_END = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}
BOTH_WORDS = {"en": re.compile(r"\bboth\b|\bas does\b", re.I), "zh": re.compile(r"两者|都显示|均显示|都是")}


@dataclass(frozen=True)
class Fact:
    key: str  # dominant, dominant_share, cover, road_count, road_orientation, road_bearing, ...
    value: Any
    subject: str  # query | satellite | both | either


@dataclass(frozen=True)
class CheckedFact:
    fact: Fact
    status: str  # correct | false | unverifiable
    truth: str  # what the ground truth says, for the report


# --- 1. sentences, templates, subjects ---------------------------------------------------------------

ASPECT_OF = {lang: {name: key for key, name in F.ASPECT_NAME[lang].items()}
             | {name: key for key, name in F.SMALL_NAME[lang].items()} for lang in ("en", "zh")}
SUBJECTS = {"q": "query", "s": "satellite", "fact": "both", "shared": "both"}


def _template_regex(template: str, lang: str) -> re.Pattern:
    views = alternation(VIEW_NAMES[lang].values())
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        else:
            out.append(f"(?:{views})" if part == "view" else f"(?P<{part}>.+?)")
    return re.compile("".join(out))


TEMPLATES = {lang: [_template_regex(t, lang) for group in (F.SIMILAR, F.SHARED, F.CONTRAST, F.SMALL_DIFFERENCE)
                    for t in group[lang]] + [_template_regex(F.UNRELATED[lang], lang)] for lang in ("en", "zh")}


def split_sentences(text: str, lang: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END[lang].split(text.strip()) if s.strip()]


def join_sentences(sentences: Sequence[str], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(sentences)


def _fallback(sentence: str, lang: str) -> list[Fact]:
    if BOTH_WORDS[lang].search(sentence):
        return [Fact(k, v, "both") for k, v in scan(sentence, lang)]
    head, sat, tail = sentence.partition(F.SAT[lang].removeprefix("the "))
    if not sat:
        subject = "query" if any(v in sentence for v in VIEW_NAMES[lang].values()) else "either"
        return [Fact(k, v, subject) for k, v in scan(sentence, lang)]
    return [Fact(k, v, "query") for k, v in scan(head, lang)] + [Fact(k, v, "satellite") for k, v in scan(tail, lang)]


def parse_facts(text: str, lang: str) -> list[Fact]:
    """Every atomic fact the explanation states, with the image it is about."""
    out = []
    for sentence in split_sentences(text, lang):
        m = next((m for t in TEMPLATES[lang] for m in [t.fullmatch(sentence)] if m), None)
        if m is None:
            out += _fallback(sentence, lang)
            continue
        groups = m.groupdict()
        aspect = ASPECT_OF[lang].get(groups.pop("name", None) or "")
        for slot, clause in groups.items():
            found = scan_short(aspect, clause, lang) if aspect else scan(clause, lang)
            out += [Fact(k, v, SUBJECTS[slot]) for k, v in found]
    return out


COVER_KEYS = ("dominant", "cover")  # what the fact probes read (fact_probes.py)


def without_cover_facts(explanation: str, lang: str, images: frozenset[str]) -> str:
    """The explanation minus the sentences that state the land cover of one of `images` ("query",
    "satellite"; a sentence about both or either counts): trained on such answers where its prompt
    calls an image unclear, the model learns to say nothing of that image's cover instead of guessing."""
    if not images:
        return explanation
    about = lambda f: f.key in COVER_KEYS and (f.subject in images or f.subject in ("both", "either"))  # noqa: E731
    return join_sentences([s for s in split_sentences(explanation, lang)
                           if not any(about(f) for f in parse_facts(s, lang))], lang)


# --- 3. checking against ground truth ----------------------------------------------------------------

FACT_CLASS = {"road_count": "roads", "road_orientation": "roads", "road_bearing": "roads", "road_length": "roads",
              "road_names": "roads", "right_angles": "roads", "junctions": "roads", "building_count": "buildings",
              "building_largest": "buildings", "tree_count": "trees", "tree_density": "trees"}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0


def _class_known(truth: dict, cls: str) -> bool:
    return cls in ("other", "bare") or F.known(truth, {"road": "roads", "building": "buildings", "tree": "trees"}[cls])


def check_fact(key: str, value: Any, truth: dict) -> tuple[str, str]:
    """(status, what the truth says) of one fact about one location."""
    tol = F.TOLERANCE
    roads = truth.get("roads") or []
    if key == "dominant":
        actual = "other" if truth.get("dominant") in ("bare", "other", None) else truth["dominant"]
        if value not in ("bare", "other") and not _class_known(truth, value):
            return "unverifiable", f"{value} not annotated"
        return ("correct" if ("other" if value == "bare" else value) == actual else "false"), actual
    if key == "cover":
        cls, pct = value
        share = (truth.get("land_cover") or {}).get("other" if cls == "bare" else cls)
        if share is None:
            return "unverifiable", f"{cls} not annotated"
        return ("correct" if abs(pct - 100 * share) <= tol["cover_pts"] else "false"), f"{100 * share:.0f}%"
    if key == "trees_similar":
        raise AssertionError("trees_similar compares two locations; see check_pair_fact")
    fact = FACT_CLASS[key]
    if not F.known(truth, fact):
        return "unverifiable", f"{fact} not annotated"
    if key == "road_count":
        return ("correct" if value == len(roads) else "false"), str(len(roads))
    if key == "road_orientation":  # the teacher names every distinct direction: the sets must agree
        actual = {ORIENT_INDEX[F.orientation(r["bearing_deg"], "en")] for r in roads}
        return ("correct" if value == actual else "false"), ", ".join(EN[i] for i in sorted(actual))
    if key == "road_bearing":
        bearings = [float(r["bearing_deg"]) for r in roads]
        if len(bearings) != len(value):
            return "false", str(bearings)
        gap, _ = F._bearing_gap([float(v) for v in value], bearings)
        return ("correct" if gap <= tol["bearing_deg"] else "false"), str(bearings)
    if key == "road_length":
        total = sum(float(r["length_m"]) for r in roads)
        return ("correct" if total > 0 and _rel(value, total) <= tol["road_length"] else "false"), f"{total:.0f} m"
    if key == "road_names":
        names = {r.get("name") for r in roads if r.get("name")}
        return ("correct" if set(value) <= names else "false"), ", ".join(sorted(names)) or "no names"
    if key == "right_angles":
        ok = F._crossing_right_angles(roads) and int(truth.get("intersections") or 0) > 0
        return ("correct" if ok else "false"), str([r["bearing_deg"] for r in roads])
    if key == "junctions":
        actual = int(truth.get("intersections") or 0)
        return ("correct" if value == actual else "false"), str(actual)
    b, t = truth.get("buildings") or {}, truth.get("trees") or {}
    if key == "building_count":
        return ("correct" if value == int(b.get("count") or 0) else "false"), str(b.get("count"))
    if key == "building_largest":
        largest = b.get("largest_area_m2")
        ok = bool(largest) and _rel(value, float(largest)) <= tol["building_area"]
        return ("correct" if ok else "false"), f"{largest} m²"
    if key in ("tree_count", "tree_density"):
        n, per_ha = int(t.get("count") or 0), float(t.get("per_hectare") or 0)
        actual = n if key == "tree_count" else per_ha
        ok = (value == 0) == (n == 0) and _rel(value, actual) <= tol["tree_density"]
        return ("correct" if ok else "false"), f"{n} trees, {per_ha:.0f}/ha"
    raise AssertionError(f"unknown fact key {key}")


def _trees_similar(q: dict, s: dict) -> tuple[str, str]:
    if not (F.known(q, "trees") and F.known(s, "trees")):
        return "unverifiable", "trees not annotated on both"
    dq, ds = (float((t.get("trees") or {}).get("per_hectare") or 0) for t in (q, s))
    ok = (dq == 0) == (ds == 0) and _rel(dq, ds) <= F.TOLERANCE["tree_density"]
    return ("correct" if ok else "false"), f"{dq:.0f} vs {ds:.0f} per ha"


def check_pair_fact(fact: Fact, query_truth: dict, satellite_truth: dict, same_place: bool) -> CheckedFact:
    if fact.key == "trees_similar":
        return CheckedFact(fact, *_trees_similar(query_truth, satellite_truth))
    truths = {"query": [query_truth], "satellite": [satellite_truth]}.get(
        fact.subject, [satellite_truth] if same_place else [query_truth, satellite_truth])
    results = [check_fact(fact.key, fact.value, t) for t in truths]
    statuses = [s for s, _ in results]
    if fact.subject == "either":
        status = "correct" if "correct" in statuses else "false" if "false" in statuses else "unverifiable"
    else:
        status = "false" if "false" in statuses else "unverifiable" if "unverifiable" in statuses else "correct"
    return CheckedFact(fact, status, " | ".join(t for _, t in results))



def check_explanation(record: Any, text: str | None, truths: dict[str, dict]) -> list[CheckedFact]:
    """Every fact `text` states about the record's pair, checked against the two locations' truth."""
    qid, sid = _get(record, "query_location_id"), _get(record, "satellite_location_id")
    missing = [i for i in (qid, sid) if i not in truths]
    if missing:
        raise DataError(None, f"pair {_get(record, 'id')}: no ground truth for location(s) {missing}")
    return [check_pair_fact(f, truths[qid], truths[sid], qid == sid)
            for f in parse_facts(explanation_part(text), _get(record, "language"))]


def truths_from_manifest(manifest_path: Path) -> dict[str, dict]:
    """location_id -> ground truth (dict) of every location the manifest knows."""
    import pandas as pd

    path = Path(manifest_path)
    if not path.is_file():
        raise DataError(path, "manifest not found (run the validate stage first)")
    df = pd.read_parquet(path, columns=["location_id", "ground_truth"]).dropna().drop_duplicates("location_id")
    return {row.location_id: F.parse_truth(row.ground_truth, f"{path}: {row.location_id}") for row in df.itertuples()}


def fact_summary(checked: Sequence[Sequence[CheckedFact]]) -> dict:
    """Correct share and hallucination rate over checkable facts; unverifiable share over all stated."""
    flat = [c for answer in checked for c in answer]
    counts = Counter(c.status for c in flat)
    checkable = counts["correct"] + counts["false"]
    false_by_key = Counter(c.fact.key for c in flat if c.status == "false")
    return {
        "answers": len(checked), "facts": len(flat), "checkable": checkable,
        "correct_share": counts["correct"] / checkable if checkable else None,
        "hallucination_rate": counts["false"] / checkable if checkable else None,
        "unverifiable_share": counts["unverifiable"] / len(flat) if flat else None,
        "facts_per_answer": len(flat) / len(checked) if checked else 0.0,
        "false_by_key": dict(sorted(false_by_key.items())),
    }


def fact_metrics(records: Sequence[Any], texts: Sequence[str | None], truths: dict[str, dict]) -> dict:
    """fact_summary overall, per language and per modality."""
    checked = [check_explanation(r, t, truths) for r, t in zip(records, texts)]
    out = {"overall": fact_summary(checked)}
    for group in ("language", "modality"):
        idx = defaultdict(list)
        for i, r in enumerate(records):
            idx[_get(r, group)].append(i)
        out[group] = {k: fact_summary([checked[i] for i in rows]) for k, rows in sorted(idx.items())}
    return out
