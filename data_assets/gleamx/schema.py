"""Record schema of the GLEAM-X dataset and the checks every teacher answer must pass."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_assets.errors import DataError
from data_assets.io import write_text

Verdict = Literal["match", "no_match"]
CJK = re.compile(r"[\u4e00-\u9fff]")


class TeacherAnswer(BaseModel):
    """What a teacher must answer (extra keys are tolerated and dropped)."""

    verdict: Verdict
    explanation: str = Field(min_length=1)
    evidence: list[str] = []


class Revision(BaseModel):
    """Filled in by import_revision_sheet for records a human looked at."""

    reviewer: str | None = None
    notes: str | None = None
    original_label: Verdict
    original_explanation: str
    verdict_flipped: bool
    explanation_edited: bool
    normalised_edit_distance: float


class GleamXRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str  # the pair id
    split: Literal["train", "val", "test", "test_cross"]
    query_path: str  # relative to the base dir the stage ran from
    satellite_path: str
    modality: Literal["uav", "street_map", "panorama", "ground"]
    label: Verdict
    negative_kind: Literal["geo", "visual", "random"] | None
    language: Literal["en", "zh"]
    explanation: str
    evidence: list[str]
    teacher: str
    model: str
    prompt_version: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # when an API teacher answered (replayed from its answer cache); None for the deterministic facts
    # teacher, whose records are then the same bytes on every run (they are a DVC output)
    created_at: str | None = None
    query_location_id: str
    satellite_location_id: str
    revision: Revision | None = None


class AnswerProblem(Exception):
    """An answer that cannot be used; `kind` is bad_json / wrong_schema / contradiction / wrong_language."""

    def __init__(self, kind: str, reason: str):
        self.kind, self.reason = kind, reason
        super().__init__(f"{kind}: {reason}")


def _json_object(text: str) -> dict:
    """The JSON object in a reply, tolerating code fences and chatter around it."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    for candidate in (stripped, stripped[stripped.find("{"): stripped.rfind("}") + 1]):
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise AnswerProblem("bad_json", "the reply is not a JSON object")


def check_answer(text: str, label: str, language: str) -> TeacherAnswer:
    """Parse and check one reply against the known label and language; raises AnswerProblem."""
    obj = _json_object(text)
    try:
        answer = TeacherAnswer.model_validate(obj)
    except ValidationError as e:
        fields = ", ".join(sorted({str(err["loc"][0]) for err in e.errors() if err["loc"]}))
        raise AnswerProblem("wrong_schema", f"fields {fields or '?'} missing or invalid; expected "
                                            '{"verdict": "match"|"no_match", "explanation": str, "evidence": [str]}') from None
    if answer.verdict != label:
        raise AnswerProblem("contradiction", f'verdict "{answer.verdict}" contradicts the known label "{label}"')
    if language == "zh" and not CJK.search(answer.explanation):
        raise AnswerProblem("wrong_language", "the explanation must be written in Chinese")
    if language == "en" and CJK.search(answer.explanation):
        raise AnswerProblem("wrong_language", "the explanation must be written in English")
    return answer


def read_records(path: Path) -> list[GleamXRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "records file not found (run the gleamx stage first)")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(GleamXRecord.model_validate_json(line))
        except ValidationError as e:
            raise DataError(path, f"line {n}: not a GLEAM-X record ({e.errors()[0]['msg']})") from None
    return out


def write_jsonl(path: Path, rows: Iterable[BaseModel | dict]) -> int:
    lines = [r.model_dump_json() if isinstance(r, BaseModel) else json.dumps(r, ensure_ascii=False) for r in rows]
    write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def record_field(record: GleamXRecord | dict, name: str):
    """A field of a record given as a GleamXRecord or as its dict (evaluation code takes both)."""
    return record[name] if isinstance(record, dict) else getattr(record, name)
