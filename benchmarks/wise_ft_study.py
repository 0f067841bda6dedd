"""WiSE-FT study: interpolate trained GLEAM-C models with the pretrained encoder, measure the mix.

For each model (default: this project's phase 2 and phase 1) and each alpha (default 0, 0.25, 0.5,
0.75, 1; alpha 0 = model.weights = the frozen ImageNet encoder, alpha 1 = the trained model), the
interpolated model is written (gleam_models/wise_ft.py) and evaluated with the pipeline's own
evaluation (gleam_models/evaluate.py, reference metric definitions) on the validation split and the
cross-area split. The validation split picks the alpha (mean query->satellite R@1 over modalities;
ties: mean AP, then the smaller alpha); the cross-area figures say what that choice gives on new
ground. The same-area test split is never evaluated here: no choice may look at it.

    .venv/bin/python benchmarks/wise_ft_study.py
    .venv/bin/python benchmarks/wise_ft_study.py --models phase2 --alphas 0 0.25     # one chunk
    .venv/bin/python benchmarks/wise_ft_study.py --params /elsewhere/params.yaml \\
        --cache-dir /tmp/me/cache --work-dir /tmp/me/wise --out /tmp/me/wise_ft.json

Each call evaluates the (model, alpha) pairs it is given and merges them into --out (a long study
runs in chunks; entries of another manifest or another trained model are dropped), then prints the
whole table and the validation choice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_assets.errors import GleamError
from data_assets.io import read_json, write_json
from gleam_models.checkpoint import weights_fingerprint
from gleam_models.evaluate import Run, evaluate_runs
from gleam_models.wise_ft import check_alpha, write_wise_ft_model
from orchestration.config import load_project

STUDY_SPLITS = ("val", "test_cross")  # never "test": it decides nothing
DIRECTION = "query_to_satellite"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: $GLEAM_PARAMS or ./params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--models", nargs="+", default=["phase2", "phase1"],
                        help="phase1/phase2 (this project's models) or NAME=PATH to a model.safetensors")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--out", type=Path, default=None, help="default: <reports_dir>/benchmarks/wise_ft.json")
    parser.add_argument("--work-dir", type=Path, default=None, help="interpolated models (default: <cache_dir>/wise_ft)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="decoded images (default: <cache_dir>/images)")
    return parser.parse_args(argv)


def model_paths(project, specs: list[str]) -> dict[str, Path]:
    paths = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        paths[name] = Path(path) if path else project.gleamc_dir(name) / "model.safetensors"
        if not paths[name].is_file():
            raise GleamError(f"{paths[name]}: no {name} model (train it, or pass NAME=PATH)")
    return paths


def evaluate_alphas(project, models: dict[str, Path], alphas: list[float], work_dir: Path, cache_dir: Path) -> tuple[dict, dict]:
    """{name: {"weights", "alphas": {alpha: {"weights", "wise_ft", "splits"}}}} and the metrics document."""
    model_cfg = project.cfg.model
    eval_cfg = project.cfg.evaluate.model_copy(update={"splits": list(STUDY_SPLITS), "figure_rows": 0})
    runs, made = {}, {}
    for name, path in models.items():
        for alpha in alphas:
            out = work_dir / f"{name}_alpha{alpha:.3f}.safetensors"
            wise = write_wise_ft_model(model_cfg, path, alpha, out)
            run = f"{name}_alpha{alpha:.3f}"
            runs[run] = Run.from_checkpoint(model_cfg, out, cache_dir)
            made[run] = (name, alpha, wise)
    doc = evaluate_runs(project.validated_manifest, project.root, runs, eval_cfg, work_dir / "metrics.json",
                        work_dir / "figures")
    results: dict = {}
    for run, (name, alpha, wise) in made.items():
        entry = results.setdefault(name, {"path": str(models[name]), "weights": weights_fingerprint(models[name]),
                                          "alphas": {}})
        entry["alphas"][f"{alpha:g}"] = {"weights": doc["runs"][run]["weights"], "wise_ft": wise,
                                         "splits": doc["runs"][run]["splits"]}
    return results, doc


def merge(previous: dict | None, results: dict, doc: dict, pretrained: str) -> dict:
    """Previous chunks' entries stay when they measured the same manifest and the same trained model."""
    study = {"format": 1, "manifest": doc["manifest"], "pretrained": pretrained, "splits": list(STUDY_SPLITS),
             "config": doc["config"], "definitions": doc["definitions"], "models": {}}
    if previous and previous.get("manifest", {}).get("sha256") == doc["manifest"]["sha256"]:
        study["models"] = previous.get("models", {})
    for name, entry in results.items():
        old = study["models"].get(name)
        if old is not None and old["weights"] == entry["weights"]:
            entry = {**entry, "alphas": {**old["alphas"], **entry["alphas"]}}
        entry["alphas"] = dict(sorted(entry["alphas"].items(), key=lambda kv: float(kv[0])))
        study["models"][name] = entry
    study["selection"] = {name: select_alpha(entry) for name, entry in study["models"].items()}
    return study


def mean_q2s(split_doc: dict, metric: str) -> float:
    values = [by_dir[DIRECTION][metric] for by_dir in split_doc.values()]
    return sum(values) / len(values)


def select_alpha(entry: dict) -> dict:
    """The alpha the validation split picks, and what it gives cross-area (beside alpha 1 and 0)."""
    alphas = entry["alphas"]
    scored = sorted(alphas, key=lambda a: (-mean_q2s(alphas[a]["splits"]["val"], "R@1"),
                                           -mean_q2s(alphas[a]["splits"]["val"], "AP"), float(a)))
    best = scored[0]

    def cross(a: str) -> dict:
        split = alphas[a]["splits"]["test_cross"]
        return {"mean_R@1": round(mean_q2s(split, "R@1"), 2),
                "R@1": {m: by_dir[DIRECTION]["R@1"] for m, by_dir in split.items()}}

    return {"compared": list(alphas), "rule": "max mean query->satellite R@1 on val; ties: mean AP, then smaller alpha",
            "alpha": float(best), "val_mean_R@1": round(mean_q2s(alphas[best]["splits"]["val"], "R@1"), 2),
            "test_cross": cross(best),
            "test_cross_alpha_1": cross("1") if "1" in alphas else None,
            "test_cross_alpha_0": cross("0") if "0" in alphas else None}


def table(study: dict) -> str:
    mods = list(dict.fromkeys(m for e in study["models"].values() for a in e["alphas"].values()
                              for s in a["splits"].values() for m in s))
    head = "| model | alpha | split | " + " | ".join(f"{m} R@1 / AP" for m in mods) + " | mean R@1 |"
    lines = [head, "|" + " --- |" * (len(mods) + 4)]
    for split in STUDY_SPLITS:
        for name, entry in study["models"].items():
            for alpha, res in entry["alphas"].items():
                cells = res["splits"][split]
                values = [f"{cells[m][DIRECTION]['R@1']:.1f} / {cells[m][DIRECTION]['AP']:.1f}" if m in cells else "-"
                          for m in mods]
                lines.append(f"| {name} | {alpha} | {split} | " + " | ".join(values)
                             + f" | {mean_q2s(cells, 'R@1'):.1f} |")
    for name, sel in study["selection"].items():
        lines.append(f"\n{name}: val picks alpha {sel['alpha']:g} of {sel['compared']} (val mean R@1 "
                     f"{sel['val_mean_R@1']}); test_cross mean R@1 {sel['test_cross']['mean_R@1']}"
                     + (f" (alpha 1: {sel['test_cross_alpha_1']['mean_R@1']}" if sel["test_cross_alpha_1"] else "")
                     + (f", alpha 0: {sel['test_cross_alpha_0']['mean_R@1']})" if sel["test_cross_alpha_0"] else ")"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        project = load_project(args.params, args.overrides)
        alphas = [check_alpha(a, "--alphas") for a in dict.fromkeys(args.alphas)]
        out = args.out or project.reports_dir / "benchmarks" / "wise_ft.json"
        work_dir = args.work_dir or project.cache_dir / "wise_ft"
        cache_dir = args.cache_dir or project.cache_dir / "images"
        results, doc = evaluate_alphas(project, model_paths(project, args.models), alphas, work_dir, cache_dir)
        previous = read_json(out) if out.is_file() else None
        study = merge(previous, results, doc, project.cfg.model.weights)
        write_json(out, study)
    except GleamError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table(study))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
