"""The bundle's build_engine.sh and README.md, written from the export report."""
from __future__ import annotations


def _sizes(profiles: dict) -> dict[str, dict]:
    """{"128x128": profile, ...}: one entry per distinct input size, with the views using it."""
    out: dict[str, dict] = {}
    for view, p in profiles.items():
        key = f"{p['size'][0]}x{p['size'][1]}"
        out.setdefault(key, {**p, "views": []})["views"].append(view)
    return out


def build_engine_script(profiles: dict, max_batch: int) -> str:
    lines = [
        "#!/usr/bin/env bash",
        "# Build the TensorRT engines ON the Jetson (an engine is tied to its GPU and TensorRT version).",
        "# Jetson Orin, JetPack 6 (TensorRT 8.6 / 10): ./build_engine.sh [--dla CORE]",
        "# Input: images, uint8 NHWC [batch, H, W, 3]; batch 1 is the optimised shape (one camera frame).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        '[ -x "$TRTEXEC" ] || { echo "error: trtexec not found (install TensorRT / JetPack, or set TRTEXEC)" >&2; exit 2; }',
        'DLA=""',
        'if [ "${1:-}" = "--dla" ]; then DLA="--useDLACore=${2:?usage: --dla CORE} --allowGPUFallback"; fi',
        "mkdir -p engines",
    ]
    for size, p in _sizes(profiles).items():
        h, w = p["size"]
        shapes = (f"--minShapes=images:1x{h}x{w}x3 --optShapes=images:1x{h}x{w}x3 "
                  f"--maxShapes=images:{max_batch}x{h}x{w}x3")
        lines += [
            f"# views {', '.join(p['views'])}",
            f'"$TRTEXEC" --onnx={p["models"]["fp32"]} {shapes} --fp16 '
            f'--saveEngine={p["engines"]["fp16"]} $DLA',
        ]
        if "int8_trt" in p["models"]:
            lines += ["# INT8, explicit quantization: the Q/DQ scales calibrated on real training frames are in the graph",
                      f'"$TRTEXEC" --onnx={p["models"]["int8_trt"]} {shapes} --int8 --fp16 '
                      f'--saveEngine={p["engines"]["int8"]} $DLA']
        else:
            lines += ["# INT8, implicit: TensorRT's own entropy calibration on the real frames (writes the cache)",
                      f'python3 build_engine.py --onnx {p["models"]["fp32"]} --precision int8 '
                      f'--calibration {p["calibration"]} --engine {p["engines"]["int8"]} --max-batch {max_batch}']
    lines += ["(cd engines && sha256sum *.engine > engines.sha256)", 'echo "engines:"; ls -l engines', ""]
    return "\n".join(lines)


def readme(report: dict, gallery: dict, profiles: dict, max_batch: int) -> str:
    sizes = _sizes(profiles)
    retrieval = report.get("retrieval", {})
    r1 = retrieval.get("mean_q2s_R@1", {})
    r1_lines = "\n".join(f"| {run} | {value:.2f} |" for run, value in r1.items()) or "| - | - |"
    views = ", ".join(f"{', '.join(p['views'])}: {s}" for s, p in sizes.items())
    return f"""# GLEAM Jetson bundle

Model `{report['model_fingerprint']}` ({report['backbone']}, {report['embed_dim']}-d embeddings); gallery of
{gallery.get('count')} georeferenced tiles ({gallery.get('tile_m')} m tiles, stride {gallery.get('stride_m')} m).
Input sizes (H x W) per view: {views}. The models take **uint8 NHWC RGB** frames and do the
normalisation themselves; the runner only resizes (Pillow bicubic, as in training).

## On the device (Jetson Orin, JetPack 6)

1. Copy this folder (or `jetson_bundle.tar.gz`, then `tar xzf jetson_bundle.tar.gz`).
2. Python packages: `python3 -m pip install -r requirements.txt` (numpy, Pillow, ONNX Runtime). On a
   Jetson use JetPack's TensorRT (`python3 -c "import tensorrt"`) and, for engines, `cuda-python`;
   or the Jetson build of `onnxruntime-gpu` (CUDA / TensorRT execution providers).
3. Build the engines: `./build_engine.sh` (FP16 from the fp32 ONNX; INT8 from the QDQ model, whose
   scales come from calibration on real training frames). `./build_engine.sh --dla 0` builds for DLA
   core 0 with GPU fallback. Alternatively `python3 build_engine.py --onnx models/<fp32>.onnx
   --precision int8 --calibration models/calibration_<H>x<W>.npy --engine engines/<name>.engine` runs
   TensorRT's own entropy calibration on those frames and writes the INT8 calibration cache
   (`engines/<name>.calib`), which `trtexec --int8 --calib=engines/<name>.calib` reuses.
   No TensorRT calibration cache ships in the bundle: only TensorRT can write one for its own
   fused network.
4. Localize: `python3 localize.py frame.jpg [more.jpg ...] --view uav --top-k 5` prints the top-k
   tiles (lat/lon, similarity) and the latency of each step. It uses a built engine when TensorRT
   imports, else ONNX Runtime (TensorRT EP, CUDA EP, then CPU). `--json` prints one JSON object per frame.

Before loading anything the runner checks every file against `manifest.json` (sha256) and refuses a
gallery built by another model version (`--gallery DIR` for another map of the same model).

## Accuracy of the variants (mean query->satellite R@1 on the {', '.join(retrieval.get('splits', ['test']))} split)

| run | R@1 |
| --- | --- |
{r1_lines}

Variants that failed their parity or accuracy gates are not in `models/`; `manifest.json` lists
what passed (`parity.passed`). Engines: max batch {max_batch}.
"""
