"""Footprint study: how the ground footprint of the embedded dataset's tiles changes what transfers.

Each variant scales the tile side of both embedded families (`embedded.neon_tile_m`, UAV, 32 m by
default; `embedded.spacenet_tile_m`, street maps, 36 m) together with what is measured in tiles:
the train tile step (`*_stride_m`) and the split-block side (`*_block_m`), so that train overlap
and the share of ground held out stay as at the default. For each footprint the embedded dataset is
built, ingested and validated by the pipeline's own stages into the study's work dir (never the
project's data/ or models/), once for every seed; per seed, phase 1 and phase 2 are trained with
the config's recipe (recipe_study.train_both_phases) and three runs are evaluated on the validation
split and the cross-area split (never the same-area test split): the frozen ImageNet encoder,
phase 1 and phase 2. Galleries shrink as tiles grow (the same ground holds fewer tiles), so
figures of two footprints are not comparable as they are; the gain of phase 2 over the frozen
encoder on the same gallery is.

    .venv/bin/python benchmarks/footprint_study.py                         # scales 1 1.5 2, seeds 0 1
    .venv/bin/python benchmarks/footprint_study.py --scales 1.5 --seeds 0  # one chunk

Each (footprint, seed) is merged into --out as soon as it is measured (a kill loses one at most;
training resumes from its checkpoints, and a finished dataset build is found again by its
fingerprint). A pair already in --out for the same manifest and resolved model/train config is
skipped; a footprint whose manifest changed starts again.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from data_assets.errors import ConfigError, GleamError
from data_assets.io import read_json, sha256_file, write_json
from gleam_models.evaluate import Run, evaluate_runs
from orchestration.config import load_project
from orchestration.stages import STAGES, require_passed
from recipe_study import DIRECTION, METRICS, STUDY_SPLITS, config_key, fmt, summarize, train_both_phases

RUNS = ("imagenet_frozen", "phase1", "phase2")
FAMILIES = ("neon", "spacenet")  # neon: UAV queries; spacenet: street-map queries
SCALED = ("tile_m", "stride_m", "block_m")  # each family's keys measured in metres
DATASET_STAGES = ("embedded_dataset", "ingested_manifest", "validated_manifest")
# The validation gate asks for 10 pairs per modality and split, which the default footprint just
# meets (12 street-map pairs in val); the same ground cut into bigger tiles fails it (1.5x: 6
# street-map pairs in val; 2x: 2, and a 4-tile val gallery). The table shows every gallery and
# query count and the chance R@1, so small cells are seen for what they are (--set overrides).
STUDY_OVERRIDES = ["validate.min_pairs_per_modality=1"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: $GLEAM_PARAMS or ./params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override KEY=VALUE for every footprint (e.g. a faster config)")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.5, 2.0],
                        help="footprints as multiples of the configured tile sides (default: 1 1.5 2)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/benchmarks/footprint.json")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="datasets and trained models (default: <cache_dir>/footprint_study)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded images (default: <cache_dir>/images)")
    return parser.parse_args(argv)


def footprint_overrides(base, scale: float) -> dict[str, float]:
    """The embedded keys of one footprint: every metre key of both families times `scale`."""
    if scale <= 0:
        raise ConfigError(f"--scales: {scale:g} must be > 0")
    emb = base.cfg.embedded
    return {f"embedded.{fam}_{key}": round(getattr(emb, f"{fam}_{key}") * scale, 3)
            for fam in FAMILIES for key in SCALED}


def footprint_name(footprint: dict[str, float]) -> str:
    return "_".join(f"{fam}{footprint[f'embedded.{fam}_tile_m']:g}m" for fam in FAMILIES)


def footprint_project(args, footprint: dict[str, float], fp_dir: Path, seed: int | None = None):
    """The project of one footprint: its own data, models, metrics, reports and caches under
    fp_dir, ingesting only the embedded dataset built there."""
    source = [{"adapter": "manifest", "root": str(fp_dir / "data" / "embedded"), "name": "embedded"}]
    paths = {"data_dir": "data", "models_dir": "models", "metrics_dir": "metrics", "reports_dir": "reports",
             "cache_dir": "cache"}
    overrides = [*STUDY_OVERRIDES, *(f"paths.{k}={json.dumps(str(fp_dir / v))}" for k, v in paths.items()),
                 f"ingest.sources={json.dumps(source)}", *args.overrides,
                 *(f"{k}={v}" for k, v in footprint.items())]
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    return load_project(args.params, overrides)


def build_dataset(project) -> dict:
    """Embedded build, ingest and validation of one footprint; each stage's wall time and the
    split sizes. The build finds its previous output by fingerprint; ingest and validation redo
    their (cached) hashing and decoding and write the same bytes."""
    seconds, results = {}, {}
    for name in DATASET_STAGES:
        start = time.perf_counter()
        results[name] = require_passed(STAGES[name](project))
        seconds[name] = round(time.perf_counter() - start, 1)
    meta = read_json(project.embedded_dir / "metadata.json")
    return {"config": dataset_key(project), "manifest_sha256": sha256_file(project.validated_manifest),
            "fingerprint": meta["fingerprint"],
            "build_cached": bool(results["embedded_dataset"].summary.get("cached")), "seconds": seconds,
            "locations": {k: v for k, v in meta["locations"].items() if isinstance(v, int)},
            # uav queries come from NEON tiles, street maps from SpaceNet ones
            "locations_per_modality": meta["locations"]["per_modality"]}


def dataset_key(project) -> str:
    """What a footprint's dataset depends on: the resolved embedded and validate sections."""
    return project.fingerprint(["embedded", "validate"])


def run_seed(project, seed_dir: Path, cache_dir: Path) -> dict:
    """Train both phases into seed_dir, evaluate the frozen encoder and both phases; the seed entry."""
    start, cfg = time.perf_counter(), project.cfg
    summaries = train_both_phases(project, seed_dir, cache_dir)
    checkpoints = {"imagenet_frozen": None, "phase1": seed_dir / "phase1" / "model.safetensors",
                   "phase2": seed_dir / "phase2" / "model.safetensors"}
    runs = {name: Run.from_checkpoint(cfg.model, ckpt, cache_dir) for name, ckpt in checkpoints.items()}
    eval_cfg = cfg.evaluate.model_copy(update={"splits": list(STUDY_SPLITS), "figure_rows": 0,
                                               "directions": [DIRECTION]})
    doc = evaluate_runs(project.validated_manifest, project.root, runs, eval_cfg, seed_dir / "metrics.json",
                        seed_dir / "figures")
    return {"config": config_key(project), "runs": {run: study_cells(doc["runs"][run]) for run in RUNS},
            "training": {phase: {k: s.get(k) for k in ("fingerprint", "steps", "final_loss", "seconds")}
                         for phase, s in summaries.items()},
            "wall_s": round(time.perf_counter() - start, 1)}


def study_cells(run_doc: dict) -> dict:
    """One run of evaluate_runs' document, cut to the study's direction and figures."""
    keep = (*METRICS, "n_queries", "n_gallery")
    return {"weights": run_doc["weights"],
            "splits": {split: {mod: {m: by_dir[DIRECTION][m] for m in keep} for mod, by_dir in cells.items()}
                       for split, cells in run_doc["splits"].items()}}


def gain_entry(entry: dict) -> dict:
    """phase 2 minus the frozen encoder, cell by cell, in the shape summarize() reads."""
    frozen, tuned = entry["runs"]["imagenet_frozen"]["splits"], entry["runs"]["phase2"]["splits"]
    return {"splits": {split: {mod: {m: tuned[split][mod][m] - frozen[split][mod][m] for m in METRICS}
                               for mod in tuned[split]} for split in tuned}}


def summarize_footprint(fp: dict) -> None:
    """Mean, std and count over seeds of every run and of the gain; gallery and query counts."""
    seeds = fp["seeds"]
    fp["summary"] = {run: summarize({s: e["runs"][run] for s, e in seeds.items()}) for run in RUNS}
    fp["summary"]["gain_phase2_vs_frozen"] = summarize({s: gain_entry(e) for s, e in seeds.items()})
    first = next(iter(seeds.values()))["runs"]["imagenet_frozen"]["splits"]
    fp["gallery"] = {split: max(c["n_gallery"] for c in cells.values()) for split, cells in first.items()}
    fp["queries"] = {split: {mod: c["n_queries"] for mod, c in cells.items()} for split, cells in first.items()}


def add_entry(study: dict, name: str, footprint: dict, scale: float, dataset: dict, seed: int, entry: dict,
              base_overrides: list[str]) -> None:
    fp = study["footprints"].get(name)
    if fp is None or fp["dataset"]["manifest_sha256"] != dataset["manifest_sha256"]:
        # another dataset: its old seeds measured something else
        fp = study["footprints"][name] = {"seeds": {}, "dataset": dataset}
    else:  # the same data: the first build's timings stay
        fp["dataset"]["config"] = dataset["config"]
    fp.update(scale=scale, embedded=footprint, base_overrides=[*STUDY_OVERRIDES, *base_overrides])
    fp["seeds"][str(seed)] = entry
    fp["seeds"] = dict(sorted(fp["seeds"].items(), key=lambda kv: int(kv[0])))
    summarize_footprint(fp)
    study["footprints"] = dict(sorted(study["footprints"].items(), key=lambda kv: kv[1]["scale"]))


def measured(study: dict, name: str, seed: int, project) -> bool:
    """Whether (footprint, seed) is in the study for the resolved model/train config and the
    dataset config (the build is deterministic: the same config gives the same manifest)."""
    fp = study["footprints"].get(name, {})
    done = fp.get("seeds", {}).get(str(seed))
    return (done is not None and done["config"] == config_key(project)
            and fp["dataset"].get("config") == dataset_key(project))


def print_table(study: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    fps = study["footprints"]
    mods = list(dict.fromkeys(m for fp in fps.values() for s in fp["summary"]["phase2"].values() for m in s
                              if m != "mean"))
    console = Console(width=220)
    for split in STUDY_SPLITS:
        table = Table(title=f"{split}: query->satellite R@1 / AP, mean ± std over seeds (gallery = satellite tiles)")
        for col in ("footprint (UAV / map)", "gallery", "seeds", "run", *(f"{m} (n)" for m in mods), "mean R@1 / AP"):
            table.add_column(col)
        for fp in fps.values():
            if split not in fp["gallery"]:
                continue
            where = f"{fp['embedded']['embedded.neon_tile_m']:g} / {fp['embedded']['embedded.spacenet_tile_m']:g} m"
            for i, run in enumerate((*RUNS, "gain_phase2_vs_frozen")):
                rows = fp["summary"][run][split]
                counts = {m: f" ({n})" if i == 0 else "" for m, n in fp["queries"][split].items()}
                cells = [f"{fmt(rows[m]['R@1'])} / {fmt(rows[m]['AP'])}{counts[m]}" if m in rows else "-" for m in mods]
                gallery = f"{fp['gallery'][split]} (chance R@1 {100 / fp['gallery'][split]:.0f})"
                table.add_row(where if i == 0 else "", gallery if i == 0 else "",
                              ",".join(fp["seeds"]) if i == 0 else "", run, *cells,
                              f"{fmt(rows['mean']['R@1'])} / {fmt(rows['mean']['AP'])}",
                              end_section=run == "gain_phase2_vs_frozen")
        console.print(table)
    for name, fp in fps.items():
        wall = statistics.fmean(e["wall_s"] for e in fp["seeds"].values())
        cached = " (build found cached)" if fp["dataset"]["build_cached"] else ""
        steps = "/".join(str(e["training"][p]["steps"]) for e in list(fp["seeds"].values())[:1] for p in e["training"])
        console.print(f"{name}: train locations {fp['dataset']['locations']['train']}, steps phase 1/2 {steps}, "
                      f"dataset stages {fp['dataset']['seconds']} s{cached}, {wall:.0f} s per seed "
                      "(train + evaluate; a phase found trained counts 0)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        base = load_project(args.params, args.overrides)
        out = args.out or base.reports_dir / "benchmarks" / "footprint.json"
        work_dir = (args.work_dir or base.cache_dir / "footprint_study").resolve()
        cache_dir = args.cache_dir or base.cache_dir / "images"
        previous = read_json(out) if out.is_file() else None
        study = previous or {"format": 1, "splits": list(STUDY_SPLITS), "direction": DIRECTION, "footprints": {}}
        for scale in dict.fromkeys(args.scales):
            footprint = footprint_overrides(base, scale)
            name = footprint_name(footprint)
            fp_dir = work_dir / name
            todo = [s for s in dict.fromkeys(args.seeds)
                    if not measured(study, name, s, footprint_project(args, footprint, fp_dir, s))]
            for seed in args.seeds:
                if seed not in todo:
                    print(f"{name} seed {seed}: already measured, skipped", file=sys.stderr)
            if not todo:
                continue
            dataset = build_dataset(footprint_project(args, footprint, fp_dir))  # once for every seed
            print(f"{name}: dataset {dataset['locations']} ({dataset['seconds']} s)", file=sys.stderr)
            for seed in todo:
                project = footprint_project(args, footprint, fp_dir, seed)
                entry = run_seed(project, fp_dir / "runs" / f"seed{seed}", cache_dir)
                add_entry(study, name, footprint, scale, dataset, seed, entry, args.overrides)
                write_json(out, study)
                print(f"{name} seed {seed}: {entry['wall_s']} s", file=sys.stderr)
    except GleamError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if study["footprints"]:
        print_table(study)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
