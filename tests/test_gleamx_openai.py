"""GLEAM-X through the OpenAI-compatible teacher: real HTTP on loopback, injected faults, a real
llama.cpp server (xllamacpp + SmolLM2), a real SIGKILL mid-run, and no API key in any output."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_assets.errors import ConfigError
from data_assets.gleamx import GleamXDataConfig, generate_gleamx_dataset
from data_assets.gleamx.teachers import ANSWER_KINDS
from test_gleamx_support import FaultServer, make_dataset

KEY_ENV = "GLEAMX_TEST_KEY"
FAKE_KEY = "sk-gleamx-FAKE-0123456789abcdef-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def openai_cfg(base_url: str, **overrides) -> GleamXDataConfig:
    openai = dict(base_url=base_url, model="gpt-test", api_key_env=KEY_ENV, timeout_s=0.5, max_retries=3,
                  backoff_s=0.01, max_backoff_s=2.0, max_answer_retries=2, concurrency=2, requests_per_s=200,
                  max_image_side=32)
    openai.update(overrides)
    return GleamXDataConfig(teacher="openai", progress=False, negatives_per_positive=1, num_shards=2,
                            openai=openai)


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for s in ("train", "val", "test") for line in (out_dir / f"{s}.jsonl").read_text().splitlines()]


def assert_no_key_anywhere(*dirs: Path) -> int:
    files = [p for d in dirs for p in d.rglob("*") if p.is_file()]
    for p in files:
        assert FAKE_KEY.encode() not in p.read_bytes(), f"API key leaked into {p}"
        assert FAKE_KEY[10:30].encode() not in p.read_bytes(), f"part of the API key leaked into {p}"
    return len(files)


@pytest.fixture()
def faults():
    server = FaultServer(scripts=[
        ["429"], ["500", "500"], ["slow"], ["drop"], ["nonjson"], ["wrongschema"],
        ["badanswer"], ["noexplanation"], ["contradict"] * 3, ["500"] * 4,
    ])
    yield server
    server.close()


def test_faults_are_retried_bounded_and_counted(tmp_path, faults):
    manifest, base = make_dataset(tmp_path, n_locations=6, modalities=("uav",))
    cfg = openai_cfg(faults.base_url)
    out, cache = tmp_path / "out", tmp_path / "cache"
    report = generate_gleamx_dataset(cfg, manifest, base, out, cache)
    assert report["pairs"] == 12
    assert report["records"] + report["rejected"] == 12 == len(records(out)) + report["rejected"]
    assert report["rejects_by_reason"] == {"contradiction": 1, "transport_5xx": 1}
    assert report["failures_by_kind"] == {"429": 1, "5xx": 2 + 4, "4xx": 0, "timeout": 1, "connection": 1,
                                          "bad_json": 2, "wrong_schema": 2, "contradiction": 3, "wrong_language": 0}
    assert report["this_run"]["requests"] == len(faults.log) == 26
    assert all(entry["auth"] == f"Bearer {FAKE_KEY}" for entry in faults.log)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["reason_kind"] for r in rejects} == {"contradiction", "transport_5xx"}
    assert report["tokens"]["prompt"] == 100 * sum(1 for e in faults.log if e["action"] in
                                                  ("ok", "badanswer", "noexplanation", "contradict"))
    assert report["cost_usd"] > 0
    # A re-run pays for nothing already answered: only the transport-rejected pair is asked again.
    n_before = len(faults.log)
    again = generate_gleamx_dataset(cfg, manifest, base, out, cache)
    assert len(faults.log) - n_before == again["this_run"]["requests"] == 1
    assert again["records"] == 11 and again["rejects_by_reason"] == {"contradiction": 1}
    assert again["cache_hits"] >= 11
    assert assert_no_key_anywhere(out, cache) > 20


def test_config_problems_stop_with_a_clear_error(tmp_path, monkeypatch, faults):
    manifest, base = make_dataset(tmp_path, n_locations=3, modalities=("uav",))
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"environment variable {KEY_ENV} is not set") as err:
        generate_gleamx_dataset(openai_cfg(faults.base_url), manifest, base, tmp_path / "o", tmp_path / "c")
    assert FAKE_KEY not in str(err.value)


RUN_SCRIPT = """
import sys
from pathlib import Path
from data_assets.gleamx import GleamXDataConfig, generate_gleamx_dataset
cfg = GleamXDataConfig.model_validate_json(Path(sys.argv[1]).read_text())
generate_gleamx_dataset(cfg, *map(Path, sys.argv[2:6]))
"""


def test_resume_after_sigkill_pays_for_nothing_twice(tmp_path):
    manifest, base = make_dataset(tmp_path, n_locations=6, modalities=("uav", "street_map"))
    n_pairs = 24
    # The uninterrupted reference run.
    ref_server = FaultServer()
    try:
        cfg = openai_cfg(ref_server.base_url, concurrency=1, timeout_s=20)
        generate_gleamx_dataset(cfg, manifest, base, tmp_path / "ref", tmp_path / "ref-cache")
    finally:
        ref_server.close()
    # The interrupted run: the server answers 7 requests, holds the 8th, and the process is killed.
    server = FaultServer()
    server.gate_after = 7
    try:
        cfg = openai_cfg(server.base_url, concurrency=1, timeout_s=20)
        (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
        (tmp_path / "run.py").write_text(RUN_SCRIPT)
        out, cache = tmp_path / "out", tmp_path / "cache"
        proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "cfg.json"), str(manifest),
                                 str(base), str(out), str(cache)], env={**os.environ, KEY_ENV: FAKE_KEY},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while not any(e["action"] == "held" for e in list(server.log)):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached the held request"
            time.sleep(0.05)
        assert len(list(cache.rglob("*.json"))) == 7  # every delivered answer is already on disk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "train.jsonl").exists()
        server.gate_after = None
        server.gate.set()  # the held request is dropped unanswered
        report = generate_gleamx_dataset(cfg, manifest, base, out, cache)
    finally:
        server.close()
    assert report["records"] == n_pairs and report["this_run"]["cache_hits"] == 7
    assert report["this_run"]["requests"] == n_pairs - 7
    assert sum(server.answered.values()) == n_pairs and set(server.answered.values()) == {1}  # nothing twice
    strip = lambda rows: [{k: v for k, v in r.items() if k != "created_at"} for r in rows]  # noqa: E731
    assert strip(records(out)) == strip(records(tmp_path / "ref"))
    assert assert_no_key_anywhere(out, cache) > n_pairs


# -- a real OpenAI-compatible server: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct ---------

@pytest.fixture(scope="session")
def llama_url():
    xllamacpp = pytest.importorskip("xllamacpp")
    from data_assets.registry_assets import asset_path

    params = xllamacpp.CommonParams()
    params.model.path = str(asset_path("smollm2_gguf"))
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = 1  # the test machine's 2 cores are shared: more threads spin, not speed up
    params.cpuparams_batch.n_threads = 1
    params.port = 0  # any free port
    server = xllamacpp.Server(params)
    url = server.listening_address
    assert url.startswith("http://127.0.0.1:")
    yield url + "/v1"
    del server


def test_real_llama_server_through_fault_proxy(tmp_path, llama_url):
    manifest, base = make_dataset(tmp_path, n_locations=3, modalities=("uav",))  # test: 1 location, train: 2
    proxy = FaultServer(scripts=[["429", "500"]], upstream=llama_url)
    try:
        cfg = openai_cfg(proxy.base_url, api_key_env=None, send_images=False, send_facts=False, max_tokens=48,
                         max_answer_retries=1, max_retries=2, timeout_s=300, concurrency=1)
        # 3 pairs: the server is slow here; a 135M model's answers are often rejected, which is fine here
        cfg = cfg.model_copy(update={"max_pairs_per_modality_per_split": 1, "max_failed_fraction": 1.0})
        out, cache = tmp_path / "out", tmp_path / "cache"
        report = generate_gleamx_dataset(cfg, manifest, base, out, cache)
        pairs, failures = report["pairs"], report["failures_by_kind"]
        assert pairs == 3 and report["records"] + report["rejected"] == pairs
        assert failures["429"] == 1 and failures["5xx"] == 1
        # every answer-level problem cost one more request, except the last one of a rejected pair
        answer_problems = sum(failures[k] for k in ANSWER_KINDS)
        rejected_on_answers = sum(n for k, n in report["rejects_by_reason"].items() if k in ANSWER_KINDS)
        assert report["this_run"]["requests"] == pairs + answer_problems - rejected_on_answers + 2
        rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
        assert all(r["reason"] and r["prompt_tokens"] > 0 for r in rejects)
        assert sum(report["rejects_by_reason"].values()) == report["rejected"]
        assert set(report["rejects_by_reason"]) <= set(ANSWER_KINDS)
        assert report["tokens"]["prompt"] > 100 * pairs and report["tokens"]["completion"] > 0  # real usage counts
        # a re-run replays every answer from the cache and asks the server nothing
        n = len(proxy.log)
        again = generate_gleamx_dataset(cfg, manifest, base, out, tmp_path / "cache")
        assert len(proxy.log) == n and again["this_run"]["requests"] == 0
        assert again["records"] == report["records"]
    finally:
        proxy.close()


def test_real_llama_server_refuses_images_clearly(tmp_path, llama_url):
    manifest, base = make_dataset(tmp_path, n_locations=2, modalities=("uav",), test_every=100)
    cfg = openai_cfg(llama_url, api_key_env=None, send_images=True, max_tokens=16, timeout_s=120, concurrency=1)
    with pytest.raises(ConfigError, match="send_images"):
        generate_gleamx_dataset(cfg, manifest, base, tmp_path / "out", tmp_path / "cache")
