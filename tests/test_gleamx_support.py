"""Shared helpers for the GLEAM-X tests: a tiny manifest with real images and hand-written ground
truth, and a fault-injecting OpenAI-compatible server on loopback (no tests of its own)."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from data_assets.io import sha256_file
from data_assets.manifest import write_manifest


def truth(region: str, dominant: str, roads: list[tuple[str | None, float]], junctions: int, buildings: int,
          trees: int) -> dict:
    """A ground-truth object in the manifest's schema, every key present."""
    cover = {"road": 0.1, "building": 0.1, "tree": 0.1, "other": 0.1}
    cover["other" if dominant == "bare" else dominant] = 0.7
    return {
        "region": region, "gsd_m": 0.5, "extent_m": [128.0, 128.0], "land_cover": cover,
        "roads": [{"name": n, "bearing_deg": b, "length_m": 120.0} for n, b in roads],
        "intersections": junctions,
        "buildings": {"count": buildings, "mean_area_m2": 150.0 if buildings else None,
                      "largest_area_m2": 420.0 if buildings else None},
        "trees": {"count": trees, "per_hectare": round(trees / 1.6384, 1)},
        "dominant": dominant,
    }


TRUTHS = [  # hand-written, deliberately different from one another
    truth("las_vegas", "road", [("S Durango Dr", 0.0), ("W Sahara Ave", 90.0)], 1, 3, 0),
    truth("las_vegas", "building", [("W Sahara Ave", 88.0)], 0, 14, 2),
    truth("atlanta", "building", [], 0, 9, 5),
    truth("yellowstone", "tree", [], 0, 0, 57),
    truth("osbs", "tree", [(None, 45.0)], 0, 0, 31),
    truth("soap", "bare", [], 0, 0, 4),
    truth("atlanta", "road", [(None, 10.0), (None, 60.0), (None, 130.0)], 2, 6, 12),
    {  # as the embedded builder writes it: only roads annotated, the rest unknown (null), not absent
        "region": "las_vegas", "annotated": ["road"], "gsd_m": 0.3, "extent_m": [77.0, 77.0],
        "land_cover": {"road": 0.08, "building": None, "tree": None, "other": 0.92},
        "roads": [{"name": "S Durango Dr", "bearing_deg": 2.0, "length_m": 77.0}], "intersections": 0,
        "buildings": {"count": None, "mean_area_m2": None, "largest_area_m2": None},
        "trees": {"count": None, "per_hectare": None}, "dominant": "other",
    },
]


def make_dataset(root: Path, n_locations: int = 12, modalities=("uav", "street_map"), with_latlon: bool = True,
                 test_every: int = 3) -> tuple[Path, Path]:
    """Images + manifest under root; returns (manifest_path, base_dir). Every 3rd location is test."""
    ds = root / "ds"
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_locations):
        loc = f"loc{i:02d}"
        split = "test" if i % test_every == 0 else "train"
        sat = ds / "satellite" / f"{loc}.png"
        sat.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=3)
        Image.fromarray((base + rng.integers(0, 40, size=(48, 48, 3))).clip(0, 255).astype(np.uint8)).save(sat)
        for m in modalities:
            q = ds / m / f"{loc}.png"
            q.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size=(40, 56, 3), dtype=np.uint8)).save(q)
            rows.append({
                "pair_id": hashlib.sha256(f"{loc}|{m}".encode()).hexdigest()[:24], "kind": "pair", "source": "toy",
                "dataset_root": "ds", "split": split, "modality": m, "location_id": f"toy/{loc}",
                "query_path": f"{m}/{loc}.png", "satellite_path": f"satellite/{loc}.png",
                "query_sha256": sha256_file(q), "satellite_sha256": sha256_file(sat),
                "lat": 36.0 + 0.001 * i if with_latlon else None, "lon": -115.0 if with_latlon else None,
                "semi_positive_ids": [], "derived": m != "uav", "query_meta": "{}",
                "ground_truth": json.dumps(TRUTHS[i % len(TRUTHS)]),
            })
    manifest = root / "manifest.parquet"
    write_manifest(pd.DataFrame(rows), manifest)
    return manifest, root


# -- an OpenAI-compatible server on loopback that injects faults --------------------------------

def conversation_key(body: dict) -> str:
    """Identifies a pair's conversation across retries: its first user message (text + images)."""
    first_user = next(m for m in body["messages"] if m["role"] == "user")
    return hashlib.sha256(json.dumps(first_user["content"], sort_keys=True).encode()).hexdigest()


def asked_label(body: dict) -> str:
    """The label the prompt asks to explain (the JSON shape line names it)."""
    text = json.dumps(body["messages"][1]["content"], ensure_ascii=False).replace('\\"', '"')
    return "no_match" if '"verdict": "no_match"' in text else "match"


def canned_answer(body: dict, flip: bool = False) -> str:
    label = asked_label(body)
    verdict = {"match": "no_match", "no_match": "match"}[label] if flip else label
    zh = "图 1" in json.dumps(body["messages"][1]["content"], ensure_ascii=False)
    explanation = ("两张图像的道路布局一致。" if label == "match" else "道路布局不同。") if zh else \
        ("The road layouts line up." if label == "match" else "The road layouts differ.")
    return json.dumps({"verdict": verdict, "explanation": explanation, "evidence": ["roads"]},
                      ensure_ascii=False)


class FaultServer:
    """Answers /v1/chat/completions per a script of actions per conversation, then "ok".

    Actions: ok, 429, 500, slow, drop, nonjson, wrongschema (not an OpenAI body), badanswer (reply not
    JSON), noexplanation (reply JSON without explanation), contradict. "ok" forwards to `upstream` when
    one is set, else answers with canned OpenAI-shaped JSON (the fake at the paid-API boundary).
    """

    def __init__(self, scripts: list[list[str]] | None = None, slow_s: float = 1.0, upstream: str | None = None):
        self.scripts, self.slow_s, self.upstream = list(scripts or []), slow_s, upstream
        self.lock = threading.Lock()
        self.assigned: dict[str, list[str]] = {}
        self.attempts: dict[str, int] = {}
        self.log: list[dict] = []  # one entry per request: conversation, action, auth header
        self.answered: dict[str, int] = {}  # body sha -> times a valid completion was delivered
        self.gate_after: int | None = None  # block requests once this many were answered
        self.gate = threading.Event()
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self.server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def total_answered(self) -> int:
        with self.lock:
            return sum(self.answered.values())

    def _action(self, body: dict) -> str:
        conv = conversation_key(body)
        with self.lock:
            if conv not in self.assigned:
                self.assigned[conv] = self.scripts.pop(0) if self.scripts else []
            n = self.attempts.get(conv, 0)
            self.attempts[conv] = n + 1
            script = self.assigned[conv]
            return script[n] if n < len(script) else "ok"

    def _handler(self):
        fs = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                body_sha = hashlib.sha256(raw).hexdigest()
                if fs.gate_after is not None and fs.total_answered() >= fs.gate_after:
                    with fs.lock:
                        fs.log.append({"action": "held", "auth": self.headers.get("Authorization")})
                    fs.gate.wait(30)
                    self.close_connection = True  # never answered: nothing was paid for
                    return
                action = fs._action(body)
                with fs.lock:
                    fs.log.append({"conv": conversation_key(body), "action": action,
                                   "auth": self.headers.get("Authorization")})
                if action == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "1"})
                if action == "500":
                    return self._send(500, b'{"error": "upstream exploded"}')
                if action == "drop":
                    self.close_connection = True
                    return
                if action == "nonjson":
                    return self._send(200, b"<html>bad gateway</html>")
                if action == "wrongschema":
                    return self._send(200, b'{"result": "no choices here"}')
                if action == "slow":
                    time.sleep(fs.slow_s)
                if action == "ok" and fs.upstream:
                    import httpx
                    r = httpx.post(fs.upstream + "/chat/completions", content=raw,
                                   headers={"Content-Type": "application/json"}, timeout=120)
                    payload = r.content
                    if r.status_code != 200:
                        return self._send(r.status_code, payload)
                else:
                    content = {"ok": canned_answer(body), "slow": canned_answer(body),
                               "badanswer": "Sure! The images match, I think.",
                               "noexplanation": json.dumps({"verdict": "match"}),
                               "contradict": canned_answer(body, flip=True)}[action]
                    payload = json.dumps({
                        "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }).encode()
                try:
                    self._send(200, payload)
                except OSError:  # the client gave up (timeout): nothing delivered
                    return
                if action != "slow":
                    with fs.lock:
                        fs.answered[body_sha] = fs.answered.get(body_sha, 0) + 1

        return Handler
