"""Teachers behind one interface: `explain(request) -> Outcome`.

FactsTeacher    - offline, writes from the ground truth (facts.py); the embedded default.
OpenAITeacher   - any OpenAI-compatible chat-completions endpoint, through httpx, with bounded
                  transport retries (429 honouring Retry-After, 5xx, timeouts, dropped connections,
                  unreadable bodies), a shared rate limit, and bounded re-asks when an answer does
                  not parse, has the wrong shape, contradicts the known label or is in the wrong
                  language. Every answer is written to the content-addressed cache the moment it
                  arrives, keyed by the exact conversation, so a resumed run replays it for free.
The API key is read from the environment when the teacher is built, kept only in the request
headers, and scrubbed from every message this module produces.
"""
from __future__ import annotations

import base64
import email.utils
import io
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import httpx

from data_assets.errors import ConfigError, DataError
from data_assets.gleamx import facts
from data_assets.gleamx.config import GleamXDataConfig, OpenAITeacherConfig
from data_assets.gleamx.prompts import RETRY, facts_text, load_prompt, render
from data_assets.gleamx.schema import AnswerProblem, TeacherAnswer, check_answer
from data_assets.io import load_image, read_json, sha256_text, write_json

TRANSPORT_KINDS = ("429", "5xx", "4xx", "timeout", "connection", "bad_json", "wrong_schema")
ANSWER_KINDS = ("bad_json", "wrong_schema", "contradiction", "wrong_language")


@dataclass(frozen=True)
class TeacherRequest:
    """One pair to explain, with everything a teacher may use."""

    pair_id: str
    modality: str
    label: str
    language: str
    query_image: Path
    satellite_image: Path
    query_sha256: str
    satellite_sha256: str
    query_truth: dict | None
    satellite_truth: dict | None


@dataclass
class Outcome:
    """A usable answer, or the reason there is none, plus what it cost."""

    model: str
    prompt_version: str
    answer: TeacherAnswer | None = None
    reject_kind: str | None = None
    reject_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    created_at: str | None = None  # API answers only: the facts teacher has no clock in its records
    requests: int = 0  # HTTP requests sent by this run
    cache_hits: int = 0  # answers replayed from the cache
    spent_usd: float = 0.0  # paid by this run (cache hits are free)
    failures: Counter = field(default_factory=Counter)


class Teacher(Protocol):
    name: str
    model: str

    def explain(self, request: TeacherRequest) -> Outcome: ...


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FactsTeacher:
    name = "facts"
    model = "grounded-facts"

    def __init__(self, seed: int):
        self.seed = seed

    def explain(self, request: TeacherRequest) -> Outcome:
        q = facts.parse_truth(request.query_truth, f"pair {request.pair_id} query location")
        s = facts.parse_truth(request.satellite_truth, f"pair {request.pair_id} satellite location")
        answer = facts.explain(q, s, request.label, request.modality, request.language, self.seed, request.pair_id)
        return Outcome(model=self.model, prompt_version=facts.FACTS_VERSION,
                       answer=TeacherAnswer.model_validate(answer))


class AnswerCache:
    """Content-addressed answers under `root`; each entry is one atomically written JSON file."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(parts: dict) -> str:
        return sha256_text(json.dumps(parts, sort_keys=True, ensure_ascii=False))

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return read_json(path) if path.is_file() else None
        except (OSError, ValueError):
            return None  # unreadable entry: ask again and overwrite it

    def put(self, key: str, value: dict) -> None:
        write_json(self._path(key), value)


class RateLimiter:
    """At most `per_s` request starts per second across all threads."""

    def __init__(self, per_s: float):
        self.interval, self.next_at, self.lock = 1.0 / per_s, 0.0, threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_at)
            self.next_at = start + self.interval
        time.sleep(max(0.0, start - now))


class TransportFailure(Exception):
    def __init__(self, kind: str, reason: str):
        self.kind, self.reason = kind, reason
        super().__init__(f"{kind}: {reason}")


def image_data_url(path: Path, max_side: int) -> str:
    """The image downscaled to max_side, as a base64 JPEG data URL."""
    im = load_image(path)
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _images_unsupported(text: str) -> bool:
    low = text.lower()
    return "image" in low and ("not supported" in low or "unsupported" in low or "does not support" in low)


class OpenAITeacher:
    name = "openai"

    def __init__(self, cfg: OpenAITeacherConfig, cache: AnswerCache | None, client: httpx.Client | None = None):
        self.cfg, self.cache, self.model = cfg, cache, cfg.model
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._secret = ""
        headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            self._secret = os.environ.get(cfg.api_key_env, "")
            if not self._secret:
                raise ConfigError(f"gleamx.openai.api_key_env: environment variable {cfg.api_key_env} is not "
                                  f"set (export it, or set api_key_env: null for endpoints without auth)")
            headers["Authorization"] = f"Bearer {self._secret}"
        self.client = client or httpx.Client(headers=headers, timeout=cfg.timeout_s)
        self.limiter = RateLimiter(cfg.requests_per_s)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:  # never show the headers
        return f"OpenAITeacher(model={self.model!r}, url={self.url!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # -- one pair: a short conversation, re-asking with the reason when an answer is unusable --
    def explain(self, request: TeacherRequest) -> Outcome:
        prompt = load_prompt(request.language, request.modality)
        facts_block = facts_text(request.language, request.query_truth, request.satellite_truth) if self.cfg.send_facts else ""
        system, user = render(prompt, request.language, request.modality, request.label, facts_block)
        messages, key_messages = self._first_messages(system, user, request)
        out = Outcome(model=self.model, prompt_version=prompt.version)
        problem: AnswerProblem | None = None
        for _ in range(self.cfg.max_answer_retries + 1):
            key = AnswerCache.key({"teacher": self.name, "model": self.model, "prompt_version": prompt.version,
                                   "messages": key_messages, "label": request.label, "language": request.language})
            entry = self.cache.get(key) if self.cache else None
            if entry is not None:
                out.cache_hits += 1
            else:
                try:
                    entry = self._complete(messages, out)
                except TransportFailure as e:
                    out.reject_kind, out.reject_reason = f"transport_{e.kind}", self._scrub(e.reason)
                    return out
                if self.cache:
                    self.cache.put(key, entry)
            out.prompt_tokens += entry["prompt_tokens"]
            out.completion_tokens += entry["completion_tokens"]
            out.cost_usd += entry["cost_usd"]
            out.created_at = entry["created_at"]
            try:
                out.answer = check_answer(entry["content"], request.label, request.language)
                return out
            except AnswerProblem as p:
                if p.kind == "bad_json" and entry.get("finish_reason") == "length":
                    p.reason += f" (the reply was cut off at max_tokens={self.cfg.max_tokens})"
                problem = p
                out.failures[p.kind] += 1
            follow_up = RETRY[request.language].format(reason=problem.reason, verdict=request.label)
            for history in (messages, key_messages):
                history += [{"role": "assistant", "content": entry["content"]}, {"role": "user", "content": follow_up}]
        out.reject_kind, out.reject_reason = problem.kind, self._scrub(problem.reason)
        return out

    def _first_messages(self, system: str, user: str, req: TeacherRequest) -> tuple[list, list]:
        """The messages sent, and the same with images replaced by content hashes (for the cache key)."""
        if not self.cfg.send_images:
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            return msgs, [dict(m) for m in msgs]
        sent, keyed = [{"type": "text", "text": user}], [{"type": "text", "text": user}]
        for path, sha in ((req.query_image, req.query_sha256), (req.satellite_image, req.satellite_sha256)):
            sent.append({"type": "image_url", "image_url": {"url": image_data_url(path, self.cfg.max_image_side)}})
            keyed.append({"type": "image", "sha256": sha, "max_side": self.cfg.max_image_side})
        return ([{"role": "system", "content": system}, {"role": "user", "content": sent}],
                [{"role": "system", "content": system}, {"role": "user", "content": keyed}])

    # -- one HTTP exchange, retried on transient failures --
    def _complete(self, messages: list, out: Outcome) -> dict:
        payload = {"model": self.model, "messages": messages, "temperature": self.cfg.temperature,
                   "max_tokens": self.cfg.max_tokens}
        if self.cfg.json_mode:
            payload["response_format"] = {"type": "json_object"}
        for attempt in range(self.cfg.max_retries + 1):
            self.limiter.wait()
            wait_hint = None
            try:
                out.requests += 1
                response = self.client.post(self.url, json=payload, timeout=self.cfg.timeout_s)
                kind, detail, entry = self._read(response)
                if entry is not None:
                    out.spent_usd += entry["cost_usd"]
                    return entry
                wait_hint = retry_after_s(response.headers.get("Retry-After")) if kind == "429" else None
            except httpx.TimeoutException:
                kind, detail = "timeout", f"no answer within {self.cfg.timeout_s} s"
            except httpx.TransportError as e:
                kind, detail = "connection", f"connection failed ({type(e).__name__})"
            out.failures[kind] += 1
            if kind == "4xx" or attempt == self.cfg.max_retries:
                raise TransportFailure(kind, f"{detail} (after {attempt + 1} attempt(s))")
            backoff = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)
            time.sleep(min(self.cfg.max_backoff_s, wait_hint) if wait_hint is not None else backoff)
        raise AssertionError("unreachable")

    def _read(self, response: httpx.Response) -> tuple[str | None, str, dict | None]:
        """(failure kind, detail, cache entry): exactly one of kind / entry is set."""
        code, body = response.status_code, self._scrub(response.text[:300])
        if code in (401, 403):
            raise ConfigError(f"gleamx.openai: {self.url} refused the credentials from ${self.cfg.api_key_env} "
                              f"(HTTP {code})")
        if code >= 400 and _images_unsupported(body):
            raise ConfigError(f"gleamx.openai.send_images: {self.url} does not accept images (HTTP {code}: "
                              f"{body.strip()[:160]}); set gleamx.openai.send_images=false for text-only models")
        if code == 429:
            return "429", "HTTP 429 rate limited", None
        if code >= 500:
            return "5xx", f"HTTP {code}: {body.strip()[:160]}", None
        if code >= 400:
            return "4xx", f"HTTP {code}: {body.strip()[:160]}", None
        try:
            data = response.json()
        except ValueError:
            return "bad_json", "response body is not JSON", None
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
            usage = data.get("usage") or {}
            p_tok, c_tok = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return "wrong_schema", "response is not an OpenAI chat completion", None
        cost = p_tok / 1000 * self.cfg.price_per_1k_prompt + c_tok / 1000 * self.cfg.price_per_1k_completion
        # scrubbed before anything keeps it: a server that echoes the key must not get it into the cache
        return None, "", {"content": self._scrub(content), "finish_reason": choice.get("finish_reason") if choice.get("finish_reason") in (None, "stop", "length") else "other",
                          "prompt_tokens": p_tok, "completion_tokens": c_tok, "cost_usd": cost,
                          "model": self._scrub(str(data.get("model") or self.model)), "created_at": now_iso()}


def make_teacher(cfg: GleamXDataConfig, cache_dir: Path | None = None) -> Teacher:
    """The configured teacher; the OpenAI one caches answers under cache_dir/answers."""
    if cfg.teacher == "facts":
        return FactsTeacher(cfg.seed)
    if cfg.teacher == "openai":
        return OpenAITeacher(cfg.openai, AnswerCache(Path(cache_dir) / "answers") if cache_dir else None)
    raise DataError(None, f"gleamx.teacher: unknown teacher {cfg.teacher!r}")
