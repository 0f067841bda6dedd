"""Recipe study: which fine-tuning options keep what pretraining knows (issue: a recipe that keeps it).

Each named variant is a set of config overrides (a lower backbone lr, layer-wise lr decay, an EMA
of the weights; see VARIANTS). For each variant and each seed, phase 1 and phase 2 are trained
with the pipeline's own trainer (gleam_models.train.train_phase, as the gleamc-phase1/2 stages do)
into the study's own work dir, never the project's models/, and the phase-2 model is evaluated
with the pipeline's evaluation (gleam_models/evaluate.py, reference metric definitions) on the
validation split and the cross-area split. The same-area test split is never evaluated here: no
choice may look at it. The table gives mean +- standard deviation over seeds of query->satellite
R@1 and AP per modality, and the mean R@1 over modalities.

    .venv/bin/python benchmarks/recipe_study.py                                  # every variant, seeds 0 1 2
    .venv/bin/python benchmarks/recipe_study.py --variants baseline --seeds 0    # one chunk
    .venv/bin/python benchmarks/recipe_study.py --define bb0.1_ema0.99 train.phase1.backbone_lr_scale=0.1 \\
        train.phase2.backbone_lr_scale=0.1 train.phase1.ema_decay=0.99 train.phase2.ema_decay=0.99

Each call trains and evaluates the (variant, seed) pairs it is given, one at a time, merging each
into --out as soon as it is measured (a long study runs in chunks; a kill loses one pair at most,
and training itself resumes from its checkpoints). A pair already in --out for the same manifest
and the same resolved model/train config is skipped; entries of another manifest are dropped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from data_assets.errors import ConfigError, GleamError
from data_assets.io import read_json, sha256_file, sha256_text, write_json
from gleam_models.evaluate import Run, evaluate_runs
from gleam_models.train import train_phase
from orchestration.config import load_project

STUDY_SPLITS = ("val", "test_cross")  # never "test": it decides nothing
DIRECTION = "query_to_satellite"
METRICS = ("R@1", "AP")


def both_phases(**options) -> dict:
    return {f"train.{phase}.{key}": value for phase in ("phase1", "phase2") for key, value in options.items()}


# phase 1 has 192 steps and phase 2 64 on the embedded default: an EMA decay d averages about
# 1 / (1 - d) steps, so 0.999 (1000 steps) would stay near each phase's first steps
# Each variant spells its whole recipe, so a variant means the same whatever params.yaml's defaults
# are (the study chose layer_decay 0.75 as the default; "baseline" is the recipe without options).
PLAIN = {"backbone_lr_scale": 1.0, "layer_decay": None, "ema_decay": None}
VARIANTS: dict[str, dict] = {
    "baseline": both_phases(**PLAIN),
    "backbone_lr_0.1": both_phases(**{**PLAIN, "backbone_lr_scale": 0.1}),
    "llrd_0.75": both_phases(**{**PLAIN, "layer_decay": 0.75}),
    "ema_0.99": both_phases(**{**PLAIN, "ema_decay": 0.99}),
    # the backbone before EfficientNet-Lite0 became the default (README, backbone study)
    "mobilenetv2": {"model.backbone": "mobilenetv2_100", "model.weights": "registry:mobilenet_v2", **both_phases(**PLAIN)},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: $GLEAM_PARAMS or ./params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override KEY=VALUE for every variant (e.g. a faster config)")
    parser.add_argument("--variants", nargs="+", default=None, help=f"default: all of {list(VARIANTS)} and --define's")
    parser.add_argument("--define", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                        help="an extra variant: its name, then its overrides")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/benchmarks/recipe.json")
    parser.add_argument("--work-dir", type=Path, default=None, help="trained models (default: <cache_dir>/recipe_study)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded images (default: <cache_dir>/images)")
    return parser.parse_args(argv)


def variant_table(defines: list[list[str]]) -> dict[str, dict]:
    variants = dict(VARIANTS)
    for name, *overrides in defines:
        pairs = [o.partition("=") for o in overrides]
        if any(not sep or not key for key, sep, _ in pairs):
            raise ConfigError(f"--define {name}: overrides must be KEY=VALUE, got {overrides}")
        variants[name] = {key: value for key, _, value in pairs}  # values stay text: YAML-read by load_project
    return variants


def override_texts(overrides: dict) -> list[str]:
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


def run_pair(project, name: str, seed: int, work_dir: Path, cache_dir: Path) -> dict:
    """Train phase 1 + phase 2 of one (variant, seed) into work_dir, evaluate phase 2; the study entry."""
    cfg, start = project.cfg, time.perf_counter()
    out = work_dir / name / f"seed{seed}"
    summaries = train_both_phases(project, out, cache_dir)
    model = out / "phase2" / "model.safetensors"
    eval_cfg = cfg.evaluate.model_copy(update={"splits": list(STUDY_SPLITS), "figure_rows": 0,
                                               "directions": [DIRECTION]})
    runs = {"phase2": Run.from_checkpoint(cfg.model, model, cache_dir)}
    doc = evaluate_runs(project.validated_manifest, project.root, runs, eval_cfg, out / "metrics.json", out / "figures")
    splits = {split: {mod: {m: by_dir[DIRECTION][m] for m in (*METRICS, "n_queries")} for mod, by_dir in cells.items()}
              for split, cells in doc["runs"]["phase2"]["splits"].items()}
    return {"config": config_key(project), "weights": doc["runs"]["phase2"]["weights"], "splits": splits,
            "training": {phase: {k: s.get(k) for k in ("fingerprint", "steps", "final_loss", "seconds")}
                         for phase, s in summaries.items()},
            "wall_s": round(time.perf_counter() - start, 1)}


def train_both_phases(project, out: Path, cache_dir: Path) -> dict:
    """Phase 1, then phase 2 from its weights, into out/phase1 and out/phase2 (as the gleamc-phase1/2
    stages train them; a finished phase is reused); {phase: train_phase's summary}."""
    cfg, summaries = project.cfg, {}
    for phase in ("phase1", "phase2"):
        init = out / "phase1" / "model.safetensors" if phase == "phase2" else None
        summaries[phase] = train_phase(cfg.model, cfg.train, phase, project.validated_manifest, base_dir=project.root,
                                       out_dir=out / phase, cache_dir=cache_dir, init_checkpoint=init)
    return summaries


def config_key(project) -> str:
    """What a trained pair depends on besides the manifest: the resolved model and train sections."""
    blob = {"model": project.cfg.model.model_dump(mode="json"), "train": project.cfg.train.model_dump(mode="json")}
    for volatile in ("progress", "log_every_steps", "keep_checkpoints", "presets"):  # presets: not trained here
        blob["train"].pop(volatile, None)
    return sha256_text(json.dumps(blob, sort_keys=True))[:16]


def empty_study(manifest_sha: str, previous: dict | None) -> dict:
    if previous and previous.get("manifest_sha256") == manifest_sha:
        return previous
    return {"format": 1, "manifest_sha256": manifest_sha, "splits": list(STUDY_SPLITS), "direction": DIRECTION,
            "variants": {}}


def add_entry(study: dict, name: str, overrides: dict, seed: int, entry: dict, base_overrides: list[str]) -> None:
    variant = study["variants"].setdefault(name, {"overrides": overrides, "seeds": {}})
    variant.update(overrides=overrides, base_overrides=base_overrides)
    variant["seeds"][str(seed)] = entry
    variant["seeds"] = dict(sorted(variant["seeds"].items(), key=lambda kv: int(kv[0])))
    variant["summary"] = summarize(variant["seeds"])


def summarize(seeds: dict) -> dict:
    """{split: {modality | "mean": {metric: [mean, std over seeds, n]}}}; "mean" averages the modalities."""
    out: dict = {}
    for split in STUDY_SPLITS:
        cells = [entry["splits"][split] for entry in seeds.values() if split in entry["splits"]]
        if not cells:
            continue
        mods = list(dict.fromkeys(m for c in cells for m in c))
        rows = {m: {k: [c[m][k] for c in cells if m in c] for k in METRICS} for m in mods}
        rows["mean"] = {k: [statistics.fmean(c[m][k] for m in c) for c in cells] for k in METRICS}
        out[split] = {m: {k: spread(v) for k, v in by_metric.items()} for m, by_metric in rows.items()}
    return out


def spread(values: list[float]) -> list[float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return [round(statistics.fmean(values), 2), round(std, 2), len(values)]


def table(study: dict) -> str:
    mods = list(dict.fromkeys(m for v in study["variants"].values() for s in v["summary"].values() for m in s
                              if m != "mean"))
    lines = ["| variant | split | seeds | " + " | ".join(f"{m} R@1 / AP" for m in mods) + " | mean R@1 | wall s |",
             "|" + " --- |" * (len(mods) + 5)]
    for split in STUDY_SPLITS:
        for name, variant in study["variants"].items():
            rows = variant["summary"].get(split)
            if rows is None:
                continue
            cells = [f"{fmt(rows[m]['R@1'])} / {fmt(rows[m]['AP'])}" if m in rows else "-" for m in mods]
            wall = statistics.fmean(e["wall_s"] for e in variant["seeds"].values())
            lines.append(f"| {name} | {split} | {','.join(variant['seeds'])} | " + " | ".join(cells)
                         + f" | {fmt(rows['mean']['R@1'])} | {wall:.0f} |")
    return "\n".join(lines)


def fmt(cell: list[float]) -> str:
    mean, std, n = cell
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        variants = variant_table(args.define)
        names = args.variants or list(variants)
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ConfigError(f"--variants: unknown {unknown}; known: {list(variants)} (or add one with --define)")
        base = load_project(args.params, args.overrides)
        out = args.out or base.reports_dir / "benchmarks" / "recipe.json"
        work_dir = args.work_dir or base.cache_dir / "recipe_study"
        cache_dir = args.cache_dir or base.cache_dir / "images"
        study = empty_study(sha256_file(base.validated_manifest), read_json(out) if out.is_file() else None)
        for name in names:
            for seed in dict.fromkeys(args.seeds):
                project = load_project(args.params, [*args.overrides, *override_texts(variants[name]),
                                                     f"train.seed={seed}"])
                done = study["variants"].get(name, {}).get("seeds", {}).get(str(seed))
                if done is not None and done["config"] == config_key(project):
                    print(f"{name} seed {seed}: already measured, skipped", file=sys.stderr)
                    continue
                entry = run_pair(project, name, seed, work_dir, cache_dir)
                add_entry(study, name, variants[name], seed, entry, args.overrides)
                write_json(out, study)
                print(f"{name} seed {seed}: {entry['wall_s']} s", file=sys.stderr)
    except GleamError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table(study))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
