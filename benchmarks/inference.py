"""Encoder inference speed: torch eager vs ONNX Runtime fp32 / fp16 / INT8, side by side, one run.

The same uint8 frames (real test images, resized as training resizes them) go to every runtime:
- torch eager: the GLEAM-C encoder as evaluation runs it (normalize + forward, inference mode,
  channels_last as configured), the torch thread count = --threads;
- ONNX Runtime CPU: each exported variant of models/onnx/ (preprocessing inside the graph);
- ONNX Runtime CUDA, where a GPU and onnxruntime-gpu are at hand.
Batch 1 (a drone's frame) and batch 32; rounds are interleaved so load changes on a shared machine
hit every runtime alike; latency p50/p95, throughput, and ratios with their spread over rounds. The
R@1 change of each variant comes from the export's retrieval parity run (models/onnx/parity.json).

    .venv/bin/python benchmarks/inference.py --onnx-dir models/onnx --out reports/inference.json
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from data_assets.io import read_json, write_json
from export.parity import sample_frames
from export.quantize import ort_session, time_calls
from gleam_models.data import ImageCache
from gleam_models.encoder import load_encoder
from orchestration.config import load_project

VARIANTS = ("fp32", "fp16", "int8_cpu", "int8_trt")


def runners(report: dict, onnx_dir: Path, size: str, encoder, threads: int, cuda: bool) -> dict:
    """name -> fn(uint8 frames [B,H,W,3])."""
    torch.set_num_threads(threads)
    first_conv = next(p for p in encoder.parameters() if p.ndim == 4)
    channels_last = (torch.channels_last if first_conv.is_contiguous(memory_format=torch.channels_last)
                     else torch.contiguous_format)

    @torch.inference_mode()
    def torch_eager(frames):
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return encoder(encoder.normalize(x).contiguous(memory_format=channels_last))

    out = {"torch eager": torch_eager}
    for variant in VARIANTS:
        name = report["files"][size].get(variant)
        if name:
            session = ort_session(onnx_dir / name, threads=threads)
            out[f"onnx {variant}"] = lambda f, s=session: s.run(None, {"images": f})
    if cuda:
        for variant in ("fp32", "fp16"):
            session = ort_session(onnx_dir / report["files"][size][variant], providers=("CUDAExecutionProvider",))
            out[f"onnx cuda {variant}"] = lambda f, s=session: s.run(None, {"images": f})
    return out


def measure(fns: dict, frames: np.ndarray, batches: list[int], rounds: int, calls: dict[int, int]) -> dict:
    """{name: {batch: [per-round list of per-call seconds]}}, rounds interleaved over the runtimes."""
    times: dict = {n: {b: [] for b in batches} for n in fns}
    for _ in range(rounds):
        for b in batches:
            x = np.ascontiguousarray(np.resize(frames, (b, *frames.shape[1:])))
            for name, fn in fns.items():
                times[name][b].append(time_calls(lambda: fn(x), warmup=3, repeats=calls[b]))
    return times


def summarise(times: dict, batches: list[int], report: dict) -> dict:
    change = report.get("retrieval", {}).get("mean_q2s_R@1_change", {})
    out = {}
    for name, by_batch in times.items():
        out[name] = {"R@1_change": change.get(name.replace("onnx cuda ", "onnx_").replace("onnx ", "onnx_"))}
        for b in batches:
            pooled = sorted(t for r in by_batch[b] for t in r)
            p50 = statistics.median(statistics.median(r) for r in by_batch[b])
            out[name][f"batch_{b}"] = {"p50_ms": 1e3 * p50, "p95_ms": 1e3 * pooled[int(0.95 * (len(pooled) - 1))],
                                       "images_per_s": b / p50,
                                       "round_p50_ms": [1e3 * statistics.median(r) for r in by_batch[b]]}
    return out


def ratios(times: dict, base: str, other: str, b: int) -> dict:
    per_round = [statistics.median(x) / statistics.median(y) for x, y in zip(times[base][b], times[other][b])]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round),
            "per_round": per_round}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--onnx-dir", type=Path, default=Path("models/onnx"), help="output of the onnx_export stage")
    ap.add_argument("--view", default="uav", help="which profile's model is timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--out", type=Path, default=Path("reports/inference.json"))
    args = ap.parse_args()

    import onnxruntime as ort

    project = load_project(args.params)
    report = read_json(args.onnx_dir / "parity.json")
    size = report["profiles"][args.view]
    hw = tuple(int(v) for v in size.split("x"))
    encoder = load_encoder(project.cfg.model, Path(report["checkpoint"])).eval()
    cache = ImageCache(project.cache_dir / "images", ram_budget_mb=256)
    frames, _ = sample_frames(project.validated_manifest, project.root, "test", report["files"][size]["views"],
                              hw, 64, cache, seed=2)
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    fns = runners(report, args.onnx_dir, size, encoder, args.threads, cuda)
    calls = {b: max(5, 60 // b) for b in args.batches}
    times = measure(fns, frames, args.batches, args.rounds, calls)
    result = {"model_fingerprint": report["model_fingerprint"], "backbone": report["backbone"], "input": size,
              "threads": args.threads, "rounds": args.rounds, "onnxruntime": ort.__version__,
              "torch": torch.__version__, "runtimes": summarise(times, args.batches, report),
              "ratios": {}}
    for b in args.batches:
        result["ratios"][f"onnx fp32 vs torch eager, batch {b}"] = ratios(times, "torch eager", "onnx fp32", b)
        for q in ("int8_cpu", "int8_trt", "fp16"):
            if f"onnx {q}" in times:
                result["ratios"][f"onnx {q} vs onnx fp32, batch {b}"] = ratios(times, "onnx fp32", f"onnx {q}", b)
    result["goals"] = goals(result)
    print_table(result, args.batches)
    write_json(args.out, result)
    print(f"wrote {args.out}")


def goals(result: dict) -> dict:
    """The issue's targets on 2 CPU cores, each with the measured median ratio."""
    r, rt = result["ratios"], result["runtimes"]
    out = {}
    for b, target in ((1, 6.0), (32, 5.0)):
        key = f"onnx fp32 vs torch eager, batch {b}"
        if key in r:
            out[f"onnx fp32 >= {target:g}x torch eager, batch {b}"] = {"measured": r[key]["median"],
                                                                        "met": r[key]["median"] >= target}
    drop = rt.get("onnx int8_cpu", {}).get("R@1_change")
    for b in (1, 32):
        key = f"onnx int8_cpu vs onnx fp32, batch {b}"
        if key in r:
            met = r[key]["median"] >= 1.5 and drop is not None and drop >= -1.0
            out[f"int8 >= 1.5x onnx fp32 with <= 1 point R@1 loss, batch {b}"] = {
                "measured": r[key]["median"], "R@1_change": drop, "met": met}
    return out


def print_table(result: dict, batches: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"encoder inference ({result['backbone']}, {result['input']}, {result['threads']} threads, "
                        f"{result['rounds']} interleaved rounds)")
    for col in ["runtime", *[f"b{b} p50 / p95 ms" for b in batches], *[f"b{b} img/s" for b in batches], "R@1 change"]:
        table.add_column(col)
    for name, r in result["runtimes"].items():
        cells = [f"{r[f'batch_{b}']['p50_ms']:.2f} / {r[f'batch_{b}']['p95_ms']:.2f}" for b in batches]
        cells += [f"{r[f'batch_{b}']['images_per_s']:.0f}" for b in batches]
        change = "-" if r["R@1_change"] is None else f"{r['R@1_change']:+.2f}"
        table.add_row(name, *cells, change)
    console = Console(width=160)
    console.print(table)
    ratio_table = Table(title="speed-up: median over rounds (min, max)")
    ratio_table.add_column("comparison")
    ratio_table.add_column("speed-up")
    for name, r in result["ratios"].items():
        ratio_table.add_row(name, f"{r['median']:.2f}x ({r['min']:.2f}, {r['max']:.2f})")
    console.print(ratio_table)
    for name, g in result["goals"].items():
        print(f"goal {name}: {g['measured']:.2f}x -> {'met' if g['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
