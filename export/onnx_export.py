"""ONNX export of the GLEAM-C encoder, with the preprocessing inside the graph.

The exported graph takes what a camera pipeline has after a resize: **uint8 NHWC [B, H, W, 3]**
(RGB, 0..255, the layout `np.asarray(PIL.Image)` gives), and returns float32 [B, D] unit vectors.
Inside: NHWC->NCHW, /255, the backbone's mean/std, the encoder, L2 normalisation. So an edge
runner only decodes and resizes: with Pillow, `image.convert("RGB").resize((W, H), BICUBIC,
reducing_gap=3.0)`, exactly what training and evaluation do (gleam_models.data.decode_resized).

One file per distinct input size among the exported views (`export.profiles`): H and W are fixed
(TensorRT and the INT8 calibration want static spatial shapes), the batch is dynamic.

Weights: `torch.onnx.export(dynamo=True)` would write them to a side file `<name>.onnx.data`.
Models under 1.5 GB are written as ONE self-contained .onnx (easier to ship and hash); larger ones
keep the external-data file, which the bundle then ships and hashes next to the .onnx.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data_assets.errors import DataError

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
INPUT_LAYOUT = "NHWC uint8 RGB 0..255"
INLINE_LIMIT_BYTES = 1_500_000_000  # protobuf's hard limit is 2 GiB for one file
MAX_DYNAMIC_BATCH = 4096


class EdgeEncoder(nn.Module):
    """uint8 NHWC frames -> unit embeddings; the exported graph (see module docstring)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT takes uint8 network inputs only straight into a Cast
        x = images.float().permute(0, 3, 1, 2) / 255.0
        x = (x - self.encoder.mean) / self.encoder.std
        return F.normalize(self.encoder.proj(self.encoder.backbone(x)).float(), dim=-1)


def size_name(size: tuple[int, int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def profile_sizes(input_size: dict[str, tuple[int, int]], profiles: list[str]) -> dict[tuple[int, int], list[str]]:
    """{(H, W): [views]}: views that share an input size share one ONNX file."""
    out: dict[tuple[int, int], list[str]] = {}
    for view in profiles:
        out.setdefault(tuple(int(v) for v in input_size[view]), []).append(view)
    return out


def drop_stack_traces(proto) -> None:
    """Remove the exporter's per-node Python stack traces: they name this file by its absolute path,
    so the same model would get different bytes in every clone (the ONNX files are DVC outputs)."""
    for graph_nodes in [proto.graph.node, *(f.node for f in proto.functions)]:
        for node in graph_nodes:
            keep = [prop for prop in node.metadata_props if "stack_trace" not in prop.key]
            if len(keep) != len(node.metadata_props):
                del node.metadata_props[:]
                node.metadata_props.extend(keep)


def export_onnx(encoder: nn.Module, size: tuple[int, int], out_path: Path, opset: int = 18,
                metadata: dict[str, str] | None = None) -> Path:
    """Write the encoder as ONNX (dynamic batch, fixed H x W) and check it; returns out_path.

    Written in a temporary directory first and moved into place, with its .data file if any.
    """
    import tempfile

    import onnx

    for name in ("onnx_ir", "onnxscript"):  # one INFO line per optimisation pass otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    model = EdgeEncoder(encoder).eval().float().to(memory_format=torch.contiguous_format)
    h, w = int(size[0]), int(size[1])
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    inline = n_bytes < INLINE_LIMIT_BYTES
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=out_path.parent) as tmp:
        tmp_path = Path(tmp) / out_path.name
        batch = torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)
        with torch.no_grad():
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes={"images": {0: batch}}, optimize=True,
                verbose=False)
        proto = program.model_proto
        drop_stack_traces(proto)
        for key, value in {"input_layout": INPUT_LAYOUT, **(metadata or {})}.items():
            proto.metadata_props.add(key=key, value=str(value))
        if inline:
            onnx.save(proto, str(tmp_path))
        else:
            onnx.save(proto, str(tmp_path), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=out_path.name + ".data")
        check_onnx(tmp_path)
        for produced in sorted(Path(tmp).iterdir()):
            produced.replace(out_path.parent / produced.name)
    return out_path


def check_onnx(path: Path) -> None:
    """ONNX checker (full, with shape inference) on a file; external data is read from its side."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker raises several types
        raise DataError(path, f"exported ONNX model fails the ONNX checker ({e})") from None


def model_metadata(encoder, fingerprint: str, views: list[str], size: tuple[int, int]) -> dict[str, str]:
    return {"gleam_model_fingerprint": fingerprint, "backbone": encoder.backbone_name,
            "embed_dim": str(encoder.embed_dim), "views": json.dumps(views), "input_size": json.dumps(list(size))}
