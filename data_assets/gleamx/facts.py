"""The grounded facts teacher: explanations written from each location's ground truth.

Offline and deterministic. Every number and cover type it states comes from the manifest's
`ground_truth` of the location it talks about, so its drafts are true by construction; several
templates per sentence type, picked by an RNG seeded by (seed, pair id), keep the phrasing varied.
A match cites facts the two images share. A non-match cites only facts that differ beyond a
tolerance (TOLERANCE), most distinctive first; when a hard negative's known facts agree within
tolerance it says so, names the finest difference there is (if any) and rests the verdict on finer
layout details - it never presents one value on both sides as a difference.
A class the source does not annotate (ground truth `annotated`, null counts) is unknown, not absent:
nothing is said about it.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_assets.errors import DataError
from data_assets.gleamx.pairs import stable_int
from data_assets.gleamx.prompts import VIEW_NAMES

FACTS_VERSION = "facts-templates-2"  # 2: no_match cites only facts that differ beyond TOLERANCE

# Below these gaps two locations' values count as "the same" in an explanation: a viewer cannot tell
# 18 from 24 trees or a 10-degree bearing change on a 32-64 m tile, so citing them as proof is wrong.
TOLERANCE = {
    "cover_pts": 10.0,       # land-cover share, percentage points
    "bearing_deg": 20.0,     # road direction, degrees (undirected)
    "road_length": 0.30,     # total road length, relative |a - b| / max(a, b)
    "tree_density": 0.25,    # trees per hectare, relative
    "building_area": 0.30,   # largest building footprint, relative
}  # counts (roads, buildings, junctions) differ as soon as they are unequal

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


def _count(truth: dict, fact: str) -> int:
    if fact == "roads":
        return len(truth.get("roads") or [])
    return int((truth.get(fact) or {}).get("count") or 0)


def orientation(bearing_deg: float, lang: str) -> str:
    return ORIENT[lang][int(((float(bearing_deg) % 180) + 22.5) // 45) % 4]


def _crossing_right_angles(roads: list[dict]) -> bool:
    if len(roads) != 2:
        return False
    diff = abs(float(roads[0]["bearing_deg"]) - float(roads[1]["bearing_deg"])) % 180
    return 70 <= diff <= 110


def _join_en(items: list[str], conj: str = "and") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conj} " + items[-1]


def road_phrase(truth: dict, lang: str, with_names: bool = True) -> str:
    roads, junctions = truth.get("roads") or [], int(truth.get("intersections") or 0)
    n = len(roads)
    names = sorted({r["name"] for r in roads if r.get("name")}) if with_names else []
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


def dominant_phrase(truth: dict, lang: str, with_share: bool = True) -> str:
    dom = truth.get("dominant") or "other"
    share = (truth.get("land_cover") or {}).get("other" if dom in ("bare", "other") else dom) if with_share else None
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


CLASS_OF = {"roads": "road", "buildings": "building", "trees": "tree"}
COVER_NAME = {"en": {"road": "roads and pavement", "building": "buildings", "tree": "trees"},
              "zh": {"road": "道路", "building": "建筑", "tree": "树木"}}
ASPECT_NAME = {  # what each compared fact is called in evidence and in the "small difference" sentence
    "en": {"dominant": "land cover", "cover_road": "road cover", "cover_building": "building cover",
           "cover_tree": "tree cover", "road_count": "roads", "road_bearing": "road direction",
           "road_length": "total road length", "junctions": "junctions", "building_count": "buildings",
           "building_largest": "largest building", "trees": "trees"},
    "zh": {"dominant": "地表覆盖", "cover_road": "道路覆盖率", "cover_building": "建筑覆盖率", "cover_tree": "树冠覆盖率",
           "road_count": "道路", "road_bearing": "道路走向", "road_length": "道路总长", "junctions": "路口",
           "building_count": "建筑", "building_largest": "最大建筑面积", "trees": "树木"},
}
SMALL_NAME = {"en": {"trees": "tree count"}, "zh": {"trees": "树木数量"}}  # where the fact's name reads badly there
NO_CLEAR_DIFFERENCE = {"en": "no clear difference", "zh": "无明显差异"}  # evidence marker of the fallback


@dataclass(frozen=True)
class Aspect:
    """One fact compared between the two locations.

    score = gap / tolerance: > 1 a real difference, (0, 1] a small one, 0 none (the two values read
    the same). q/s are full phrases for a contrast sentence, q_short/s_short the bare values."""
    key: str
    score: float
    q: str
    s: str
    q_short: str = ""
    s_short: str = ""


def _classes(truth: dict) -> set[str]:
    return {CLASS_OF[f] for f in CLASS_OF if known(truth, f)}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0


def _count_gap(a: int, b: int, weight: float = 2.0) -> float:
    """Unequal counts always differ (score > 1); one side empty is the most telling."""
    return 0.0 if a == b else weight * (1.0 + _rel(a, b)) + (weight if (a == 0) != (b == 0) else 0.0)


def _bearing_gap(qb: list[float], sb: list[float]) -> tuple[float, list[float]]:
    """Largest undirected angle between matched roads (best matching), and s's bearings in q's order."""
    def angle(a, b):
        d = abs(a - b) % 180
        return min(d, 180 - d)
    orders = itertools.permutations(sb) if len(sb) <= 6 else [tuple(sorted(sb))]
    best = min(orders, key=lambda order: (max(angle(a, b) for a, b in zip(qb, order)), order))
    return max(angle(a, b) for a, b in zip(qb, best)), list(best)


def _bearing_text(bearings: list[float], lang: str) -> tuple[str, str]:
    degs = [f"{round(b) % 180}°" for b in bearings]
    if lang == "en":
        short = f"about {_join_en(degs)} from north"
        if len(bearings) == 1:
            return f"1 road running {orientation(bearings[0], lang)} ({short})", short
        return f"{len(bearings)} roads at {short}", short
    short = f"偏离正北 {'、'.join(degs)} 左右"
    if len(bearings) == 1:
        return f"1 条{orientation(bearings[0], lang)}的道路（{short}）", short
    return f"{len(bearings)} 条道路（{short}）", short


def _junction_text(n: int, lang: str) -> str:
    if lang == "en":
        return "no junctions" if n == 0 else f"{n} junction{'s' if n != 1 else ''}"
    return "没有路口" if n == 0 else f"{n} 个路口"


def _dominant_aspect(q: dict, s: dict, same_classes: bool, lang: str) -> Aspect | None:
    dq, ds = (("other" if t.get("dominant") in ("bare", "other", None) else t["dominant"]) for t in (q, s))
    if not same_classes and "other" in (dq, ds):
        return None  # "none of the annotated classes" means different things in the two places
    if dq == ds:
        return Aspect("dominant", 0.0, dominant_phrase(q, lang), dominant_phrase(s, lang))
    lq, ls = q.get("land_cover") or {}, s.get("land_cover") or {}
    gaps = [100 * abs(lq[c] - ls[c]) for c in (dq, ds) if lq.get(c) is not None and ls.get(c) is not None]
    if gaps:  # a flip across the dominance threshold is no difference unless the shares really differ
        score = 2 * max(gaps) / TOLERANCE["cover_pts"] if max(gaps) > TOLERANCE["cover_pts"] else 0.0
    else:  # different labelled classes, each dominant where it is labelled (e.g. roads vs trees)
        score = 3.0
    return Aspect("dominant", score, dominant_phrase(q, lang), dominant_phrase(s, lang))


def _cover_aspect(q: dict, s: dict, cls: str, lang: str) -> Aspect | None:
    a, b = (q.get("land_cover") or {}).get(cls), (s.get("land_cover") or {}).get(cls)
    if a is None or b is None:
        return None
    pa, pb = round(100 * float(a)), round(100 * float(b))
    score = 100 * abs(float(a) - float(b)) / TOLERANCE["cover_pts"] if pa != pb else 0.0
    if lang == "en":
        full = lambda p: f"{COVER_NAME['en'][cls]} over about {p}% of the area"  # noqa: E731
        return Aspect(f"cover_{cls}", score, full(pa), full(pb), f"about {pa}%", f"about {pb}%")
    full = lambda p: f"{COVER_NAME['zh'][cls]}约占 {p}% 的面积"  # noqa: E731
    return Aspect(f"cover_{cls}", score, full(pa), full(pb), f"{pa}% 左右", f"{pb}% 左右")


def _road_aspects(q: dict, s: dict, lang: str) -> list[Aspect]:
    rq, rs = q.get("roads") or [], s.get("roads") or []
    out = [Aspect("road_count", _count_gap(len(rq), len(rs)), road_phrase(q, lang), road_phrase(s, lang))]
    if rq and len(rq) == len(rs):
        qb = [float(r["bearing_deg"]) for r in rq]
        gap, sb = _bearing_gap(qb, [float(r["bearing_deg"]) for r in rs])
        (qf, qs), (sf, ss) = _bearing_text(qb, lang), _bearing_text(sb, lang)
        out.append(Aspect("road_bearing", gap / TOLERANCE["bearing_deg"] if qs != ss else 0.0, qf, sf, qs, ss))
    if rq and rs:
        raw = [sum(float(r["length_m"]) for r in roads) for roads in (rq, rs)]
        la, lb = (round(x) for x in raw)  # scored on the exact lengths, stated rounded
        score = _rel(*raw) / TOLERANCE["road_length"] if la != lb else 0.0
        if lang == "en":
            out.append(Aspect("road_length", score, f"roads totalling about {la} m", f"roads totalling about {lb} m",
                              f"about {la} m", f"about {lb} m"))
        else:
            out.append(Aspect("road_length", score, f"总长约 {la} 米的道路", f"总长约 {lb} 米的道路", f"{la} 米左右", f"{lb} 米左右"))
    jq, js = q.get("intersections"), s.get("intersections")
    if jq is not None and js is not None:
        # junctions weigh less than the roads themselves: they are harder to see
        out.append(Aspect("junctions", _count_gap(int(jq), int(js), 0.75), _junction_text(int(jq), lang),
                          _junction_text(int(js), lang)))
    return out


def _building_aspects(q: dict, s: dict, lang: str) -> list[Aspect]:
    bq, bs = q.get("buildings") or {}, s.get("buildings") or {}
    nq, ns = int(bq.get("count") or 0), int(bs.get("count") or 0)
    out = [Aspect("building_count", _count_gap(nq, ns), building_phrase(q, lang), building_phrase(s, lang))]
    if bq.get("largest_area_m2") and bs.get("largest_area_m2"):
        raw = float(bq["largest_area_m2"]), float(bs["largest_area_m2"])
        aq, as_ = (round(x) for x in raw)
        score = _rel(*raw) / TOLERANCE["building_area"] if aq != as_ else 0.0
        if lang == "en":
            out.append(Aspect("building_largest", score, f"a largest building of about {aq} m²",
                              f"a largest building of about {as_} m²", f"about {aq} m²", f"about {as_} m²"))
        else:
            out.append(Aspect("building_largest", score, f"最大建筑约 {aq} 平方米", f"最大建筑约 {as_} 平方米",
                              f"{aq} 平方米左右", f"{as_} 平方米左右"))
    return out


def _tree_aspect(q: dict, s: dict, lang: str) -> Aspect:
    tq, ts = q.get("trees") or {}, s.get("trees") or {}
    nq, ns = int(tq.get("count") or 0), int(ts.get("count") or 0)
    dq, ds = float(tq.get("per_hectare") or nq), float(ts.get("per_hectare") or ns)
    gap = _rel(dq, ds) / TOLERANCE["tree_density"] + (2.0 if (nq == 0) != (ns == 0) else 0.0)
    qf, sf = tree_phrase(q, lang), tree_phrase(s, lang)
    short = ((lambda n, d: f"{n} (about {round(d)} per hectare)") if lang == "en"
             else (lambda n, d: f"{n} 棵（每公顷约 {round(d)} 棵）"))
    return Aspect("trees", gap if qf != sf else 0.0, qf, sf, short(nq, dq), short(ns, ds))


def compare(q: dict, s: dict, modality: str, lang: str) -> list[Aspect]:
    """Every fact both locations know and the view can show, scored by how far apart they are."""
    both, same_classes = _classes(q) & _classes(s), _classes(q) == _classes(s)
    visible = {CLASS_OF[f] for f in VISIBLE[modality]}
    out = [a for a in [_dominant_aspect(q, s, same_classes, lang)] if a is not None]
    out += [a for c in ("road", "building", "tree") if c in both & visible
            for a in [_cover_aspect(q, s, c, lang)] if a is not None]
    if "road" in both & visible:
        out += _road_aspects(q, s, lang)
    if "building" in both & visible:
        out += _building_aspects(q, s, lang)
    if "tree" in both & visible:
        out.append(_tree_aspect(q, s, lang))
    return out


def differences(aspects: list[Aspect]) -> list[Aspect]:
    """Facts that differ beyond tolerance, most distinctive first, without saying one thing twice."""
    real = sorted((a for a in aspects if a.score > 1), key=lambda a: -a.score)  # stable: ties keep fact order
    keys = {a.key for a in real}
    redundant = set()
    if "dominant" in keys:
        redundant |= {"cover_road", "cover_building", "cover_tree"}
    if "road_count" in keys:
        redundant.add("junctions")  # the road phrase already says how they meet
    if "building_count" in keys:
        redundant.add("building_largest")  # the building phrase already states the largest one
    return [a for a in real if a.key not in redundant]


def _shared_phrase(a: Aspect, q: dict, s: dict, lang: str) -> str | None:
    """What two locations agreeing on this fact both show, without the numbers that differ slightly."""
    if a.key == "dominant":
        qp, sp = dominant_phrase(q, lang, with_share=False), dominant_phrase(s, lang, with_share=False)
        return sp if qp == sp else None
    if a.key == "road_count":
        qp, sp = road_phrase(q, lang, with_names=False), road_phrase(s, lang, with_names=False)
        n = len(s.get("roads") or [])
        return sp if qp == sp else (f"{n} road{'s' if n != 1 else ''}" if lang == "en" else f"{n} 条道路")
    if a.key == "building_count":
        n = int((s.get("buildings") or {}).get("count") or 0)
        if lang == "en":
            return "no buildings" if n == 0 else f"{n} building{'s' if n != 1 else ''}"
        return "没有建筑" if n == 0 else f"{n} 栋建筑"
    if a.key == "trees":
        if a.q == a.s:
            return a.s
        return "a similar density of trees" if lang == "en" else "相近的树木密度"
    return None


SIMILAR = {
    "en": ["Both show {shared}, so the coarse layout is similar.",
           "The coarse layout is alike: both show {shared}."],
    "zh": ["两者都显示{shared}，大致布局相近。", "两者的大致布局相似：都显示{shared}。"],
}
SMALL_DIFFERENCE = {
    "en": ["The only difference the known facts show is small: the {name} is {q} in the {view} against {s} in "
           "the satellite tile.",
           "The known facts differ only slightly: the {name} is {q} in the {view} and {s} in the satellite tile."],
    "zh": ["已知事实之间只有细小的差别：{name}在{view}中为{q}，在卫星影像中为{s}。",
           "已知事实差别很小：{view}的{name}为{q}，卫星影像为{s}。"],
}
UNRELATED = {  # the two places' known facts are about different classes (e.g. roads vs trees)
    "en": "The facts known for the two places cover different features: the {view} shows {q}, and the "
          "satellite tile shows {s}; these do not contradict each other, so they do not settle it.",
    "zh": "两地已知的事实涉及不同的地物：{view}显示{q}，卫星影像显示{s}，二者并不矛盾，无法据此区分。",
}
CLOSE_SIMILAR = {
    "en": ["The verdict therefore rests on finer details of the layout, which do not line up.",
           "So the decision comes down to finer details of the layout, and those do not line up."],
    "zh": ["因此判断依据在于布局中更细微的细节，而这些细节无法对应。", "所以结论取决于布局的细节，而这些细节对不上。"],
}


def _no_clear_difference(shared: list[str], view: str, lang: str, comparable: bool = True) -> str:
    if not comparable:
        if lang == "en":
            return f"{NO_CLEAR_DIFFERENCE['en']}: the facts known for the two places cover different features; " \
                   f"the verdict rests on other details of the layout"
        return f"{NO_CLEAR_DIFFERENCE['zh']}：两地已知的事实涉及不同的地物；判断依据为布局的其他细节"
    if lang == "en":
        what = f" (both show {_join_en(shared)})" if shared else ""
        return f"{NO_CLEAR_DIFFERENCE['en']}: the known facts agree within tolerance{what}; the verdict rests on " \
               f"finer details of the layout"
    what = f"（都显示{'，'.join(shared)}）" if shared else ""
    return f"{NO_CLEAR_DIFFERENCE['zh']}：已知事实在容差范围内一致{what}；判断依据为布局的细节"


def _own_facts(truth: dict, modality: str, lang: str) -> str:
    """The most telling fact a location knows by itself (for pairs whose known facts do not overlap)."""
    for fact in VISIBLE[modality]:
        if known(truth, fact) and _count(truth, fact) > 0:
            return PHRASES[fact](truth, lang)
    return dominant_phrase(truth, lang)


def _evidence(name: str, q: str, s: str, view: str, lang: str) -> str:
    return f"{name}: {q} in the {view} vs {s} in the satellite tile" if lang == "en" else f"{name}：{view}为{q}；卫星影像为{s}"


def no_match_sentences(q: dict, s: dict, modality: str, lang: str, pick) -> tuple[list[str], list[str]]:
    """The body of a non-match: contrasts of real differences, else the honest "similar" fallback."""
    view = VIEW_NAMES[lang][modality]
    aspects = compare(q, s, modality, lang)
    names = ASPECT_NAME[lang]
    real = differences(aspects)[:3]
    if real:
        sentences = [pick(CONTRAST[lang]).format(view=view, q=a.q, s=a.s) for a in real]
        return sentences + [pick(CLOSE_NO_MATCH[lang])], [_evidence(names[a.key], a.q, a.s, view, lang) for a in real]
    if not aspects:  # nothing known on both sides can be compared
        qf, sf = _own_facts(q, modality, lang), _own_facts(s, modality, lang)
        return ([UNRELATED[lang].format(view=view, q=qf, s=sf), pick(CLOSE_SIMILAR[lang])],
                [_no_clear_difference([], view, lang, comparable=False)])
    alike = sorted((a for a in aspects if a.score <= 1), key=lambda a: a.key == "dominant")  # cover type last
    shared = [p for a in alike for p in [_shared_phrase(a, q, s, lang)] if p]
    sep = ", " if lang == "en" else "，"
    sentences = [pick(SIMILAR[lang]).format(shared=_join_en(shared) if lang == "en" else sep.join(shared))] if shared else []
    small = sorted((a for a in aspects if 0 < a.score <= 1 and a.q_short != a.s_short), key=lambda a: -a.score)
    if small:
        a = small[0]
        name = SMALL_NAME[lang].get(a.key, names[a.key])
        sentences.append(pick(SMALL_DIFFERENCE[lang]).format(name=name, view=view, q=a.q_short, s=a.s_short))
        evidence = [_evidence(name + (" (small difference)" if lang == "en" else "（差异较小）"),
                              a.q_short, a.s_short, view, lang)]
    else:
        evidence = [_no_clear_difference(shared, view, lang)]
    return sentences + [pick(CLOSE_SIMILAR[lang])], evidence


def _space_zh(text: str) -> str:
    """One space between Chinese characters and numbers, as in "约 41 米" (the phrases mix both)."""
    text = re.sub(r"([\u4e00-\u9fff])(\d)", r"\1 \2", text)
    return re.sub(r"(\d[%°]?)([\u4e00-\u9fff])", r"\1 \2", text)


def explain(query_truth: dict, satellite_truth: dict, label: str, modality: str, lang: str,
            seed: int, pair_id: str) -> dict:
    """{"verdict", "explanation", "evidence"} for one pair, in `lang`."""
    rng = np.random.default_rng(stable_int(seed, "facts", pair_id))
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    view = VIEW_NAMES[lang][modality]
    sentences, evidence = [], []
    if label == "match":
        present = [f for f in VISIBLE[modality] if known(satellite_truth, f) and _count(satellite_truth, f) > 0]
        rng.shuffle(present)
        chosen = ["dominant", *present[:2]]  # absent features make weak evidence for a match
        sentences.append(pick(OPEN_MATCH[lang]).format(view=view))
        for fact in chosen:
            text = PHRASES[fact](satellite_truth, lang)
            sentences.append(pick(SHARED[lang]).format(view=view, fact=text))
            evidence.append(f"{FACT_LABEL[lang][fact]}: {text}" if lang == "en" else f"{FACT_LABEL[lang][fact]}：{text}")
        sentences.append(pick(CLOSE_MATCH[lang]))
    else:
        sentences.append(pick(OPEN_NO_MATCH[lang]).format(view=view))
        body, evidence = no_match_sentences(query_truth, satellite_truth, modality, lang, pick)
        sentences += body
    joiner = " " if lang == "en" else ""
    explanation = joiner.join(s for s in sentences if s)
    if lang == "zh":
        explanation, evidence = _space_zh(explanation), [_space_zh(e) for e in evidence]
    return {"verdict": label, "explanation": explanation, "evidence": evidence}
