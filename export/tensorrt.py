#!/usr/bin/env python3
"""TensorRT FP16 / INT8 engines of an exported encoder, with TensorRT's Python API.

Standalone (numpy + tensorrt + cuda-python, no project imports): the bundle ships this file as
build_engine.py so the engines are built on the Jetson itself (an engine is specific to the GPU
and TensorRT version that built it).

- fp16: from the fp32 ONNX, FP16 kernels allowed.
- int8 (calibrated): from the fp32 ONNX with an IInt8EntropyCalibrator2 fed the real training frames
  the ONNX INT8 models were calibrated on (calibration_<H>x<W>.npy, uint8 NHWC); the calibration
  cache is saved next to the engine and reused by later builds (`trtexec --calib=`).
- int8 (explicit): from the symmetric QDQ ONNX (encoder_*_int8_trt.onnx): the Q/DQ scales are in
  the graph, no calibration needed (`trtexec --int8` does the same).

Where `import tensorrt` fails (any machine without TensorRT, such as the CPU machines that export),
`build_engines` says so in one line and returns without raising.

    python3 build_engine.py --onnx models/encoder_128x128_fp32.onnx --precision int8 \\
        --calibration models/calibration_128x128.npy --engine engines/encoder_128x128_int8.engine
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

INPUT_NAME = "images"


def tensorrt_status() -> tuple[bool, str]:
    """(available, one-line reason or version)."""
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install raising OSError
        return False, f"TensorRT not available ({e.__class__.__name__}: {e}); engines are built on the device with build_engine.sh"
    return True, f"TensorRT {trt.__version__}"


def _calibrator(trt, frames: np.ndarray, batch: int, cache_path: Path):
    from cuda import cudart

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.pos = 0
            self.device = cudart.cudaMalloc(frames[:batch].nbytes)[1]

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            if self.pos + batch > len(frames):
                return None
            block = np.ascontiguousarray(frames[self.pos:self.pos + batch])
            cudart.cudaMemcpy(self.device, block.ctypes.data, block.nbytes,
                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.pos += batch
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return FrameCalibrator()


def build_engine(onnx_path: Path, engine_path: Path, precision: str, max_batch: int = 32, opt_batch: int = 1,
                 calibration: Path | None = None, cache_path: Path | None = None, dla_core: int | None = None,
                 workspace_gb: float = 2.0) -> dict:
    """Build and serialize one engine; returns facts about it. precision: fp16 | int8."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the ONNX model: {errors}")
    shape = tuple(network.get_input(0).shape)  # (-1, H, W, 3)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, *shape[1:]), (opt_batch, *shape[1:]), (max_batch, *shape[1:]))
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        has_qdq = any(network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers))
        if not has_qdq:  # implicit quantization: ranges from real frames
            if calibration is None:
                raise RuntimeError("int8 from an fp32 ONNX needs --calibration frames (calibration_<H>x<W>.npy)")
            frames = np.load(calibration, allow_pickle=False)
            cache_path = cache_path or engine_path.with_suffix(".calib")
            config.int8_calibrator = _calibrator(trt, frames, min(8, len(frames)), cache_path)
            config.set_calibration_profile(profile)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return {"engine": str(engine_path), "precision": precision, "seconds": time.perf_counter() - t0,
            "calibration_cache": str(cache_path) if cache_path else None, "tensorrt": trt.__version__}


def build_engines(onnx_files: dict[str, Path], out_dir: Path, calibration: Path | None = None,
                  max_batch: int = 32) -> dict:
    """fp16 + int8 engines for {"fp32": path, "int8_trt": path}; one line and no error without TensorRT."""
    ok, status = tensorrt_status()
    if not ok:
        print(status)
        return {"available": False, "message": status, "engines": {}}
    out_dir = Path(out_dir)
    stem = Path(onnx_files["fp32"]).name.replace("_fp32.onnx", "")
    engines = {"fp16": build_engine(Path(onnx_files["fp32"]), out_dir / f"{stem}_fp16.engine", "fp16", max_batch)}
    int8_source = onnx_files.get("int8_trt") or onnx_files["fp32"]
    engines["int8"] = build_engine(Path(int8_source), out_dir / f"{stem}_int8.engine", "int8", max_batch,
                                   calibration=calibration, cache_path=out_dir / f"{stem}_int8.calib")
    return {"available": True, "message": status, "engines": engines}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--engine", type=Path, required=True)
    ap.add_argument("--precision", choices=["fp16", "int8"], default="fp16")
    ap.add_argument("--calibration", type=Path, help="uint8 [N,H,W,3] .npy of real frames (int8 from fp32 ONNX)")
    ap.add_argument("--cache", type=Path, help="INT8 calibration cache to read/write (default: <engine>.calib)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--dla-core", type=int, help="build for a DLA core (Jetson Orin), GPU fallback on")
    args = ap.parse_args(argv)
    ok, status = tensorrt_status()
    if not ok:
        print(status, file=sys.stderr)
        return 2
    info = build_engine(args.onnx, args.engine, args.precision, args.max_batch, calibration=args.calibration,
                        cache_path=args.cache, dla_core=args.dla_core)
    print(f"wrote {info['engine']} ({info['precision']}, {info['seconds']:.0f} s, {info['tensorrt']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
