"""The facts teacher's non-match explanations cite only facts that really differ between the two places.

Hand-made pairs (identical, similar, clearly different, different annotated classes) pin the rules; a
run over the real embedded dataset checks that no evidence line ever states one value on both sides
as if it were a difference. The tolerances are re-implemented here from the ground truth (`beyond`),
independently of facts.py, so a wrong score there fails here.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_assets.gleamx import GleamXDataConfig, facts, generate_gleamx_dataset
from data_assets.gleamx.prompts import VIEW_NAMES

LANGS = ("en", "zh")
CJK_DIGIT = re.compile(r"[\u4e00-\u9fff]\d|\d[\u4e00-\u9fff]")  # "显示的是1 条": a missing space
NAME_TO_KEY = {lang: {name: key for key, name in facts.ASPECT_NAME[lang].items()} | {
    name: key for key, name in facts.SMALL_NAME[lang].items()} for lang in LANGS}
SMALL = {"en": " (small difference)", "zh": "（差异较小）"}


def gt(region: str, annotated: list[str], *, roads=(), junctions=0, cover=None, buildings=None, largest=None,
       trees=None, per_ha=None, dominant="other") -> dict:
    """A ground truth as the embedded builder writes it: unannotated classes are null."""
    cover = {c: (cover or {}).get(c, 0.0) if c in annotated else None for c in ("road", "building", "tree")}
    cover["other"] = round(1 - sum(v for v in cover.values() if v is not None), 4)
    return {
        "region": region, "annotated": annotated, "gsd_m": 0.25, "extent_m": [64.0, 64.0], "land_cover": cover,
        "roads": [{"name": None, "bearing_deg": b, "length_m": m} for b, m in roads] if "road" in annotated else [],
        "intersections": junctions if "road" in annotated else None,
        "buildings": ({"count": buildings, "mean_area_m2": largest, "largest_area_m2": largest}
                      if "building" in annotated else {"count": None, "mean_area_m2": None, "largest_area_m2": None}),
        "trees": ({"count": trees, "per_hectare": per_ha} if "tree" in annotated else {"count": None, "per_hectare": None}),
        "dominant": dominant,
    }


# --- an independent reading of the tolerances --------------------------------------------------------

def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if max(abs(a), abs(b)) else 0.0


def _angle(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def beyond(q: dict, s: dict, key: str) -> bool:
    """Whether this fact differs beyond the brief's tolerance between the two locations."""
    lq, ls = q["land_cover"], s["land_cover"]
    if key == "dominant":
        dq, ds = q["dominant"], s["dominant"]
        gaps = [abs(lq[c] - ls[c]) for c in {dq, ds} if lq.get(c) is not None and ls.get(c) is not None]
        return dq != ds and (max(gaps) > 0.10 if gaps else "other" not in (dq, ds))
    if key.startswith("cover_"):
        return abs(lq[key[6:]] - ls[key[6:]]) > 0.10
    if key == "road_count":
        return len(q["roads"]) != len(s["roads"])
    if key == "road_bearing":
        qb, sb = [r["bearing_deg"] for r in q["roads"]], [r["bearing_deg"] for r in s["roads"]]
        return min(max(_angle(a, b) for a, b in zip(qb, p)) for p in itertools.permutations(sb)) > 20
    if key == "road_length":
        return _rel(sum(r["length_m"] for r in q["roads"]), sum(r["length_m"] for r in s["roads"])) > 0.30
    if key == "junctions":
        return q["intersections"] != s["intersections"]
    if key == "building_count":
        return q["buildings"]["count"] != s["buildings"]["count"]
    if key == "building_largest":
        return _rel(q["buildings"]["largest_area_m2"], s["buildings"]["largest_area_m2"]) > 0.30
    if key == "trees":
        nq, ns = q["trees"]["count"], s["trees"]["count"]
        return (nq == 0) != (ns == 0) or _rel(q["trees"]["per_hectare"], s["trees"]["per_hectare"]) > 0.25
    raise AssertionError(f"unknown fact {key}")


def comparable_keys(q: dict, s: dict, modality: str) -> list[str]:
    """Facts both locations know and the view can show (what a difference could be cited from)."""
    both = set(q["annotated"]) & set(s["annotated"])
    visible = {facts.CLASS_OF[f] for f in facts.VISIBLE[modality]} & both
    keys = ["dominant"] if set(q["annotated"]) == set(s["annotated"]) or "other" not in (q["dominant"], s["dominant"]) else []
    keys += [f"cover_{c}" for c in ("road", "building", "tree") if c in visible]
    if "road" in visible:
        keys += ["road_count", "junctions"]
        keys += ["road_length"] if q["roads"] and s["roads"] else []
        keys += ["road_bearing"] if q["roads"] and len(q["roads"]) == len(s["roads"]) else []
    if "building" in visible:
        keys += ["building_count"] + (["building_largest"] if q["buildings"]["largest_area_m2"]
                                      and s["buildings"]["largest_area_m2"] else [])
    if "tree" in visible:
        keys.append("trees")
    return keys


def parse_evidence(line: str, view: str, lang: str) -> tuple[str, bool, str, str]:
    """(fact key, small difference?, query value, satellite value) of one contrast line."""
    if lang == "en":
        m = re.fullmatch(rf"(.+?): (.+) in the {re.escape(view)} vs (.+) in the satellite tile", line)
    else:
        m = re.fullmatch(rf"(.+?)：{re.escape(view)}为(.+)；卫星影像为(.+)", line)
    assert m, f"evidence line not in the contrast shape: {line}"
    name, q, s = m.groups()
    small = name.endswith(SMALL[lang])
    return NAME_TO_KEY[lang][name.removesuffix(SMALL[lang])], small, q, s


def check_no_match(answer: dict, q: dict, s: dict, modality: str, lang: str) -> list[str]:
    """Assert the no_match answer cites only real differences (or the explicit fallback); its fact keys."""
    view = VIEW_NAMES[lang][modality]
    evidence, text = answer["evidence"], answer["explanation"]
    assert evidence, text
    assert not CJK_DIGIT.search(text) and not any(CJK_DIGIT.search(e) for e in evidence), text
    keys = comparable_keys(q, s, modality)
    real = [k for k in keys if beyond(q, s, k)]
    if evidence[0].startswith(facts.NO_CLEAR_DIFFERENCE[lang]):
        assert len(evidence) == 1 and not real, (real, evidence)
        return []
    cited = []
    for line in evidence:
        key, small, qv, sv = parse_evidence(line, view, lang)
        assert qv != sv, f"same value on both sides cited as a difference: {line}"
        assert qv in text and sv in text, (line, text)  # the sentence says what the evidence says
        assert key in keys, (key, keys)
        if small:  # the fallback's finest difference: only when nothing differs beyond tolerance
            assert not real and not beyond(q, s, key) and len(evidence) == 1, (real, line)
        else:
            assert beyond(q, s, key), f"{key} cited but within tolerance: {line}"
        cited.append(key)
    return cited


def explain_all(q: dict, s: dict, modality: str, label: str = "no_match", seeds=range(6)):
    for lang, seed in itertools.product(LANGS, seeds):
        yield lang, facts.explain(q, s, label, modality, lang, seed, f"pair-{seed}")


# --- hand-made pairs -------------------------------------------------------------------------------

ROAD_A = gt("las_vegas", ["road"], roads=[(179.9, 64.1)], cover={"road": 0.0633})


@pytest.mark.parametrize("modality", ["uav", "street_map", "ground"])
def test_identical_facts_fall_back_to_an_honest_similar(modality):
    for lang, ans in explain_all(ROAD_A, dict(ROAD_A), modality):
        assert check_no_match(ans, ROAD_A, ROAD_A, modality, lang) == []
        assert ans["evidence"][0].startswith(facts.NO_CLEAR_DIFFERENCE[lang])
        shared = "1 road running north-south" if lang == "en" else "1 条南北向的道路"
        assert shared in ans["explanation"] and shared in ans["evidence"][0]
        # no contrast closer claims the layouts differ
        for closer in facts.CLOSE_NO_MATCH[lang]:
            assert not closer or closer not in ans["explanation"]
        assert ("finer details" in ans["explanation"]) if lang == "en" else ("细节" in ans["explanation"])


def test_similar_facts_name_only_the_finest_difference():
    # same single road, 8 degrees apart (< 20), 41 m vs 50 m (18% < 30%), road cover 6% vs 8% (< 10 pts)
    q = gt("las_vegas", ["road"], roads=[(10.0, 41.0)], cover={"road": 0.06})
    s = gt("las_vegas", ["road"], roads=[(18.0, 50.0)], cover={"road": 0.08})
    for lang, ans in explain_all(q, s, "uav"):
        assert check_no_match(ans, q, s, "uav", lang) == ["road_length"]  # 0.6 of its tolerance: the largest
        assert ans["evidence"] == [("total road length (small difference): about 41 m in the drone (UAV) photo vs "
                                    "about 50 m in the satellite tile") if lang == "en" else
                                   "道路总长（差异较小）：无人机照片为 41 米左右；卫星影像为 50 米左右"]
    # 18 vs 22 trees (density 18% apart, inside the 25% tolerance) on tree-dominated tiles
    q = gt("yellowstone", ["tree"], trees=18, per_ha=176.0, cover={"tree": 0.30}, dominant="tree")
    s = gt("yellowstone", ["tree"], trees=22, per_ha=215.1, cover={"tree": 0.33}, dominant="tree")
    for lang, ans in explain_all(q, s, "ground"):
        assert check_no_match(ans, q, s, "ground", lang) == ["trees"]
        assert ("tree count" in ans["evidence"][0]) if lang == "en" else ("树木数量" in ans["evidence"][0])


def test_a_dominance_flip_inside_tolerance_is_no_difference():
    # roads 16% vs 14%: "dominant" flips across its 15% threshold, but the cover barely differs
    q = gt("las_vegas", ["road"], roads=[(90.0, 60.0)], cover={"road": 0.16}, dominant="road")
    s = gt("las_vegas", ["road"], roads=[(90.0, 60.0)], cover={"road": 0.14}, dominant="other")
    for lang, ans in explain_all(q, s, "panorama"):
        assert check_no_match(ans, q, s, "panorama", lang) == ["cover_road"]


def test_clearly_different_facts_are_cited_most_distinctive_first():
    q = gt("las_vegas", ["road"], roads=[(0.0, 128.0), (90.0, 128.0)], junctions=1, cover={"road": 0.30},
           dominant="road")
    s = gt("las_vegas", ["road"], roads=[(45.0, 40.0)], junctions=0, cover={"road": 0.05})
    for lang, ans in explain_all(q, s, "street_map"):
        cited = check_no_match(ans, q, s, "street_map", lang)
        # dominant cover (25 points, 2.5x its tolerance), then road count (2 vs 1), then length (256 vs 40 m);
        # junctions go without saying once the road counts differ, the cover share once dominance is cited
        assert cited == ["dominant", "road_count", "road_length"], cited
    b1 = gt("atlanta", ["building"], buildings=3, largest=420.0, cover={"building": 0.20}, dominant="building")
    b2 = gt("atlanta", ["building"], buildings=3, largest=150.0, cover={"building": 0.17}, dominant="building")
    for lang, ans in explain_all(b1, b2, "uav"):
        assert check_no_match(ans, b1, b2, "uav", lang) == ["building_largest"]
        assert ("about 420 m²" in ans["explanation"]) if lang == "en" else ("最大建筑约 420 平方米" in ans["explanation"])
    # a bearing change beyond 20 degrees with everything else equal
    r1 = gt("las_vegas", ["road"], roads=[(5.0, 64.0)], cover={"road": 0.06})
    r2 = gt("las_vegas", ["road"], roads=[(60.0, 64.0)], cover={"road": 0.06})
    for lang, ans in explain_all(r1, r2, "ground"):
        assert check_no_match(ans, r1, r2, "ground", lang) == ["road_bearing"]


def test_unrelated_classes_are_not_passed_off_as_differences():
    roads = gt("las_vegas", ["road"], roads=[(0.0, 64.0), (90.0, 64.0)], junctions=1, cover={"road": 0.1})
    trees = gt("yellowstone", ["tree"], trees=24, per_ha=234.0, cover={"tree": 0.1})
    for lang, ans in explain_all(roads, trees, "uav"):
        assert check_no_match(ans, roads, trees, "uav", lang) == []
        text = ans["explanation"]
        assert ("24 trees" in text and "2 roads" in text) if lang == "en" else ("24 棵树" in text and "2 条" in text)
        assert not any(p in text for p in ("no trees", "no roads", "没有树木", "没有道路")), text


def test_match_still_cites_shared_facts_and_zh_spacing_is_consistent():
    for lang, ans in explain_all(ROAD_A, ROAD_A, "ground", label="match"):
        road = "roads: 1 road running north-south" if lang == "en" else "道路：1 条南北向的道路"
        assert road in ans["evidence"] and ans["verdict"] == "match"
        assert not CJK_DIGIT.search(ans["explanation"]), ans["explanation"]


def test_deterministic_for_a_seed_and_versioned():
    q = gt("las_vegas", ["road"], roads=[(10.0, 41.0)], cover={"road": 0.06})
    s = gt("las_vegas", ["road"], roads=[(70.0, 90.0)], cover={"road": 0.20})
    a = [facts.explain(q, s, "no_match", "uav", lang, 3, "p") for lang in LANGS]
    assert a == [facts.explain(q, s, "no_match", "uav", lang, 3, "p") for lang in LANGS]
    assert facts.FACTS_VERSION == "facts-templates-2"


# --- the real embedded dataset ---------------------------------------------------------------------

def thumbnail_embed(paths: list[Path], view: str) -> np.ndarray:
    """A real (if crude) visual embedding: 16x16 grey thumbnails, centred and L2-normalised."""
    rows = [np.asarray(Image.open(p).convert("L").resize((16, 16)), dtype=np.float32).ravel() for p in paths]
    x = np.stack(rows)
    x -= x.mean(axis=1, keepdims=True)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)).astype(np.float32)


@pytest.fixture(scope="module")
def real_run(embedded_dir, tmp_path_factory):
    from data_assets.ingest import IngestConfig, SourceConfig, ingest

    root = tmp_path_factory.mktemp("gx-real")
    manifest = root / "manifest.parquet"
    ingest(IngestConfig(sources=[SourceConfig(adapter="manifest", name="embedded", root=str(embedded_dir))]),
           manifest, base_dir=root, cache_dir=root / "ingest-cache")
    cfg = GleamXDataConfig(progress=False, negatives_per_positive=2, seed=0)
    report = generate_gleamx_dataset(cfg, manifest, root, root / "out", root / "cache", embed_fn=thumbnail_embed)
    import pandas as pd
    pairs = pd.read_parquet(root / "out" / "pairs.parquet").set_index("pair_id")
    records = [json.loads(line) for split in ("train", "val", "test")
               for line in (root / "out" / f"{split}.jsonl").read_text().splitlines()]
    return report, pairs, records


def test_real_no_match_evidence_never_states_one_value_as_a_difference(real_run):
    report, pairs, records = real_run
    assert report["rejected"] == 0 and report["visual_negatives"] == "real"
    seen = {"real": 0, "small": 0, "fallback": 0}
    kinds = set()
    for rec in records:
        assert rec["prompt_version"] == facts.FACTS_VERSION
        if rec["label"] != "no_match":
            continue
        kinds.add(rec["negative_kind"])
        pair = pairs.loc[rec["id"]]
        q, s = json.loads(pair["query_truth"]), json.loads(pair["satellite_truth"])
        answer = {"explanation": rec["explanation"], "evidence": rec["evidence"]}
        cited = check_no_match(answer, q, s, rec["modality"], rec["language"])
        small = any(SMALL[rec["language"]] in e for e in rec["evidence"])
        seen["fallback" if not cited else "small" if small else "real"] += 1
    assert kinds == {"geo", "visual", "random"}
    assert all(seen.values()), seen  # the real data exercises every branch
