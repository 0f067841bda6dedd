"""Turn a stage's JSON summary into Dagster metadata the UI renders well (tables, pictures, paths).

Dagster is imported inside the functions that build its values: the CLI uses round_floats too,
and `gleam` should not pay Dagster's import time for it.
"""
from __future__ import annotations

import base64
import io
import math
import numbers
from pathlib import Path
from typing import Any

from orchestration.stages import StageResult

SIGNIFICANT_DIGITS = 4  # R@1 0.3184 and lr 0.0003 stay readable; 15-digit floats do not


def round_float(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`digits` significant digits, but never fewer than the integer part (12345.6 -> 12346.0)."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    if abs(x) >= 10 ** digits:
        return float(round(x))
    return float(f"{x:.{digits}g}")


def round_floats(obj: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A copy of a JSON-like value with every float rounded (round_float); ints, bools and strings
    are kept. numpy floats count as floats (numbers.Real registers them)."""
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(round_floats(v, digits) for v in obj)
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return round_float(obj, digits)
    return obj


def counts_markdown(counts: dict[str, Any]) -> str:
    """{group: {row: {col: n}}} or {row: {col: n}} -> a markdown table per group."""
    if counts and all(isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) for v in counts.values()):
        return "\n\n".join(f"**{group}**\n\n{counts_markdown(inner)}" for group, inner in counts.items())
    cols = sorted({c for row in counts.values() if isinstance(row, dict) for c in row})
    if not cols:
        return "\n".join(f"- {k}: {v}" for k, v in counts.items())
    lines = ["| | " + " | ".join(cols) + " | total |", "|---" * (len(cols) + 2) + "|"]
    for name, row in counts.items():
        vals = [row.get(c, 0) for c in cols]
        lines.append(f"| {name} | " + " | ".join(str(v) for v in vals) + f" | {sum(vals)} |")
    return "\n".join(lines)


def image_markdown(images: dict[str, Path], max_width: int = 480) -> str:
    """Pictures inline as small JPEG data URLs: the event log stores metadata, so keep it light."""
    from PIL import Image

    parts = []
    for name, path in images.items():
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.width > max_width:
                im = im.resize((max_width, round(im.height * max_width / im.width)))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
        b64 = base64.b64encode(buf.getvalue()).decode()
        parts.append(f"**{name}**\n\n![{name}](data:image/jpeg;base64,{b64})")
    return "\n\n".join(parts)


def to_metadata(result: StageResult) -> dict[str, Any]:
    from dagster import MetadataValue

    meta: dict[str, Any] = {}
    for key, value in round_floats(result.summary).items():
        if key == "counts" and isinstance(value, dict):
            meta["counts"] = MetadataValue.md(counts_markdown(value))
        elif key == "table" and isinstance(value, str):
            meta["table"] = MetadataValue.md(value)
        elif isinstance(value, bool) or value is None:
            meta[key] = MetadataValue.text(str(value))
        elif isinstance(value, (int, float)):
            meta[key] = value
        elif isinstance(value, str):
            meta[key] = MetadataValue.text(value)
        else:
            meta[key] = MetadataValue.json(value)
    for key, path in result.outputs.items():
        meta[f"path_{key}"] = MetadataValue.path(str(path))
    if result.images:
        meta["preview"] = MetadataValue.md(image_markdown(result.images))
    return meta


def to_pipes_metadata(result: StageResult) -> dict[str, Any]:
    """The same metadata in Dagster Pipes' wire form (raw values plus a type tag)."""
    from dagster import JsonMetadataValue, MarkdownMetadataValue, PathMetadataValue

    out: dict[str, Any] = {}
    for key, value in to_metadata(result).items():
        if isinstance(value, (int, float)):
            out[key] = value
        elif isinstance(value, MarkdownMetadataValue):
            out[key] = {"raw_value": value.value, "type": "md"}
        elif isinstance(value, PathMetadataValue):
            out[key] = {"raw_value": value.value, "type": "path"}
        elif isinstance(value, JsonMetadataValue):
            out[key] = {"raw_value": value.value, "type": "json"}
        else:
            out[key] = {"raw_value": str(getattr(value, "value", value)), "type": "text"}
    return out
