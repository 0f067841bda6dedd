"""Dagster code versions and data versions of every asset, in one table.

Code version: a short hash of the source files of the library modules an asset's stage runs plus
the params.yaml sections it reads. It is computed from the files (never by importing them) when the
definitions load, so editing a module or a param marks that asset (and only that one) "code
changed" in the UI.

Data version: a short hash of the *content* of the asset's outputs, reported with every
materialization. A re-run that writes the same content reports the same version, so Dagster does
not mark what is downstream stale; changed content does. Volatile parts are left out of the hash:
run ids and times, durations and throughput (JSON keys in VOLATILE_KEYS), params.resolved.yaml
(overrides that do not change the content must not count), checkpoints and HTML pages.
Weights are hashed by their tensors (weights_fingerprint), not their file bytes.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from orchestration.config import Project

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HASH_CHARS = 16

# JSON keys whose values change from run to run without the content changing.
VOLATILE_KEYS = frozenset({
    "run", "run_time", "run_name", "created_at", "seconds", "seconds_total", "seconds_this_session",
    "images_per_s", "tokens_per_s", "tokens_per_s_mean", "latency_ms", "timing", "speed", "benchmark",
})
SKIPPED_NAMES = frozenset({"params.resolved.yaml", "checkpoints", "docs", "engines", "__pycache__"})


@dataclass(frozen=True)
class AssetVersioning:
    code: tuple[str, ...]  # library files or folders (relative to the project root) the stage runs
    sections: tuple[str, ...]  # params.yaml keys it reads ("train.presets" may be dotted); "-train.phase2" excludes one
    content: Callable[[Project, dict], list[Path]]  # outputs holding the asset's data (project, partition keys)


GLEAMC_TRAINER = ("gleam_models/train.py", "gleam_models/data.py", "gleam_models/loss.py", "gleam_models/samplers.py",
                  "gleam_models/encoder.py", "gleam_models/checkpoint.py", "gleam_models/distributed.py",
                  "gleam_models/embed.py", "gleam_models/config.py", "gleam_models/wise_ft.py", "gleam_models/recipe.py")


def _gleamc(phase: str) -> AssetVersioning:
    other = "phase2" if phase == "phase1" else "phase1"
    return AssetVersioning(GLEAMC_TRAINER, ("model", "train", f"-train.{other}", "-train.presets"),
                           lambda p, _: [p.gleamc_dir(phase) / "model.safetensors"])


def _preset_models(p: Project, _: dict) -> list[Path]:
    return [out / "model.safetensors" for out in p.gleamc_preset_runs().values()]


def _gleamx_models(p: Project, _: dict) -> list[Path]:
    return [p.models_dir / name / f for name in ("gleamx", "gleamx_label_only")
            for f in ("projector.safetensors", "adapter/adapter_model.safetensors", "gleamx.json")]


def _onnx(p: Project, _: dict) -> list[Path]:
    out = p.models_dir / "onnx"
    return sorted(f for f in out.iterdir() if f.suffix in (".onnx", ".data", ".npy")) + [out / "parity.json"] \
        if out.is_dir() else [out]


def _gleamx_slice(p: Project, partition: dict) -> list[Path]:
    """One (modality, shard) slice's files (data_assets/gleamx/generate.py names them)."""
    name = f"{partition['modality']}-{int(partition['shard']):03d}"
    return [p.gleamx_dir / "shards" / f"{name}.{kind}" for kind in ("records.jsonl", "rejects.jsonl", "report.json")]


GLEAMX_MODEL = ("gleam_models/gleamx/train.py", "gleam_models/gleamx/data.py", "gleam_models/gleamx/build.py",
                "gleam_models/gleamx/modeling.py", "gleam_models/gleamx/prompts.py", "gleam_models/gleamx/config.py",
                "gleam_models/gleamx/vlm.py", "gleam_models/gleamx/fact_probes.py")

# Asset name -> what versions it. The names are the stage names (orchestration.stages.STAGES).
VERSIONING: dict[str, AssetVersioning] = {
    "embedded_dataset": AssetVersioning(
        ("data_assets/embedded", "data_assets/registry_assets.py"), ("embedded",),
        lambda p, _: [p.embedded_dir / "manifest.csv", p.embedded_dir / "metadata.json", p.embedded_dir / "images"]),
    "ingested_manifest": AssetVersioning(
        ("data_assets/ingest", "data_assets/manifest.py"), ("ingest",), lambda p, _: [p.ingested_manifest]),
    "validated_manifest": AssetVersioning(
        ("data_assets/validation", "data_assets/manifest.py"), ("validate",),
        lambda p, _: [p.validated_manifest, p.validated_dir / "quarantine.csv", p.validated_dir / "report.json"]),
    "gleamx_records": AssetVersioning(("data_assets/gleamx",), ("gleamx",), _gleamx_slice),
    "gleamx_dataset": AssetVersioning(
        ("data_assets/gleamx",), ("gleamx",),
        lambda p, _: [p.gleamx_dir / f"{s}.jsonl" for s in ("train", "val", "test", "test_cross", "rejects")]),
    "gleamc_phase1": _gleamc("phase1"),
    "gleamc_phase2": _gleamc("phase2"),
    "gleamc_presets": AssetVersioning((*GLEAMC_TRAINER, "gleam_models/presets.py"),
                                      ("model", "train", "-train.phase1", "-train.phase2"), _preset_models),
    "gleamc_evaluation": AssetVersioning(
        ("gleam_models/evaluate.py", "gleam_models/metrics.py", "gleam_models/metrics_file.py",
         "gleam_models/figures.py", "gleam_models/embed.py", "gleam_models/encoder.py"),
        ("model", "evaluate", "train.presets"), lambda p, _: [p.gleamc_metrics]),
    "gleamx_finetune": AssetVersioning(GLEAMX_MODEL, ("gleamx_model", "gleamx_train"), _gleamx_models),
    "gleamx_evaluation": AssetVersioning(
        ("gleam_models/gleamx",), ("gleamx_model", "gleamx_train", "gleamx_eval"),
        lambda p, _: [p.metrics_dir / "gleamx.json"]),
    "gallery": AssetVersioning(
        ("export/gallery.py", "export/embedded_gallery.py", "export/georaster.py"), ("embedded", "model", "gallery"),
        lambda p, _: [p.models_dir / "gallery" / f for f in ("embeddings.npy", "tiles.csv", "gallery.json")]),
    "localization": AssetVersioning(("export/localize.py",), ("gallery",),
                                    lambda p, _: [p.metrics_dir / "localize.json"]),
    "onnx_export": AssetVersioning(
        ("export/onnx_export.py", "export/quantize.py", "export/parity.py", "export/models.py", "export/tensorrt.py"),
        ("model", "evaluate", "export"), _onnx),
    "jetson_bundle": AssetVersioning(
        ("export/bundle.py", "export/bundle_text.py", "export/runner"), ("export",),
        lambda p, _: [p.models_dir / "jetson_bundle" / "manifest.json"]),
}


# ----------------------------------------------------------------------------- code versions

def _source_files(rel: str) -> list[Path]:
    path = PROJECT_ROOT / rel
    if path.is_dir():
        return sorted(f for f in path.rglob("*.py") if "__pycache__" not in f.parts)
    return [path] if path.is_file() else []


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _param_sections(params: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    picked = {s: _lookup(params, s) for s in sections if not s.startswith("-")}
    for dotted in (s[1:] for s in sections if s.startswith("-")):
        head, _, key = dotted.partition(".")
        if isinstance(picked.get(head), dict):
            picked[head] = {k: v for k, v in picked[head].items() if k != key}
    return picked


@functools.lru_cache(maxsize=1)
def _params(params_path: Path) -> dict[str, Any]:
    import yaml

    return (yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}) if params_path.is_file() else {}


def code_version(asset: str, params_path: Path = PROJECT_ROOT / "params.yaml") -> str:
    """hash(library sources + the params sections the stage reads): cheap, no imports."""
    spec = VERSIONING[asset]
    digest = hashlib.sha256()
    for rel in spec.code:
        for f in _source_files(rel):
            digest.update(f.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    sections = _param_sections(_params(params_path), spec.sections)
    digest.update(json.dumps(sections, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:HASH_CHARS]


# ----------------------------------------------------------------------------- data versions

def _without_volatile(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_without_volatile(v) for v in obj]
    return obj


def _file_digest(path: Path) -> str:
    from data_assets.io import sha256_file, sha256_text

    if path.suffix == ".safetensors":
        from gleam_models.checkpoint import weights_fingerprint

        return weights_fingerprint(path)
    if path.suffix == ".json":
        return sha256_text(json.dumps(_without_volatile(json.loads(path.read_text(encoding="utf-8"))), sort_keys=True))
    if path.suffix == ".jsonl":
        lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return sha256_text("\n".join(json.dumps(_without_volatile(r), sort_keys=True) for r in lines))
    return sha256_file(path)


def _content_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".") and f.suffix != ".html"
                  and not SKIPPED_NAMES.intersection(f.relative_to(path).parts))


def content_version(asset: str, project: Project, partition: dict | None = None) -> str:
    """hash of what the asset wrote (see the module docstring); a missing output counts as missing.
    `partition`: the keys by dimension of a partitioned asset's run ({"modality": ..., "shard": ...})."""
    digest = hashlib.sha256()
    for out in VERSIONING[asset].content(project, partition or {}):
        files = _content_files(out)
        if not files:
            digest.update(f"{out.name}:missing\n".encode())
        for f in files:
            rel = f.relative_to(out).as_posix() if f != out else out.name
            digest.update(f"{out.name}/{rel}:{_file_digest(f)}\n".encode())
    return digest.hexdigest()[:HASH_CHARS]


def data_version(asset: str, project: Project, partition: dict | None = None):
    """The Dagster DataVersion of an asset just materialized in this process."""
    from dagster import DataVersion

    return DataVersion(content_version(asset, project, partition))
