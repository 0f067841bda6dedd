"""End-to-end localize latency: encode one frame + search galleries of 10k / 100k / 1M tiles.

Exact search (IndexFlatIP) against approximate HNSW and IVF, each tuned over its search parameter
(efSearch / nprobe) and scored by top-1 agreement with exact search. Embeddings are synthetic at the
encoder's real dimension, two kinds:
- random: i.i.d. unit vectors, queries too. The worst case for approximate search: every
  similarity is ~0 +- 1/sqrt(D), so the exact top-1 wins by a hair and is easy to miss.
- real (with --fit and --real-queries): a real gallery searched with real frames' embeddings.
- clustered: a mixture of Gaussians on the sphere (tiles of one area resemble each other), fitted
  to real gallery embeddings when --fit gallery/embeddings.npy is given (their mean and principal
  components), queries = a gallery vector plus noise (a frame near its tile), closer to real use.
Encode latency: torch eager (and ONNX Runtime with --onnx MODEL.onnx), batch 1, at the uav size.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gallery_search.py --sizes 10000 100000 --out reports/gallery_search.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gallery_search.py --sizes 1000000 --kinds flat ivf
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from data_assets.io import write_json

CHUNK = 100_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Synthetic:
    """Deterministic chunks of a synthetic gallery (regenerated, never all held at once twice)."""

    def __init__(self, kind: str, n: int, d: int, seed: int, fit: np.ndarray | None = None):
        self.kind, self.n, self.d, self.seed = kind, n, d, seed
        rng = np.random.default_rng(seed)
        if kind == "real":  # a real gallery and real query embeddings, as they are
            self.real, self.real_queries = fit
            self.n = len(self.real)
        if kind == "clustered":
            base = fit if fit is not None else unit(rng.standard_normal((2048, d)))
            self.mean = base.mean(0)
            centred = base - self.mean
            _, s, vt = np.linalg.svd(centred[:4096], full_matrices=False)
            self.comps = (vt[:64] * (s[:64, None] / np.sqrt(len(centred[:4096])))).astype(np.float32)
            self.centres = (rng.standard_normal((max(1, n // 100), 64)).astype(np.float32) @ self.comps)

    def chunk(self, i: int) -> np.ndarray:
        if self.kind == "real":
            return self.real
        rng = np.random.default_rng([self.seed, i])
        m = min(CHUNK, self.n - i * CHUNK)
        if self.kind == "random":
            return unit(rng.standard_normal((m, self.d), dtype=np.float32))
        c = self.centres[rng.integers(0, len(self.centres), m)]
        local = rng.standard_normal((m, 64), dtype=np.float32) @ self.comps * 0.5
        iso = rng.standard_normal((m, self.d), dtype=np.float32) * (0.02 / np.sqrt(self.d))
        return unit(self.mean + c + local + iso)

    def chunks(self):
        for i in range((self.n + CHUNK - 1) // CHUNK):
            yield self.chunk(i)

    def queries(self, q: int) -> np.ndarray:
        if self.kind == "real":
            return self.real_queries
        rng = np.random.default_rng([self.seed, 10**6])
        if self.kind == "random":
            return unit(rng.standard_normal((q, self.d), dtype=np.float32))
        first = self.chunk(0)  # a frame near a known tile: its vector plus noise of the local spread
        picked = first[rng.integers(0, len(first), q)]
        noise = rng.standard_normal((q, 64), dtype=np.float32) @ self.comps * 0.25
        return unit(picked + noise)


def make_index(kind: str, d: int, n: int, data: Synthetic, args):
    import faiss

    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
    else:
        nlist = min(args.ivf_nlist_max, int(4 * np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        train = data.chunk(0)[: max(nlist * 40, 10_000)]
        index.train(train)
    for x in data.chunks():
        index.add(x)
    return index


def single_query_latency(index, queries: np.ndarray, repeats: int, threads: list[int]) -> tuple[float, float, int]:
    """(p50, p95, threads) for one query at a time, with the fastest of the thread counts: one
    query rarely feeds two OpenMP threads, and on a busy CPU their spin-waits cost more than they give."""
    import faiss

    best = None
    for n_threads in threads:
        faiss.omp_set_num_threads(n_threads)
        times = []
        for i in range(repeats):
            q = queries[i % len(queries)][None]
            t = time.perf_counter()
            index.search(q, 5)
            times.append((time.perf_counter() - t) * 1000)
        res = (float(np.percentile(times, 50)), float(np.percentile(times, 95)), n_threads)
        best = res if best is None or res[0] < best[0] else best
    faiss.omp_set_num_threads(max(threads))
    return best


def set_param(index, kind: str, value: int) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = value
    elif kind == "ivf":
        index.nprobe = value


def bench_size(n: int, d: int, data_kind: str, args, fit) -> list[dict]:
    data = Synthetic(data_kind, n, d, seed=n, fit=fit)
    n = data.n
    queries = data.queries(args.queries)
    rows, exact = [], None
    for kind in args.kinds:
        if kind == "hnsw" and n > args.hnsw_max_n:
            rows.append({"n": n, "data": data_kind, "index": kind, "skipped": f"build too slow on this CPU above {args.hnsw_max_n}"})
            continue
        before = rss_mb()
        t = time.perf_counter()
        index = make_index(kind, d, n, data, args)
        build_s = time.perf_counter() - t
        mem = rss_mb() - before
        params = {"flat": [None], "hnsw": args.ef_search, "ivf": args.nprobe}[kind]
        for p in params:
            if p is not None:
                set_param(index, kind, p)
            _, ids = index.search(queries, 1)
            if kind == "flat":
                exact = ids[:, 0]
            p50, p95, n_threads = single_query_latency(index, queries, args.repeats, args.search_threads)
            agree = None if exact is None else round(float((ids[:, 0] == exact).mean()), 4)
            rows.append({"n": n, "data": data_kind, "index": kind, "param": p, "build_s": round(build_s, 2),
                         "memory_mb": round(mem, 1), "search_p50_ms": round(p50, 3), "search_p95_ms": round(p95, 3),
                         "search_threads": n_threads, "top1_agreement": agree})
        del index
    return rows


def encode_latency(args) -> dict:
    import torch

    from gleam_models.config import EncoderConfig
    from gleam_models.embed import embed_arrays
    from gleam_models.encoder import load_encoder

    torch.set_num_threads(args.threads)
    cfg = EncoderConfig()
    encoder = load_encoder(cfg, args.checkpoint)
    h, w = cfg.input_size["uav"]
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = {"dim": encoder.embed_dim, "input": [h, w], "backbone": cfg.backbone}
    for _ in range(5):
        embed_arrays(encoder, [frame], 1)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        embed_arrays(encoder, [frame], 1)
        times.append((time.perf_counter() - t) * 1000)
    out["torch_eager_p50_ms"], out["torch_eager_p95_ms"] = (round(float(np.percentile(times, p)), 3) for p in (50, 95))
    if args.onnx:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(args.onnx), opts, providers=["CPUExecutionProvider"])
        x = encoder.normalize(torch.from_numpy(frame).permute(2, 0, 1)[None]).numpy()
        name = sess.get_inputs()[0].name
        times = []
        for i in range(args.repeats + 5):
            t = time.perf_counter()
            sess.run(None, {name: x})
            if i >= 5:
                times.append((time.perf_counter() - t) * 1000)
        out["onnx_p50_ms"], out["onnx_p95_ms"] = (round(float(np.percentile(times, p)), 3) for p in (50, 95))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf"], choices=["flat", "hnsw", "ivf"])
    ap.add_argument("--data", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    ap.add_argument("--fit", type=Path, help="real gallery embeddings.npy to fit the clustered set to")
    ap.add_argument("--real-queries", type=Path, help="real frame embeddings .npy: also search the --fit gallery itself")
    ap.add_argument("--checkpoint", type=Path, help="GLEAM-C model.safetensors for the encode timing (default ImageNet)")
    ap.add_argument("--onnx", type=Path, help="an exported encoder .onnx: also time ONNX Runtime")
    ap.add_argument("--queries", type=int, default=1000, help="queries scored for top-1 agreement")
    ap.add_argument("--repeats", type=int, default=200, help="single-query timings per setting")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--ivf-nlist-max", type=int, default=1024)
    ap.add_argument("--hnsw-max-n", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--search-threads", type=int, nargs="+", default=[1, 2], help="single-query timings: best of these")
    ap.add_argument("--out", type=Path, default=Path("reports/gallery_search.json"))
    args = ap.parse_args()

    import faiss
    from rich.console import Console
    from rich.table import Table

    faiss.omp_set_num_threads(args.threads)
    enc = encode_latency(args)
    fit = np.load(args.fit, allow_pickle=False) if args.fit else None
    rows = []
    for n in args.sizes:
        for kind in args.data:
            rows += bench_size(n, enc["dim"], kind, args, fit)
            write_json(args.out.with_suffix(".partial.json"), {"encode": enc, "rows": rows})  # long runs: keep what is done
            print(f"done n={n} data={kind}", flush=True)
    if args.real_queries:  # the real gallery (--fit) searched with real frame embeddings
        real = (fit, np.load(args.real_queries, allow_pickle=False).astype(np.float32))
        rows += bench_size(len(fit), enc["dim"], "real", args, real)
    for r in rows:
        if "search_p50_ms" in r:
            r["end_to_end_p50_ms"] = round(enc["torch_eager_p50_ms"] + r["search_p50_ms"], 3)
            if "onnx_p50_ms" in enc:
                r["end_to_end_onnx_p50_ms"] = round(enc["onnx_p50_ms"] + r["search_p50_ms"], 3)
    table = Table(title=f"localize = encode (torch eager p50 {enc['torch_eager_p50_ms']} ms"
                        + (f", ONNX {enc['onnx_p50_ms']} ms" if "onnx_p50_ms" in enc else "")
                        + f") + search, D={enc['dim']}, {args.threads} threads", title_justify="left")
    cols = ["n", "data", "index", "param", "build_s", "memory_mb", "search_p50_ms", "search_p95_ms",
            "search_threads", "top1_agreement", "end_to_end_p50_ms"] + (["end_to_end_onnx_p50_ms"] if "onnx_p50_ms" in enc else [])
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r.get(c, r.get("skipped", "") if c == "param" else "")) for c in cols])
    Console(width=200).print(table)
    write_json(args.out, {"encode": enc, "rows": rows, "threads": args.threads, "queries": args.queries,
                          "repeats": args.repeats, "cpu_count": os.cpu_count(),
                          "note": "end_to_end = encode p50 + search p50 (one frame, batch 1)"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
