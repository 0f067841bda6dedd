"""Versioned teacher prompts: one file per language and modality family under prompts/.

File format: a `version: <id>` line, then a `[system]` block and a `[user]` block. Placeholders use
string.Template syntax ($view, $relation, $verdict, $facts) so the JSON braces in the prompt need
no escaping. Editing a prompt means bumping its version: the version goes into every record and,
with the rendered text, into the answer cache key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

from data_assets.errors import DataError

PROMPT_DIR = Path(__file__).with_name("prompts")
FAMILY = {"uav": "aerial", "street_map": "map", "panorama": "ground", "ground": "ground"}
VIEW_NAMES = {
    "en": {"uav": "drone (UAV) photo", "street_map": "street-map rendering",
           "panorama": "360-degree street-level panorama", "ground": "ground-level photo"},
    "zh": {"uav": "无人机照片", "street_map": "街道地图", "panorama": "街景全景图", "ground": "地面照片"},
}
RELATION = {
    "en": {"match": "the same place", "no_match": "two different places"},
    "zh": {"match": "拍摄的是同一地点", "no_match": "拍摄的是两个不同的地点"},
}
RETRY = {  # appended to the conversation when an answer is unusable; {reason} says why
    "en": "Your previous answer could not be used: {reason}. Reply again with only the JSON object "
          'of the requested shape, with "verdict" set to "{verdict}".',
    "zh": "你上一次的回答无法使用：{reason}。请重新回答，只输出所要求格式的 JSON 对象，"
          '其中 "verdict" 为 "{verdict}"，explanation 用中文书写。',
}


@dataclass(frozen=True)
class Prompt:
    version: str
    system: str
    user: str


@lru_cache(maxsize=None)
def load_prompt(language: str, modality: str, prompt_dir: Path = PROMPT_DIR) -> Prompt:
    path = Path(prompt_dir) / f"{language}_{FAMILY[modality]}.txt"
    if not path.is_file():
        raise DataError(path, f"no prompt for language {language!r} / modality {modality!r}")
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition("\n")
    if not head.startswith("version:") or "[system]" not in rest or "[user]" not in rest:
        raise DataError(path, "prompt file must start with 'version: <id>' and hold [system] and [user] blocks")
    system, _, user = rest.partition("[user]")
    return Prompt(head.split(":", 1)[1].strip(), system.replace("[system]", "", 1).strip(), user.strip())


def facts_text(language: str, query_truth: dict | None, satellite_truth: dict | None) -> str:
    """Ground-truth facts for the prompt, as compact JSON the teacher can cite."""
    if query_truth is None and satellite_truth is None:
        return ""
    intro = ("Known facts (from survey data; cite only what you can also see):" if language == "en"
             else "已知事实（来自测绘数据；只引用图中也能看到的内容）：")
    facts = {"image_1_location": _brief(query_truth), "image_2_location": _brief(satellite_truth)}
    return intro + "\n" + json.dumps(facts, ensure_ascii=False, sort_keys=True)


def _brief(truth: dict | None) -> dict | None:
    if truth is None:
        return None
    keep = ("dominant", "land_cover", "intersections", "buildings", "trees", "extent_m")
    brief = {k: truth.get(k) for k in keep}
    brief["roads"] = [{"name": r.get("name"), "bearing_deg": round(float(r.get("bearing_deg", 0)), 0)}
                      for r in truth.get("roads") or []]
    return brief


def render(prompt: Prompt, language: str, modality: str, label: str, facts: str) -> tuple[str, str]:
    """(system, user) text of the prompt for one pair."""
    values = {"view": VIEW_NAMES[language][modality], "relation": RELATION[language][label],
              "verdict": label, "facts": facts}
    return Template(prompt.system).safe_substitute(values), Template(prompt.user).safe_substitute(values)
