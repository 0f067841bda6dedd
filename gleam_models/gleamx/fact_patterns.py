"""The atomic facts of one clause, read with the facts teacher's own vocabularies.

Patterns per language for every fact the teacher states (data_assets.gleamx.facts phrases): dominant
cover and its share, cover shares, road count / orientations / bearings / total length / junctions /
right-angle crossings / names, building count and largest footprint, tree count and density.
`scan` reads a clause; `scan_short` reads a bare value of the "small difference" sentence.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from data_assets.gleamx import facts as F


def alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _num(x: str) -> int:
    return int(x)


EN, ZH = F.ORIENT["en"], F.ORIENT["zh"]
ORIENT_INDEX = {word: i for lang in ("en", "zh") for i, word in enumerate(F.ORIENT[lang])}
COVER_OF = {lang: {text: cls for cls, text in F.COVER[lang].items()} for lang in ("en", "zh")}
COVER_NAME_OF = {lang: {text: cls for cls, text in F.COVER_NAME[lang].items()} for lang in ("en", "zh")}
# A fine-tuned model shortens the teacher's phrases ("mostly buildings" for "mostly buildings and
# rooftops"): a shortened class name still states the fact, so it is checked too.
SHORT_COVER = {"en": {"paved roads": "road", "roads": "road", "buildings": "building", "trees": "tree",
                      "bare ground": "bare"},
               "zh": {"道路": "road", "建筑": "building", "树木": "tree", "裸地": "bare"}}
DOMINANT_OF = {lang: {**SHORT_COVER[lang], **COVER_OF[lang]} for lang in ("en", "zh")}
ZERO_EN = {"roads": "road_count", "buildings": "building_count", "trees": "tree_count", "junctions": "junctions"}
ZERO_ZH = {"道路": "road_count", "建筑": "building_count", "树木": "tree_count", "路口": "junctions"}
PATTERNS = {
    "en": [
        ("dominant", re.compile(rf"mostly ({alternation(DOMINANT_OF['en'])})\b"), lambda m: DOMINANT_OF["en"][m[1]]),
        ("dominant", re.compile(r"mostly ground other than"), lambda m: "other"),
        ("dominant_share", re.compile(r"\(about (\d+)% of the area\)"), lambda m: _num(m[1])),
        ("cover", re.compile(rf"({alternation(COVER_NAME_OF['en'])}) over about (\d+)% of the area"),
         lambda m: (COVER_NAME_OF["en"][m[1]], _num(m[2]))),
        ("zero", re.compile(r"\bno (roads|buildings|trees|junctions)\b"), lambda m: ZERO_EN[m[1]]),
        ("road_count", re.compile(r"\b(\d+) roads?\b"), lambda m: _num(m[1])),
        ("road_orientation", re.compile(rf"running ((?:{alternation(EN)})(?:(?:, | and )(?:{alternation(EN)}))*)"),
         lambda m: frozenset(ORIENT_INDEX[w] for w in re.findall(alternation(EN), m[1]))),
        ("right_angles", re.compile(r"crossing at right angles"), lambda m: True),
        ("junctions", re.compile(r"\b(\d+) junctions?\b"), lambda m: _num(m[1])),
        ("road_names", re.compile(r"\bincluding (.+)$"), lambda m: tuple(m[1].rstrip(".").split(", "))),
        ("road_bearing", re.compile(r"about ((?:\d+°(?:, | and )?)+) from north"),
         lambda m: tuple(map(int, re.findall(r"(\d+)°", m[1])))),
        ("road_length", re.compile(r"roads totalling about (\d+) m\b"), lambda m: _num(m[1])),
        ("building_count", re.compile(r"\b(\d+) buildings?\b"), lambda m: _num(m[1])),
        ("building_largest", re.compile(r"(?:the largest about|largest building of about) (\d+) m²"),
         lambda m: _num(m[1])),
        ("tree_count", re.compile(r"\b(\d+) trees?\b"), lambda m: _num(m[1])),
        ("tree_density", re.compile(r"about (\d+) per hectare"), lambda m: _num(m[1])),
        ("trees_similar", re.compile(r"a similar density of trees"), lambda m: True),
    ],
    "zh": [
        ("dominant", re.compile(rf"以({alternation(DOMINANT_OF['zh'])})为主"), lambda m: DOMINANT_OF["zh"][m[1]]),
        ("dominant", re.compile(r"以[^，。；]+?以外的地表为主"), lambda m: "other"),
        ("dominant_share", re.compile(r"（约占 ?(\d+)%）"), lambda m: _num(m[1])),
        ("cover", re.compile(rf"({alternation(COVER_NAME_OF['zh'])})约占 ?(\d+)% ?的面积"),
         lambda m: (COVER_NAME_OF["zh"][m[1]], _num(m[2]))),
        ("zero", re.compile(r"没有(道路|建筑|树木|路口)"), lambda m: ZERO_ZH[m[1]]),
        ("road_count", re.compile(r"(\d+) ?条"), lambda m: _num(m[1])),
        ("road_orientation", re.compile(rf"(?:{alternation(ZH)})(?:、(?:{alternation(ZH)}))*"),
         lambda m: frozenset(ORIENT_INDEX[w] for w in re.findall(alternation(ZH), m[0]))),
        ("right_angles", re.compile(r"呈直角相交"), lambda m: True),
        ("junctions", re.compile(r"(\d+) ?个路口"), lambda m: _num(m[1])),
        ("road_names", re.compile(r"（包括(.+?)）"), lambda m: tuple(m[1].split("、"))),
        ("road_bearing", re.compile(r"偏离正北 ?((?:\d+°、?)+) ?左右"),
         lambda m: tuple(map(int, re.findall(r"(\d+)°", m[1])))),
        ("road_length", re.compile(r"总长约 ?(\d+) ?米的道路"), lambda m: _num(m[1])),
        ("building_count", re.compile(r"(\d+) ?栋建筑"), lambda m: _num(m[1])),
        ("building_largest", re.compile(r"(?:最大的约|最大建筑约) ?(\d+) ?平方米"), lambda m: _num(m[1])),
        ("tree_count", re.compile(r"(\d+) ?棵树"), lambda m: _num(m[1])),
        ("tree_density", re.compile(r"每公顷约 ?(\d+) ?棵"), lambda m: _num(m[1])),
        ("trees_similar", re.compile(r"相近的树木密度"), lambda m: True),
    ],
}


def scan(clause: str, lang: str) -> list[tuple[str, Any]]:
    """Atomic (key, value) facts stated in one clause, in reading order."""
    found = []
    for key, pattern, value in PATTERNS[lang]:
        found += [(m.start(), key, value(m)) for m in pattern.finditer(clause)]
    out, dominant = [], None
    for _, key, value in sorted(found, key=lambda x: x[0]):
        if key == "dominant":
            dominant = value
        elif key == "dominant_share":  # the share belongs to the dominant class just named
            if dominant is None:
                continue
            key, value = "cover", ("other" if dominant in ("bare", "other") else dominant, value)
        elif key == "zero":
            key, value = value, 0
        out.append((key, value))
    return out


SHORT_KEYS = {"cover_road": "cover", "cover_building": "cover", "cover_tree": "cover", "road_bearing": "road_bearing",
              "road_length": "road_length", "building_largest": "building_largest", "trees": "trees"}


def scan_short(aspect: str, text: str, lang: str) -> list[tuple[str, Any]]:
    """Facts in a bare value of the "small difference" sentence ("about 41 m"), named by its aspect."""
    numbers = [int(x) for x in re.findall(r"(\d+)", text)]
    kind = SHORT_KEYS.get(aspect)
    if kind is None or not numbers:
        return scan(text, lang)
    if kind == "cover":
        return [("cover", (aspect.removeprefix("cover_"), numbers[0]))]
    if kind == "road_bearing":
        return [("road_bearing", tuple(numbers))]
    if kind == "trees":
        return [("tree_count", numbers[0])] + ([("tree_density", numbers[1])] if len(numbers) > 1 else [])
    return [(kind, numbers[0])]
