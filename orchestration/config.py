"""The one config: `params.yaml`, read through a typed schema, with dotted-key overrides.

Every library package owns the section it consumes; this module only composes them, applies
overrides (`train.phase1.lr=3e-4`, the same syntax from the CLI and from Dagster's launchpad),
and knows where each stage writes. DVC reads the same file for its `params:` lists.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import Field, ValidationError

from data_assets.embedded.config import EmbeddedConfig
from data_assets.errors import ConfigError
from data_assets.gleamx.config import GleamXDataConfig
from data_assets.ingest.config import IngestConfig
from data_assets.io import write_text
from data_assets.locks import LockConfig
from data_assets.settings import Section
from data_assets.validation.config import ValidateConfig
from export.config import ExportConfig
from export.gallery import GalleryConfig
from gleam_models.config import EncoderConfig, EvalConfig, TrainConfig
from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig
from gleam_models.gleamx.eval_config import GleamXEvalConfig

DEFAULT_PARAMS = "params.yaml"


class PathsConfig(Section):
    data_dir: str = "data"  # datasets and manifests the pipeline writes (DVC-tracked)
    models_dir: str = "models"  # checkpoints (DVC-tracked)
    metrics_dir: str = "metrics"  # small JSON metrics, committed to git for `dvc metrics diff`
    reports_dir: str = "reports"  # pictures and human-readable reports
    cache_dir: str = ".cache"  # caches that survive `dvc repro` (teacher answers, decoded images)


class LaunchConfig(Section):
    nproc_per_node: int = Field(default=1, ge=1)  # training processes on this machine; > 1 = DDP via torchrun
    # extra torchrun flags for several nodes, e.g. ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=host:29400"]
    torchrun_args: list[str] = []


class GleamConfig(Section):
    paths: PathsConfig = PathsConfig()
    embedded: EmbeddedConfig = EmbeddedConfig()
    ingest: IngestConfig
    # `validate` would shadow a pydantic method, hence the alias; params.yaml says `validate:`.
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    gleamx: GleamXDataConfig = GleamXDataConfig()
    model: EncoderConfig = EncoderConfig()
    train: TrainConfig = TrainConfig()
    launch: LaunchConfig = LaunchConfig()
    evaluate: EvalConfig = EvalConfig()
    gleamx_model: GleamXModelConfig = GleamXModelConfig()
    gleamx_train: GleamXTrainConfig = GleamXTrainConfig()
    locks: LockConfig = LockConfig()
    gallery: GalleryConfig = GalleryConfig()
    export: ExportConfig = ExportConfig()
    gleamx_eval: GleamXEvalConfig = GleamXEvalConfig()

    model_config = {**Section.model_config, "populate_by_name": True}

    def to_params(self) -> dict[str, Any]:
        """The config as params.yaml would spell it."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class Project:
    """A loaded config plus where it lives; every stage output path is derived here, once."""

    cfg: GleamConfig
    root: Path  # directory of params.yaml; relative paths in the config start here
    params_path: Path
    overrides: tuple[str, ...] = field(default=())

    def path(self, p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() else self.root / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.cfg.paths.data_dir)

    @property
    def models_dir(self) -> Path:
        return self.path(self.cfg.paths.models_dir)

    @property
    def metrics_dir(self) -> Path:
        return self.path(self.cfg.paths.metrics_dir)

    @property
    def reports_dir(self) -> Path:
        return self.path(self.cfg.paths.reports_dir)

    @property
    def cache_dir(self) -> Path:
        return self.path(self.cfg.paths.cache_dir)

    # -- stage outputs (the same paths dvc.yaml declares) --
    @property
    def embedded_dir(self) -> Path:
        return self.data_dir / "embedded"

    @property
    def ingested_dir(self) -> Path:
        return self.data_dir / "ingested"

    @property
    def validated_dir(self) -> Path:
        return self.data_dir / "validated"

    @property
    def ingested_manifest(self) -> Path:
        return self.ingested_dir / "manifest.parquet"

    @property
    def validated_manifest(self) -> Path:
        return self.validated_dir / "manifest.parquet"

    def gleamc_dir(self, phase: str) -> Path:
        return self.models_dir / f"gleamc_{phase}"

    @property
    def gleamc_presets_dir(self) -> Path:  # <name>/phase1, <name>/phase2 per train.presets entry
        return self.models_dir / "gleamc_presets"

    def gleamc_preset_runs(self) -> dict[str, Path]:
        """<preset>_<phase> -> that phase's output folder, for every train.presets entry."""
        return {f"{name}_{phase}": self.gleamc_presets_dir / name / phase
                for name in self.cfg.train.presets for phase in ("phase1", "phase2")}

    @property
    def gleamc_metrics(self) -> Path:
        return self.metrics_dir / "gleamc.json"

    @property
    def gleamc_figures_dir(self) -> Path:
        return self.reports_dir / "gleamc"

    @property
    def gleamx_dir(self) -> Path:
        return self.data_dir / "gleamx"

    @property
    def gleamx_revised_dir(self) -> Path:
        return self.data_dir / "gleamx_revised"

    def fingerprint(self, sections: Iterable[str] | None = None) -> str:
        """Hash of the resolved config, or of some of its sections only."""
        params = self.cfg.to_params()
        if sections is not None:
            params = {k: params[k] for k in sections}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]

    def save_resolved(self, out_dir: Path, sections: Iterable[str] | None = None) -> Path:
        """Write the fully resolved config next to a stage's output (all sections by default)."""
        params = self.cfg.to_params()
        if sections is not None:
            params = {k: params[k] for k in ["paths", *sections]}
        from data_assets.io import relative_path

        doc = {  # nothing machine-specific: the file is part of a DVC output, the same in every clone
            "params_file": relative_path(self.params_path, self.root),
            "overrides": list(self.overrides),
            # of the sections written only: a change elsewhere in params.yaml leaves this output's bytes alone
            "config_fingerprint": self.fingerprint(list(params)),
            "params": params,
        }
        target = Path(out_dir) / "params.resolved.yaml"
        write_text(target, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return target


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a","b","c"], value), the value read as a YAML scalar or list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. train.phase1.lr=3e-4")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 - SafeLoader
    except (yaml.YAMLError, DuplicateKey) as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = out
        for i, k in enumerate(keys[:-1]):
            where = ".".join(keys[: i + 1])
            if isinstance(node, list):
                node = _list_item(node, k, text, where)
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {where} is not a section")
            node = node.setdefault(k, {})
        last = keys[-1]
        if isinstance(node, list):
            _list_item(node, last, text, ".".join(keys))
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:-1])} is not a section")
    return out


def _list_item(node: list, k: str, text: str, where: str) -> Any:
    if not k.isdigit() or int(k) >= len(node):
        raise ConfigError(f"override {text!r}: {where} is not an index of a list of {len(node)}")
    return node[int(k)]


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join("validate" if p == "validate_" else str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see params.yaml for the valid keys)"
        elif "input" in e and e["type"] != "missing":
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return f"{origin}: invalid config\n" + "\n".join(lines)


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base loader reports it
                continue
            if first is not key_node:
                raise DuplicateKey(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice (first on "
                                   f"line {first.start_mark.line + 1}); keep one")
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(Exception):
    pass


def read_yaml(path: Path) -> Any:
    """A YAML file as data; ConfigError naming the file for bad encoding, syntax or duplicate keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKey as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None


def load_project(params: str | Path | None = None, overrides: Iterable[str] = ()) -> Project:
    """Read params.yaml (or $GLEAM_PARAMS), apply overrides, validate. Raises ConfigError."""
    params_path = Path(params or os.environ.get("GLEAM_PARAMS") or DEFAULT_PARAMS).resolve()
    if not params_path.is_file():
        raise ConfigError(f"{params_path}: config file not found (pass --params or set GLEAM_PARAMS)")
    raw = read_yaml(params_path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{params_path}: top level must be a mapping of sections")
    overrides = tuple(overrides)
    merged = apply_overrides(raw, overrides)
    try:
        cfg = GleamConfig(**merged)
    except ValidationError as e:
        origin = str(params_path) + (f" with overrides {list(overrides)}" if overrides else "")
        raise ConfigError(format_validation_error(e, origin)) from None
    return Project(cfg=cfg, root=params_path.parent, params_path=params_path, overrides=overrides)
