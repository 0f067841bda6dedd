"""Config section of the edge export (`export:` in params.yaml)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from data_assets.settings import Section

VIEWS = ("satellite", "uav", "street_map", "panorama", "ground")


class ExportConfig(Section):
    # ONNX opset; TensorRT 8.6+ (JetPack 6) and ONNX Runtime 1.16+ read 17-18
    opset: int = Field(default=18, ge=17, le=21)
    # views exported; views with the same model.input_size share one ONNX file (fixed H x W, dynamic batch).
    # The drone use case needs uav queries against satellite tiles (both 128x128 by default).
    profiles: list[str] = ["satellite", "uav", "street_map", "ground"]
    fp16: bool = True  # also write an fp16 ONNX (inputs/outputs stay uint8 / float32); for GPU runtimes
    int8: bool = True  # also write INT8 ONNX models calibrated on training images
    # INT8 model for ONNX Runtime on CPU: "qoperator" (QLinearConv, fused) or "qdq" (QuantizeLinear/
    # DequantizeLinear pairs that ORT fuses at load time). The TensorRT one is always symmetric QDQ.
    int8_cpu_format: Literal["qoperator", "qdq"] = "qoperator"
    int8_per_channel: bool = True  # per-output-channel weight scales (depthwise convs need them)
    # nodes the CPU INT8 model keeps in float (export.quantize.EXCLUDABLE): the 3-channel stem conv
    # and the wide last conv cost more as QLinearConv + (de)quantize than they save (export/README.md)
    int8_keep_float: list[Literal["depthwise", "first_conv", "last_conv", "add", "pool"]] = ["first_conv", "last_conv"]
    # calibration: activation ranges from this many real training images (query and satellite views)
    calibration_images: int = Field(default=128, ge=8)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "percentile"
    max_batch: int = Field(default=32, ge=1)  # largest batch the TensorRT profile / benchmark uses
    # parity gates: a failed fp32 gate raises (nothing is bundled); a failed fp16/int8 gate drops that variant
    parity_images: int = Field(default=64, ge=4)  # real test images compared torch vs ONNX, per view
    min_cosine_fp32: float = Field(default=0.9999, gt=0, le=1)  # ORT fp32 vs torch, every image
    min_cosine_fp16: float = Field(default=0.999, gt=0, le=1)
    min_cosine_int8: float = Field(default=0.95, gt=0, le=1)
    max_r1_change_fp32: float = Field(default=0.0, ge=0)  # |R@1 torch - R@1 ONNX| in points, any modality
    max_r1_drop_quantized: float = Field(default=1.0, ge=0)  # mean query->satellite R@1 loss, points
    threads: int = Field(default=2, ge=1)  # ONNX Runtime intra-op threads for checks and timings
    # the model the bundle's runner uses on a CPU: int8_cpu (fp32 where INT8 is not exported or failed
    # its gates), fp32, or fastest = whichever measured faster at batch 1 on the exporting machine (then
    # parity.json and the bundle depend on that machine's timings, so two clones may disagree)
    cpu_variant: Literal["int8_cpu", "fp32", "fastest"] = "int8_cpu"

    @field_validator("profiles")
    @classmethod
    def _known_views(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(VIEWS))
        if unknown or not v:
            raise ValueError(f"export.profiles: unknown or empty {unknown}; valid views: {list(VIEWS)}")
        return list(dict.fromkeys(v))
