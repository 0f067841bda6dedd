"""FP16 and INT8 variants of an exported encoder (ONNX in, ONNX out), and how fast ONNX Runtime runs them.

- FP16: every float initializer and op in half precision, the uint8 input and float32 output kept
  (onnxruntime.transformers.float16, the same converter as onnxconverter-common). For GPU runtimes
  (ORT CUDA, TensorRT); ONNX Runtime's CPU kernels are mostly float32, so on a CPU it is slower.
- INT8 calibrated on real training images (a CalibrationDataReader over uint8 frames, resized the
  way training resizes them). Two flavours:
  * `int8_cpu`: the fastest ORT-CPU layout measured here (benchmarks/inference.py, the table in
    export/README.md): QOperator (QLinearConv with the ReLU6 fused in) on a graph pre-optimised by
    quant_pre_process, so no float BatchNorm/Clip sits between two integer convolutions.
  * `int8_trt`: symmetric S8S8 QDQ (zero points 0, per-channel weights), TensorRT's explicit
    quantization format: `trtexec --int8` builds an INT8 engine from its own Q/DQ scales, no cache.
"""
from __future__ import annotations

import contextlib
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from data_assets.errors import DataError
from data_assets.io import atomic_path

log = logging.getLogger(__name__)
INPUT_NAME = "images"


def convert_fp16(fp32_path: Path, out_path: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))
    return out_path


class FrameReader:
    """onnxruntime CalibrationDataReader over uint8 NHWC frames, in batches of ONE size: the
    histogram calibrators stack per-batch outputs and fail on a shorter last batch (the remainder
    of len(frames) / batch is left out)."""

    def __init__(self, frames: np.ndarray, batch: int = 8):
        self.batch = min(batch, len(frames))
        self.frames, self.pos = frames[: len(frames) // self.batch * self.batch], 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.frames):
            return None
        out = {INPUT_NAME: self.frames[self.pos:self.pos + self.batch]}
        self.pos += self.batch
        return out

    def rewind(self) -> None:
        self.pos = 0


def preprocess_for_quantization(fp32_path: Path, out_path: Path) -> Path:
    """Shape inference + ORT graph optimisation (Conv/BN/activation fusion) before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(out_path) as tmp:
        quant_pre_process(str(fp32_path), str(tmp), skip_symbolic_shape=True)
    return out_path


EXCLUDABLE = ("depthwise", "first_conv", "last_conv", "add", "pool")


def nodes_to_keep_float(model_path: Path, kinds: Sequence[str]) -> list[str]:
    """Names of the nodes of the given kinds (EXCLUDABLE), which then stay in float32."""
    import onnx

    unknown = sorted(set(kinds) - set(EXCLUDABLE))
    if unknown:
        raise ValueError(f"unknown node kinds {unknown}; valid: {list(EXCLUDABLE)}")
    nodes = onnx.load(str(model_path)).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    picked = []
    if "depthwise" in kinds:
        picked += [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    if "first_conv" in kinds and convs:
        picked.append(convs[0].name)
    if "last_conv" in kinds and convs:
        picked.append(convs[-1].name)
    if "add" in kinds:
        picked += [n.name for n in nodes if n.op_type == "Add"]
    if "pool" in kinds:
        picked += [n.name for n in nodes if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    return list(dict.fromkeys(picked))


def quantize_int8(fp32_path: Path, out_path: Path, frames: np.ndarray, *, fmt: str = "qoperator",
                  per_channel: bool = True, symmetric: bool = False, reduce_range: bool = False,
                  method: str = "percentile", preprocess: bool = True, keep_float: Sequence[str] = (),
                  activation: str = "uint8") -> Path:
    """Static INT8 of an fp32 ONNX encoder, activation ranges from `frames` (uint8 [N,H,W,3])."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise DataError(None, f"INT8 calibration needs uint8 [N,H,W,3] frames, got {frames.dtype} {frames.shape}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="gleam-quant-") as tmp:
        source = preprocess_for_quantization(fp32_path, Path(tmp) / "pre.onnx") if preprocess else fp32_path
        extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                 "CalibMovingAverage": method == "minmax", "CalibTensorRangeSymmetric": symmetric}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        with atomic_path(out_path) as out_tmp, _quiet():
            quantize_static(
                str(source), str(out_tmp), FrameReader(frames),
                quant_format=QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ,
                per_channel=per_channel, reduce_range=reduce_range,
                activation_type=QuantType.QInt8 if activation == "int8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=methods[method],
                nodes_to_exclude=nodes_to_keep_float(source, keep_float) or None,
                extra_options=extra)
    return out_path


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization prints progress and warns on the root logger about every integer
    shape tensor it leaves alone (harmless); keep that out of the stage's output."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_for_cpu(fp32_path: Path, out_path: Path, frames: np.ndarray, fmt: str = "qoperator",
                     per_channel: bool = True, method: str = "percentile",
                     keep_float: Sequence[str] = ("first_conv", "last_conv")) -> Path:
    """The INT8 layout that runs fastest on ONNX Runtime CPU (see the module docstring)."""
    return quantize_int8(fp32_path, out_path, frames, fmt=fmt, per_channel=per_channel, method=method,
                         keep_float=keep_float)


def quantize_for_tensorrt(fp32_path: Path, out_path: Path, frames: np.ndarray, method: str = "percentile") -> Path:
    """Symmetric S8S8 QDQ: the explicit-quantization ONNX TensorRT builds INT8 engines from."""
    return quantize_int8(fp32_path, out_path, frames, fmt="qdq", per_channel=True, symmetric=True,
                         method=method, activation="int8")


# ----------------------------------------------------------------------------- running and timing

def ort_session(path: Path, threads: int = 2, providers: Sequence[str] = ("CPUExecutionProvider",),
                opt_level: str = "all"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                     "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt_level]
    opts.log_severity_level = 3
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=chosen)


def ort_embed(session, frames: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 [N,H,W,3] -> float32 [N,D] with an ONNX Runtime session of an exported encoder."""
    out = [session.run(None, {INPUT_NAME: frames[i:i + batch]})[0] for i in range(0, len(frames), batch)]
    return np.concatenate(out).astype(np.float32, copy=False)


def time_calls(fn, warmup: int = 3, repeats: int = 20, min_seconds: float = 0.0) -> list[float]:
    """Seconds per call of fn(), after warm-up calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def latency_ms(session, frames: np.ndarray, batch: int, repeats: int = 20) -> dict[str, float]:
    x = np.ascontiguousarray(frames[:batch])
    if len(x) < batch:
        x = np.resize(x, (batch, *x.shape[1:]))
    t = sorted(time_calls(lambda: session.run(None, {INPUT_NAME: x}), repeats=repeats))
    p50 = statistics.median(t)
    return {"p50_ms": 1e3 * p50, "p95_ms": 1e3 * t[min(len(t) - 1, int(0.95 * len(t)))],
            "images_per_s": batch / p50}
