"""Which INT8 layout pays on ONNX Runtime CPU: the variants tried, timed side by side (export/README.md).

Each variant is export.quantize.quantize_int8 of the exported fp32 encoder, calibrated on the same
real training frames (models/onnx/calibration_<H>x<W>.npy); cosine against the fp32 ONNX on real
test frames; batch 1 and 32, interleaved rounds, medians with [min-max].

    .venv/bin/python benchmarks/int8_variants.py --onnx-dir models/onnx --out reports/int8_variants.json
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from data_assets.io import read_json, write_json
from export.parity import sample_frames
from export.quantize import ort_embed, ort_session, quantize_int8, time_calls
from gleam_models.data import ImageCache
from orchestration.config import load_project

VARIANTS = {
    "qdq, per-channel, minmax, raw graph": dict(fmt="qdq", preprocess=False, method="minmax"),
    "qdq, per-channel, minmax": dict(fmt="qdq", method="minmax"),
    "qoperator, per-channel, minmax": dict(method="minmax"),
    "qoperator, per-tensor, minmax": dict(per_channel=False, method="minmax"),
    "qoperator, per-channel, minmax, reduce_range": dict(reduce_range=True, method="minmax"),
    "qoperator, per-channel, percentile": dict(),
    "qoperator, per-channel, entropy": dict(method="entropy"),
    "qoperator, percentile, depthwise float": dict(keep_float=["depthwise"]),
    "qoperator, percentile, first conv float": dict(keep_float=["first_conv"]),
    "qoperator, percentile, first+last conv float (default)": dict(keep_float=["first_conv", "last_conv"]),
    "qdq, percentile, first+last conv float": dict(fmt="qdq", keep_float=["first_conv", "last_conv"]),
    "qdq S8S8 symmetric, percentile (TensorRT)": dict(fmt="qdq", symmetric=True, activation="int8"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--onnx-dir", type=Path, default=Path("models/onnx"))
    ap.add_argument("--view", default="uav")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/int8_variants.json"))
    args = ap.parse_args()
    project = load_project(args.params)
    report = read_json(args.onnx_dir / "parity.json")
    size = report["profiles"][args.view]
    files = report["files"][size]
    fp32 = args.onnx_dir / files["fp32"]
    calib = np.load(args.onnx_dir / files["calibration"], allow_pickle=False)
    cache = ImageCache(project.cache_dir / "images", ram_budget_mb=256)
    test, _ = sample_frames(project.validated_manifest, project.root, "test", files["views"],
                            tuple(calib.shape[1:3]), 128, cache, seed=1)
    with tempfile.TemporaryDirectory(prefix="gleam-int8-") as tmp:
        paths = {"fp32": fp32}
        for name, kw in VARIANTS.items():
            paths[name] = quantize_int8(fp32, Path(tmp) / f"v{len(paths)}.onnx", calib, **kw)
        sessions = {(n, t): ort_session(p, threads=t) for n, p in paths.items() for t in args.threads}
        reference = ort_embed(sessions[("fp32", args.threads[0])], test)
        times = {k: {1: [], 32: []} for k in sessions}
        for _ in range(args.rounds):
            for key, s in sessions.items():
                for b, calls in ((1, 60), (32, 5)):
                    x = np.ascontiguousarray(test[:b])
                    times[key][b].append(1e3 * statistics.median(time_calls(lambda: s.run(None, {"images": x}), repeats=calls)))
        rows = []
        for (name, t), s in sessions.items():
            cos = (ort_embed(s, test) * reference).sum(axis=1)
            rows.append({"variant": name, "threads": t, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                         **{f"batch_{b}_ms": statistics.median(times[(name, t)][b]) for b in (1, 32)},
                         **{f"batch_{b}_rounds_ms": times[(name, t)][b] for b in (1, 32)}})
    base = {r["threads"]: r for r in rows if r["variant"] == "fp32"}
    print("| variant | threads | batch 1 ms [min-max] | vs fp32 | batch 32 ms | vs fp32 | cosine mean / min |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        f = base[r["threads"]]
        print(f"| {r['variant']} | {r['threads']} | {r['batch_1_ms']:.2f} [{min(r['batch_1_rounds_ms']):.2f}-"
              f"{max(r['batch_1_rounds_ms']):.2f}] | {f['batch_1_ms'] / r['batch_1_ms']:.2f}x | {r['batch_32_ms']:.1f} | "
              f"{f['batch_32_ms'] / r['batch_32_ms']:.2f}x | {r['cosine_mean']:.4f} / {r['cosine_min']:.4f} |")
    write_json(args.out, {"model_fingerprint": report["model_fingerprint"], "input": size, "rounds": args.rounds,
                          "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
