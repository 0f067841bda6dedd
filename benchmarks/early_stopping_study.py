"""Early-stopping study: is there an epoch, chosen on the validation split, at which stopping helps
cross-area retrieval (issue: a recipe that keeps what pretraining knows)?

Per seed, phase 1 and phase 2 are trained with the config's recipe (recipe_study.train_both_phases,
as the gleamc-phase1/2 stages train them) into the study's own work dir, never the project's
models/, keeping the checkpoint of every epoch. Each epoch's checkpoint is turned into the model the
phase would have written had it stopped there: the EMA of the weights where `ema_decay` is set, then
mixed with `model.weights` where `wise_ft_alpha` is set (the checkpoints keep the raw trained
weights; the trainer applies both to its final model only). Epoch 0 is the phase's starting point:
the frozen ImageNet encoder for phase 1, phase 1's model (WiSE-mixed as phase 2 would mix it) for
phase 2. Every epoch's model is evaluated with the pipeline's evaluation on the validation split and
the cross-area split, never the same-area test split: no choice may look at it.

The early-stopped result of a seed is the epoch with the best mean query->satellite R@1 over
modalities on val (ties: mean AP, then the earlier epoch; epoch 0 = the phase left untrained), read
on test_cross beside the last epoch's figures.

    .venv/bin/python benchmarks/early_stopping_study.py                 # seeds 0 1
    .venv/bin/python benchmarks/early_stopping_study.py --seeds 2       # one more chunk
    .venv/bin/python benchmarks/early_stopping_study.py --set train.phase1.epochs=10   # a longer run to stop early

Each seed is merged into --out as soon as it is measured (training resumes from its checkpoints);
a seed already in --out for the same manifest and resolved model/train config is skipped, and a
study of another manifest or config starts again.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from data_assets.errors import DataError, GleamError
from data_assets.io import atomic_path, read_json, sha256_file, write_json
from gleam_models.checkpoint import list_checkpoints, weights_fingerprint
from gleam_models.encoder import read_checkpoint
from gleam_models.evaluate import Run, evaluate_runs
from gleam_models.recipe import ema_path
from gleam_models.safetensors_io import save_file
from gleam_models.wise_ft import write_wise_ft_model
from orchestration.config import load_project
from recipe_study import DIRECTION, METRICS, STUDY_SPLITS, config_key, fmt, summarize, train_both_phases

PHASES = ("phase1", "phase2")
KEEP_EVERY_CHECKPOINT = 1_000_000  # train.keep_checkpoints: prune none (one per epoch is kept by default)
RULE = "max val mean query->satellite R@1 over epochs 0..E (0 = phase untrained); ties: val mean AP, then earlier"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=None,
                        help="params.yaml (default: $GLEAM_PARAMS or ./params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/benchmarks/early_stopping.json")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="trained models and epoch models (default: <cache_dir>/early_stopping_study)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded images (default: <cache_dir>/images)")
    return parser.parse_args(argv)


def seed_project(args: argparse.Namespace, seed: int):
    return load_project(args.params, [*args.overrides, f"train.keep_checkpoints={KEEP_EVERY_CHECKPOINT}",
                                      f"train.seed={seed}"])


def epoch_checkpoints(phase_dir: Path, fingerprint: str, epochs: int) -> dict[int, Path]:
    """{epoch: checkpoint dir written at that epoch's end} of the finished run `fingerprint`."""
    ckpt_root = phase_dir / "checkpoints" / fingerprint
    found = {}
    for ckpt in list_checkpoints(ckpt_root):
        state = read_json(ckpt / "state.json")
        if state.get("epoch_done"):
            found[int(state["epoch"])] = ckpt
    missing = [e for e in range(1, epochs + 1) if e not in found]
    if missing:
        raise DataError(ckpt_root, f"no checkpoint of epochs {missing} (this run was trained with fewer "
                                   f"train.keep_checkpoints); delete {phase_dir} to train it again")
    return {e: found[e] for e in range(1, epochs + 1)}


def delivered_model(model_cfg, pcfg, weights: Path, out: Path, ema: Path | None = None) -> Path:
    """The model file the phase writes from these trained weights: their EMA (where ema_decay is set
    and `ema` is given), then WiSE-FT-mixed with model.weights (where wise_ft_alpha is set)."""
    if pcfg.ema_decay is not None and ema is not None:
        ema_state, meta = read_checkpoint(ema)[0], read_checkpoint(weights)[1]
        with atomic_path(out.with_suffix(".ema.safetensors")) as tmp:
            save_file(ema_state, tmp, metadata=meta)
        weights = out.with_suffix(".ema.safetensors")
    if pcfg.wise_ft_alpha is None:
        return weights
    write_wise_ft_model(model_cfg, weights, pcfg.wise_ft_alpha, out)
    return out


def epoch_models(project, out: Path, summaries: dict) -> tuple[dict[str, dict[int, Path | None]], dict[str, bool]]:
    """{phase: {epoch: model file (None = the frozen ImageNet encoder)}} and, per phase, whether the
    last epoch's model has the weights of the phase's own model.safetensors (the derivation's check)."""
    cfg, models, matches = project.cfg, {}, {}
    for phase in PHASES:
        pcfg, phase_dir = getattr(cfg.train, phase), out / phase
        made = phase_dir / "epoch_models"
        start = None if phase == "phase1" else delivered_model(cfg.model, pcfg, out / "phase1" / "model.safetensors",
                                                                 made / "epoch-000.safetensors")
        models[phase] = {0: start}
        for epoch, ckpt in epoch_checkpoints(phase_dir, summaries[phase]["fingerprint"], pcfg.epochs).items():
            models[phase][epoch] = delivered_model(cfg.model, pcfg, ckpt / "model.safetensors",
                                                   made / f"epoch-{epoch:03d}.safetensors", ema_path(ckpt))
        last = models[phase][pcfg.epochs]
        matches[phase] = last is not None and weights_fingerprint(last) == weights_fingerprint(
            phase_dir / "model.safetensors")
    return models, matches


def run_seed(project, out: Path, cache_dir: Path) -> dict:
    """Train both phases of one seed, evaluate every epoch's model; the study entry."""
    cfg, start = project.cfg, time.perf_counter()
    summaries = train_both_phases(project, out, cache_dir)
    models, matches = epoch_models(project, out, summaries)
    runs, names = {}, {}  # one run per distinct weights (phase 2's epoch 0 may be phase 1's last epoch)
    for phase, by_epoch in models.items():
        for epoch, path in by_epoch.items():
            run = Run.from_checkpoint(cfg.model, path, cache_dir)
            same = [name for name, seen in runs.items() if seen.weights == run.weights]
            names[phase, epoch] = same[0] if same else f"{phase}_epoch{epoch}"
            runs.setdefault(names[phase, epoch], run)
    eval_cfg = cfg.evaluate.model_copy(update={"splits": list(STUDY_SPLITS), "figure_rows": 0,
                                               "directions": [DIRECTION]})
    doc = evaluate_runs(project.validated_manifest, project.root, runs, eval_cfg, out / "metrics.json", out / "figures")

    def measured(run: str) -> dict:
        splits = {split: {mod: {m: by_dir[DIRECTION][m] for m in (*METRICS, "n_queries")} for mod, by_dir in mods.items()}
                  for split, mods in doc["runs"][run]["splits"].items()}
        return {"weights": doc["runs"][run]["weights"], "splits": splits}

    phases = {phase: {"last_epoch_is_final": matches[phase],
                      "epochs": {str(e): measured(names[phase, e]) for e in by_epoch}}
              for phase, by_epoch in models.items()}
    return {"config": config_key(project), "phases": phases,
            "training": {phase: {k: s.get(k) for k in ("fingerprint", "steps", "epochs", "final_loss", "seconds")}
                         for phase, s in summaries.items()},
            "wall_s": round(time.perf_counter() - start, 1)}


def mean_over_modalities(split_cells: dict, metric: str) -> float:
    return statistics.fmean(c[metric] for c in split_cells.values())


def pick_epoch(epochs: dict) -> str:
    """The epoch the validation split picks (RULE)."""
    return min(epochs, key=lambda e: (-mean_over_modalities(epochs[e]["splits"]["val"], "R@1"),
                                      -mean_over_modalities(epochs[e]["splits"]["val"], "AP"), int(e)))


def difference(a: dict, b: dict) -> dict:
    """Cell-wise a - b of two epochs' splits (the metrics; n_queries from a)."""
    return {split: {mod: {**cell, **{m: cell[m] - b[split][mod][m] for m in METRICS}} for mod, cell in mods.items()}
            for split, mods in a.items()}


def summarize_phase(seeds: dict, phase: str) -> dict:
    """Per epoch, and for the val-picked / last epoch and their difference: recipe_study.summarize's
    {split: {modality | "mean": {metric: [mean, std, n]}}} over seeds."""
    per_seed = {s: e["phases"][phase]["epochs"] for s, e in seeds.items()}
    epochs = sorted({ep for eps in per_seed.values() for ep in eps}, key=int)
    picked = {s: pick_epoch(eps) for s, eps in per_seed.items()}
    last = {s: max(eps, key=int) for s, eps in per_seed.items()}
    return {"epochs": {ep: summarize({s: eps[ep] for s, eps in per_seed.items() if ep in eps}) for ep in epochs},
            "rule": RULE, "picked_epochs": picked,
            "picked": summarize({s: per_seed[s][picked[s]] for s in per_seed}),
            "last": summarize({s: per_seed[s][last[s]] for s in per_seed}),
            "picked_minus_last": summarize({s: {"splits": difference(per_seed[s][picked[s]]["splits"],
                                                                     per_seed[s][last[s]]["splits"])}
                                            for s in per_seed})}


def add_seed(study: dict, seed: int, entry: dict) -> None:
    study["seeds"][str(seed)] = entry
    study["seeds"] = dict(sorted(study["seeds"].items(), key=lambda kv: int(kv[0])))
    study["summary"] = {phase: summarize_phase(study["seeds"], phase) for phase in PHASES}


def empty_study(previous: dict | None, manifest_sha: str, shared_config: str, base_overrides: list[str]) -> dict:
    """The previous study where it measured the same manifest and config (seed aside), else a new one."""
    if previous and previous.get("manifest_sha256") == manifest_sha and previous.get("config") == shared_config:
        return previous
    return {"format": 1, "manifest_sha256": manifest_sha, "config": shared_config, "base_overrides": base_overrides,
            "splits": list(STUDY_SPLITS), "direction": DIRECTION, "seeds": {}, "summary": {}}


def print_tables(study: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220)
    for phase, summary in study["summary"].items():
        mods = [m for m in next(iter(summary["epochs"].values()))["test_cross"] if m != "mean"]
        table = Table(title=f"{phase}: query->satellite R@1 / AP per epoch, mean ± std over seeds "
                            f"{','.join(study['seeds'])} (epoch 0 = phase untrained)")
        for col in ("epoch", "val mean R@1 / AP", *(f"test_cross {m}" for m in mods), "test_cross mean R@1 / AP"):
            table.add_column(col)
        picked = ",".join(f"s{s}:{e}" for s, e in summary["picked_epochs"].items())
        rows = [*summary["epochs"].items(), (f"val-picked ({picked})", summary["picked"]), ("last", summary["last"]),
                ("picked - last", summary["picked_minus_last"])]
        for i, (label, cells) in enumerate(rows):
            val, cross = cells["val"], cells["test_cross"]
            table.add_row(str(label), f"{fmt(val['mean']['R@1'])} / {fmt(val['mean']['AP'])}",
                          *(f"{fmt(cross[m]['R@1'])} / {fmt(cross[m]['AP'])}" if m in cross else "-" for m in mods),
                          f"{fmt(cross['mean']['R@1'])} / {fmt(cross['mean']['AP'])}",
                          end_section=i == len(summary["epochs"]) - 1)
        console.print(table)
    for seed, entry in study["seeds"].items():
        checks = {p: entry["phases"][p]["last_epoch_is_final"] for p in PHASES}
        steps = "/".join(str(entry["training"][p]["steps"]) for p in PHASES)
        console.print(f"seed {seed}: steps phase 1/2 {steps}, {entry['wall_s']:.0f} s (train + evaluate; a phase "
                      f"found trained counts 0); last epoch = the phase's model: {checks}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        base = seed_project(args, 0)
        out = args.out or base.reports_dir / "benchmarks" / "early_stopping.json"
        work_dir = args.work_dir or base.cache_dir / "early_stopping_study"
        cache_dir = args.cache_dir or base.cache_dir / "images"
        study = empty_study(read_json(out) if out.is_file() else None, sha256_file(base.validated_manifest),
                            config_key(base), args.overrides)
        for seed in dict.fromkeys(args.seeds):
            project = seed_project(args, seed)
            done = study["seeds"].get(str(seed))
            if done is not None and done["config"] == config_key(project):
                print(f"seed {seed}: already measured, skipped", file=sys.stderr)
                continue
            entry = run_seed(project, work_dir / f"seed{seed}", cache_dir)
            add_seed(study, seed, entry)
            write_json(out, study)
            print(f"seed {seed}: {entry['wall_s']} s", file=sys.stderr)
    except GleamError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if study["seeds"]:
        print_tables(study)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
