#!/usr/bin/env python3
"""Localize camera frames against the bundle's satellite gallery: standalone, no training code.

Needs numpy, Pillow and one runtime: TensorRT (a built .engine + cuda-python), else ONNX Runtime
(TensorRT / CUDA execution providers where installed, else CPU). faiss is not needed: the search is
an exact inner product in numpy.

    python3 localize.py FRAME.jpg [FRAME2.jpg ...] [--view uav] [--top-k 5] [--gallery DIR] [--json]

Before loading anything it checks every file of the bundle against manifest.json (sha256) and that
the gallery was built by the bundle's model. Any problem is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESAMPLE = Image.Resampling.BICUBIC  # the resize training and evaluation use (gleam_models.data)
REDUCING_GAP = 3.0


class RunnerError(Exception):
    """One line for the user; exit status 2."""


# ----------------------------------------------------------------------------- checks

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise RunnerError(f"{path}: no manifest.json, this is not a GLEAM bundle (pass --bundle DIR)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunnerError(f"{path}: manifest is not valid JSON ({e}); re-copy the bundle") from None


def verify_files(bundle: Path, manifest: dict) -> int:
    """Every listed file present with its recorded sha256; returns how many were checked."""
    for rel, entry in manifest["files"].items():
        path = bundle / rel
        if not path.is_file():
            raise RunnerError(f"{path}: file listed in manifest.json is missing (model/gallery file); re-copy the bundle")
        if sha256(path) != entry["sha256"]:
            raise RunnerError(f"{path}: sha256 does not match manifest.json (file modified or corrupt); re-copy the bundle")
    engines = bundle / "engines" / "engines.sha256"  # written on the device by build_engine.sh
    if engines.is_file():
        for line in engines.read_text().splitlines():
            digest, _, name = line.strip().partition("  ")
            if name and (bundle / "engines" / name).is_file() and sha256(bundle / "engines" / name) != digest:
                raise RunnerError(f"{bundle / 'engines' / name}: engine does not match engines.sha256; rebuild it")
    return len(manifest["files"])


def load_gallery(gallery: Path, manifest: dict) -> tuple[np.ndarray, list[dict], dict]:
    meta_path = gallery / "gallery.json"
    if not meta_path.is_file():
        raise RunnerError(f"{meta_path}: no gallery.json, not a GLEAM gallery")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("model_fingerprint") != manifest["model_fingerprint"]:
        raise RunnerError(f"{gallery}: gallery of another model version (gallery {meta.get('model_fingerprint')}, "
                          f"bundle model {manifest['model_fingerprint']}); rebuild it with this model")
    try:
        emb = np.load(gallery / "embeddings.npy", allow_pickle=False).astype(np.float32, copy=False)
        with open(gallery / "tiles.csv", newline="", encoding="utf-8") as f:
            tiles = list(csv.DictReader(f))
    except (OSError, ValueError) as e:
        raise RunnerError(f"{gallery}: gallery files cannot be read ({e})") from None
    if emb.ndim != 2 or len(emb) != len(tiles) or emb.shape[1] != int(manifest["embed_dim"]):
        raise RunnerError(f"{gallery}: {emb.shape} embeddings for {len(tiles)} tiles, model dim {manifest['embed_dim']}")
    return emb, tiles, meta


# ----------------------------------------------------------------------------- encoders

class OrtEncoder:
    def __init__(self, model: Path, provider: str, cache_dir: Path):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = {"auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
                  "tensorrt": ["TensorrtExecutionProvider"], "cuda": ["CUDAExecutionProvider"],
                  "cpu": ["CPUExecutionProvider"]}[provider]
        chosen = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        options = {"TensorrtExecutionProvider": {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                 "trt_engine_cache_path": str(cache_dir)}}
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), sess_options=opts,
                                            providers=[(p, options.get(p, {})) for p in chosen])
        self.name = f"onnxruntime {self.session.get_providers()[0]} {model.name}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": frames})[0]


class TrtEncoder:
    """A serialized TensorRT engine (built on this device by build_engine.sh), run with cuda-python."""

    def __init__(self, engine_path: Path):
        import tensorrt as trt
        from cuda import cudart

        self.trt, self.cudart = trt, cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RunnerError(f"{engine_path}: TensorRT cannot load this engine (built for another device/version?)")
        self.context = self.engine.create_execution_context()
        self.stream = cudart.cudaStreamCreate()[1]
        self.name = f"tensorrt {trt.__version__} {engine_path.name}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        frames = np.ascontiguousarray(frames)
        self.context.set_input_shape("images", frames.shape)
        out = np.empty(tuple(self.context.get_tensor_shape("embeddings")), dtype=np.float32)
        d_in = cudart.cudaMalloc(frames.nbytes)[1]
        d_out = cudart.cudaMalloc(out.nbytes)[1]
        try:
            cudart.cudaMemcpy(d_in, frames.ctypes.data, frames.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.context.set_tensor_address("images", d_in)
            self.context.set_tensor_address("embeddings", d_out)
            self.context.execute_async_v3(self.stream)
            cudart.cudaStreamSynchronize(self.stream)
            cudart.cudaMemcpy(out.ctypes.data, d_out, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        finally:
            cudart.cudaFree(d_in)
            cudart.cudaFree(d_out)
        return out


def pick_encoder(bundle: Path, profile: dict, precision: str, provider: str, engine: Path | None):
    """A built engine when TensorRT imports, else ONNX Runtime with the best provider present."""
    engine_file = engine or next((bundle / e for k, e in profile.get("engines", {}).items()
                                  if precision in ("auto", k) and (bundle / e).is_file()), None)
    if engine is not None and not engine.is_file():
        raise RunnerError(f"{engine}: engine file not found (build it with build_engine.sh)")
    if engine_file is not None and provider in ("auto", "tensorrt"):
        try:
            return TrtEncoder(engine_file)
        except ImportError:
            if engine is not None:
                raise RunnerError(f"{engine}: tensorrt / cuda-python are not installed, cannot run an engine") from None
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunnerError("no runtime: install onnxruntime (or onnxruntime-gpu), or tensorrt for a built engine") from None
    gpu = any(p in ort.get_available_providers() for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider"))
    if precision == "auto":  # TensorRT EP makes its own fp16 engine from fp32; CUDA runs fp16 ONNX
        precision = "fp16" if gpu and "TensorrtExecutionProvider" not in ort.get_available_providers() \
            else ("fp32" if gpu else profile["cpu_default"])
    rel = profile["models"].get(precision)
    if rel is None:
        raise RunnerError(f"no {precision} model for this view in the bundle (has: {', '.join(profile['models'])})")
    if not (bundle / rel).is_file():
        raise RunnerError(f"{bundle / rel}: model file missing; re-copy the bundle")
    return OrtEncoder(bundle / rel, provider, Path(os.environ.get("GLEAM_TRT_CACHE", bundle / "engines")))


# ----------------------------------------------------------------------------- frames

def read_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] resized exactly as the model saw its training images."""
    try:
        with Image.open(path) as im:
            im.load()
            image = im.convert("RGB")
    except FileNotFoundError:
        raise RunnerError(f"{path}: frame not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise RunnerError(f"{path}: unreadable frame, not a decodable image ({e.__class__.__name__}: {e})") from None
    image = image.resize((size[1], size[0]), RESAMPLE, reducing_gap=REDUCING_GAP)
    return np.asarray(image, dtype=np.uint8)


def search(query: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = gallery @ query
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return top, scores[top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("frames", nargs="+", type=Path, help="camera frames (JPEG, PNG, ...)")
    ap.add_argument("--bundle", type=Path, default=HERE, help="bundle directory (default: this script's)")
    ap.add_argument("--gallery", type=Path, help="gallery directory (default: the bundle's gallery/)")
    ap.add_argument("--view", default="uav", help="what the frames are: uav, street_map, ground, satellite")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8_cpu", "int8_trt", "int8"])
    ap.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"])
    ap.add_argument("--engine", type=Path, help="a TensorRT engine file to use instead of the ONNX models")
    ap.add_argument("--json", action="store_true", help="one JSON object per frame on stdout")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    t0 = time.perf_counter()
    bundle = args.bundle.resolve()
    manifest = load_manifest(bundle)
    n_checked = verify_files(bundle, manifest)  # before anything is loaded
    t_verify = time.perf_counter()
    if args.view not in manifest["profiles"]:
        raise RunnerError(f"--view {args.view}: the bundle has models for {', '.join(manifest['profiles'])}")
    profile = manifest["profiles"][args.view]
    gallery, tiles, _ = load_gallery(args.gallery or bundle / manifest["gallery"], manifest)
    encoder = pick_encoder(bundle, profile, args.precision, args.provider, args.engine)
    t_load = time.perf_counter()
    print(f"bundle {bundle.name}: {n_checked} files verified in {1e3 * (t_verify - t0):.0f} ms; model "
          f"{manifest['model_fingerprint']}; {encoder.name}; gallery {len(tiles)} tiles; "
          f"load {1e3 * (t_load - t_verify):.0f} ms", file=sys.stderr)
    size = tuple(profile["size"])
    failed = 0
    for path in args.frames:
        try:
            t1 = time.perf_counter()
            frame = read_frame(path, size)
            t2 = time.perf_counter()
            emb = encoder(frame[None])[0].astype(np.float32)
            t3 = time.perf_counter()
            top, scores = search(emb, gallery, args.top_k)
            t4 = time.perf_counter()
        except RunnerError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        timing = {"preprocess_ms": 1e3 * (t2 - t1), "encode_ms": 1e3 * (t3 - t2), "search_ms": 1e3 * (t4 - t3)}
        hits = [{"rank": r + 1, "tile_id": tiles[i]["tile_id"], "lat": float(tiles[i]["center_lat"]),
                 "lon": float(tiles[i]["center_lon"]), "similarity": float(s)}
                for r, (i, s) in enumerate(zip(top, scores))]
        if args.json:
            print(json.dumps({"frame": str(path), "top": hits, "latency": timing}))
            continue
        print(f"{path}  ({args.view}, {size[0]}x{size[1]})")
        for h in hits:
            print(f"  #{h['rank']}  lat {h['lat']:.6f}  lon {h['lon']:.6f}  similarity {h['similarity']:.4f}  tile {h['tile_id']}")
        print("  latency ms: " + "  ".join(f"{k[:-3]} {v:.2f}" for k, v in timing.items())
              + f"  total {sum(timing.values()):.2f}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
