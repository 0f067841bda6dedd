"""Items 7 and 10: a teacher failing on (nearly) every pair fails the stage with the counts; an API
key echoed back in a 200 answer is never stored (answer cache, records, rejects, reports)."""
from __future__ import annotations

import json

import httpx
import pytest

from data_assets.errors import DataError
from data_assets.gleamx import GleamXDataConfig, generate_gleamx_dataset
from data_assets.gleamx import generate as generate_module
from data_assets.gleamx.teachers import AnswerCache, OpenAITeacher
from test_gleamx_support import canned_answer, make_dataset

KEY_ENV = "GLEAMX_REL_KEY"
KEY = "sk-rel-ECHOED-0123456789abcdef-NEVER-STORE"


def _config(**overrides) -> GleamXDataConfig:
    return GleamXDataConfig(teacher="openai", progress=False, num_shards=1, negative_mix={"visual": 0},
                            openai={"api_key_env": KEY_ENV, "send_images": False, "max_retries": 0,
                                    "max_answer_retries": 0, "requests_per_s": 1000, "concurrency": 1},
                            **overrides)


def _serve(monkeypatch, answer):
    """generate_gleamx_dataset's teacher, talking to `answer(body) -> content` over a mock transport."""
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={"model": body["model"], "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                                         "choices": [{"message": {"content": answer(body)}, "finish_reason": "stop"}]})

    def make_teacher(cfg, cache_dir):
        teacher = OpenAITeacher(cfg.openai, AnswerCache(cache_dir / "answers"),
                                client=httpx.Client(transport=httpx.MockTransport(handler)))
        return teacher

    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(generate_module, "make_teacher", make_teacher)


def test_a_teacher_failing_on_every_pair_fails_the_stage_with_counts(tmp_path, monkeypatch):
    manifest, base = make_dataset(tmp_path, n_locations=6)
    _serve(monkeypatch, lambda body: "Sure! They match, I think.")
    with pytest.raises(DataError, match=r"no usable answer for (\d+) of \1 pairs \(100.0%, above gleamx.max_failed_fraction 25%\).*bad_json"):
        generate_gleamx_dataset(_config(), manifest, base, tmp_path / "out", tmp_path / "cache")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["passed"] is False and report["records"] == 0 and report["rejected"] == report["pairs"] > 0


def test_the_threshold_is_configurable(tmp_path, monkeypatch):
    manifest, base = make_dataset(tmp_path, n_locations=6)
    _serve(monkeypatch, lambda body: "Sure! They match, I think.")
    report = generate_gleamx_dataset(_config(max_failed_fraction=1.0), manifest, base, tmp_path / "out",
                                     tmp_path / "cache")
    assert report["passed"] is True and report["records"] == 0


def test_an_echoed_api_key_is_stored_nowhere(tmp_path, monkeypatch):
    manifest, base = make_dataset(tmp_path, n_locations=6)

    def echo(body):
        answer = json.loads(canned_answer(body))
        answer["explanation"] += f" (request authorised with {KEY})"
        return json.dumps(answer, ensure_ascii=False)

    _serve(monkeypatch, echo)
    report = generate_gleamx_dataset(_config(), manifest, base, tmp_path / "out", tmp_path / "cache")
    assert report["records"] > 0
    files = [p for d in (tmp_path / "out", tmp_path / "cache") for p in d.rglob("*") if p.is_file()]
    assert any("answers" in p.parts for p in files)
    leaked = [str(p) for p in files if KEY.encode() in p.read_bytes() or KEY[7:27].encode() in p.read_bytes()]
    assert not leaked, leaked
