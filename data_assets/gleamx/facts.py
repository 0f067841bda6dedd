"""The grounded facts teacher: explanations written from each location's ground truth.

Offline and deterministic. Every number and cover type it states comes from the manifest's
`ground_truth` of the location it talks about, so its drafts are true by construction; several
templates per sentence type, picked by an RNG seeded by (seed, pair id), keep the phrasing varied.
A match cites facts the two images share; a non-match contrasts the facts that differ most.
A class the source does not annotate (ground truth `annotated`, null counts) is unknown, not absent:
nothing is said about it.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from data_assets.errors import DataError
from data_assets.gleamx.pairs import stable_int
from data_assets.gleamx.prompts import VIEW_NAMES

FACTS_VERSION = "facts-templates-1"

COVER = {
    "en": {"road": "paved roads and pavement", "building": "buildings and rooftops", "tree": "tree cover",
           "bare": "bare ground"},
    "zh": {"road": "道路和铺装地面", "building": "建筑屋顶", "tree": "树木", "bare": "裸露地面"},
}
ORIENT = {
    "en": ["north-south", "northeast-southwest", "east-west", "northwest-southeast"],
    "zh": ["南北向", "东北-西南向", "东西向", "西北-东南向"],
}
FACT_LABEL = {
    "en": {"dominant": "land cover", "roads": "roads", "buildings": "buildings", "trees": "trees"},
    "zh": {"dominant": "地表覆盖", "roads": "道路", "buildings": "建筑", "trees": "树木"},
}
SAT = {"en": "the satellite tile", "zh": "卫星影像"}
OPEN_MATCH = {
    "en": ["The {view} and the satellite tile show the same place.", "This {view} matches the satellite tile.",
           "These two images show the same location."],
    "zh": ["这张{view}与卫星影像切片拍摄的是同一地点。", "{view}与卫星影像相互吻合。", "两张图像显示的是同一位置。"],
}
OPEN_NO_MATCH = {
    "en": ["The {view} and the satellite tile show different places.",
           "This {view} does not match the satellite tile.", "These two images show two different locations."],
    "zh": ["这张{view}与卫星影像切片拍摄的不是同一地点。", "{view}与卫星影像并不吻合。", "两张图像显示的是两个不同的位置。"],
}
SHARED = {
    "en": ["Both show {fact}.", "The {view} shows {fact}, as does the satellite tile.",
           "Both images contain {fact}."],
    "zh": ["两者都显示{fact}。", "{view}和卫星影像上都显示{fact}。", "两张图像均显示{fact}。"],
}
CONTRAST = {
    "en": ["The {view} shows {q}, while the satellite tile shows {s}.",
           "The {view} has {q}, but the satellite tile has {s}.",
           "Where the {view} shows {q}, the satellite tile shows {s}."],
    "zh": ["{view}显示{q}，而卫星影像显示{s}。", "{view}上显示的是{q}，卫星影像上则显示{s}。",
           "对比来看，{view}显示{q}，卫星影像却显示{s}。"],
}
CLOSE_MATCH = {
    "en": ["", "The layouts line up, so this is a match.", "Together these cues confirm a match."],
    "zh": ["", "布局一致，因此判定为匹配。", "这些线索共同证实两者匹配。"],
}
CLOSE_NO_MATCH = {
    "en": ["", "The layouts do not line up, so this is not a match.", "These differences rule out a match."],
    "zh": ["", "两者布局不一致，因此不是同一地点。", "这些差异排除了匹配的可能。"],
}
# What each query view can reasonably show: a street map draws no individual trees.
VISIBLE = {"uav": ("roads", "buildings", "trees"), "street_map": ("roads", "buildings"),
           "panorama": ("roads", "buildings", "trees"), "ground": ("roads", "buildings", "trees")}


def parse_truth(raw: Any, where: str) -> dict:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(None, f"{where}: no ground_truth; the facts teacher needs it (use teacher: openai)")
    try:
        truth = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(None, f"{where}: ground_truth is not valid JSON ({e})") from None
    missing = [k for k in ("dominant", "land_cover", "roads", "intersections", "buildings", "trees") if k not in truth]
    if missing:
        raise DataError(None, f"{where}: ground_truth lacks keys {missing}")
    return truth


def known(truth: dict, fact: str) -> bool:
    """Whether the ground truth knows this fact (its class is annotated for the location)."""
    cls = {"roads": "road", "buildings": "building", "trees": "tree"}[fact]
    if "annotated" in truth:
        return cls in truth["annotated"]
    if fact == "roads":
        return truth.get("intersections") is not None or bool(truth.get("roads"))
    return (truth.get(fact) or {}).get("count") is not None


def orientation(bearing_deg: float, lang: str) -> str:
    return ORIENT[lang][int(((float(bearing_deg) % 180) + 22.5) // 45) % 4]


def _crossing_right_angles(roads: list[dict]) -> bool:
    if len(roads) != 2:
        return False
    diff = abs(float(roads[0]["bearing_deg"]) - float(roads[1]["bearing_deg"])) % 180
    return 70 <= diff <= 110


def _join_en(items: list[str], conj: str = "and") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conj} " + items[-1]


def road_phrase(truth: dict, lang: str) -> str:
    roads, junctions = truth.get("roads") or [], int(truth.get("intersections") or 0)
    n = len(roads)
    names = sorted({r["name"] for r in roads if r.get("name")})
    named = ((" including " + ", ".join(names[:2])) if lang == "en" else "（包括" + "、".join(names[:2]) + "）") if names else ""
    orients = list(dict.fromkeys(orientation(r["bearing_deg"], lang) for r in roads))
    if lang == "en":
        if n == 0:
            return "no roads"
        if n == 1:
            return f"1 road running {orients[0]}{named}"
        if junctions and _crossing_right_angles(roads):
            return f"{n} roads crossing at right angles{named}"
        meet = f" meeting at {junctions} junction{'s' if junctions != 1 else ''}" if junctions else ""
        return f"{n} roads running {_join_en(orients)}{meet}{named}"
    if n == 0:
        return "没有道路"
    if n == 1:
        return f"1 条{orients[0]}的道路{named}"
    if junctions and _crossing_right_angles(roads):
        return f"{n} 条呈直角相交的道路{named}"
    meet = f"，形成 {junctions} 个路口" if junctions else ""
    return f"{n} 条道路（{'、'.join(orients)}）{meet}{named}"


def building_phrase(truth: dict, lang: str) -> str:
    b = truth.get("buildings") or {}
    n, largest = int(b.get("count") or 0), b.get("largest_area_m2")
    if n == 0:
        return "no buildings" if lang == "en" else "没有建筑"
    if lang == "en":
        size = f", the largest about {round(float(largest))} m²" if largest else ""
        return f"{n} building{'s' if n != 1 else ''}{size}"
    size = f"（最大的约 {round(float(largest))} 平方米）" if largest else ""
    return f"{n} 栋建筑{size}"


def tree_phrase(truth: dict, lang: str) -> str:
    t = truth.get("trees") or {}
    n, per_ha = int(t.get("count") or 0), float(t.get("per_hectare") or 0)
    if n == 0:
        return "no trees" if lang == "en" else "没有树木"
    if lang == "en":
        return f"{n} tree{'s' if n != 1 else ''} (about {round(per_ha)} per hectare)"
    return f"{n} 棵树（每公顷约 {round(per_ha)} 棵）"


def dominant_phrase(truth: dict, lang: str) -> str:
    dom = truth.get("dominant") or "other"
    share = (truth.get("land_cover") or {}).get("other" if dom in ("bare", "other") else dom)
    pct = f" (about {round(100 * float(share))}% of the area)" if share is not None else ""
    if dom == "other":  # no annotated class dominates: say what it is not, not what it is
        labelled = [c for c in truth.get("annotated") or ("road", "building", "tree")]
        if lang == "en":
            names = {"road": "roads", "building": "buildings", "tree": "trees"}
            return f"mostly ground other than {_join_en([names[c] for c in labelled], 'or')}{pct}"
        names = {"road": "道路", "building": "建筑", "tree": "树木"}
        pct = f"（约占 {round(100 * float(share))}%）" if share is not None else ""
        return f"以{'、'.join(names[c] for c in labelled)}以外的地表为主{pct}"
    if lang == "en":
        return f"mostly {COVER['en'][dom]}{pct}"
    pct = f"（约占 {round(100 * float(share))}%）" if share is not None else ""
    return f"以{COVER['zh'][dom]}为主的地表{pct}"


PHRASES = {"dominant": dominant_phrase, "roads": road_phrase, "buildings": building_phrase, "trees": tree_phrase}


def _count(truth: dict, fact: str) -> float:
    if not known(truth, fact):
        return 0
    if fact == "roads":
        return len(truth.get("roads") or [])
    if fact == "buildings":
        return int((truth.get("buildings") or {}).get("count") or 0)
    return int((truth.get("trees") or {}).get("count") or 0)


def _difference(q: dict, s: dict, fact: str) -> float:
    """How clearly a fact tells the two locations apart (0 = not at all)."""
    if fact == "dominant":
        return 2.0 if q.get("dominant") != s.get("dominant") else 0.0
    a, b = _count(q, fact), _count(s, fact)
    return abs(a - b) / max(a, b, 1) + (1.0 if (a == 0) != (b == 0) else 0.0)


def explain(query_truth: dict, satellite_truth: dict, label: str, modality: str, lang: str,
            seed: int, pair_id: str) -> dict:
    """{"verdict", "explanation", "evidence"} for one pair, in `lang`."""
    rng = np.random.default_rng(stable_int(seed, "facts", pair_id))
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    view = VIEW_NAMES[lang][modality]
    facts = ["dominant", *VISIBLE[modality]]
    sentences, evidence = [], []
    if label == "match":
        present = [f for f in facts[1:] if known(satellite_truth, f) and _count(satellite_truth, f) > 0]
        rng.shuffle(present)
        chosen = ["dominant", *present[:2]]  # absent features make weak evidence for a match
        sentences.append(pick(OPEN_MATCH[lang]).format(view=view))
        for fact in chosen:
            text = PHRASES[fact](satellite_truth, lang)
            sentences.append(pick(SHARED[lang]).format(view=view, fact=text))
            evidence.append(f"{FACT_LABEL[lang][fact]}: {text}" if lang == "en" else f"{FACT_LABEL[lang][fact]}：{text}")
        sentences.append(pick(CLOSE_MATCH[lang]))
    else:
        facts = ["dominant", *(f for f in facts[1:] if known(query_truth, f) and known(satellite_truth, f))]
        scored = sorted(facts, key=lambda f: (-_difference(query_truth, satellite_truth, f), facts.index(f)))
        differing = [f for f in scored if _difference(query_truth, satellite_truth, f) > 0]
        chosen = (differing or scored)[:3]
        sentences.append(pick(OPEN_NO_MATCH[lang]).format(view=view))
        for fact in chosen:
            q, s = PHRASES[fact](query_truth, lang), PHRASES[fact](satellite_truth, lang)
            sentences.append(pick(CONTRAST[lang]).format(view=view, q=q, s=s))
            evidence.append(f"{FACT_LABEL['en'][fact]}: {q} in the {view}; {s} in the satellite tile" if lang == "en"
                            else f"{FACT_LABEL['zh'][fact]}：{view}为{q}，卫星影像为{s}")
        sentences.append(pick(CLOSE_NO_MATCH[lang]))
    joiner = " " if lang == "en" else ""
    return {"verdict": label, "explanation": joiner.join(s for s in sentences if s), "evidence": evidence}
