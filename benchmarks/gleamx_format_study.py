"""GLEAM-X answer-format study on the VALIDATION split: where the verdict goes and how much it weighs.

    python benchmarks/gleamx_format_study.py --project . --seeds 0 1 [--variants last_w1 first_w1 first_w5 label_only]

Needs a project that has run the pipeline up to gleamx_dataset and gleamc_phase2 (data/gleamx/,
models/gleamc_phase2/). Each variant is fine-tuned with the project's params.yaml plus the variant's
overrides, for each seed (the seed also draws the training subsample), into
reports/benchmarks/gleamx_format/<variant>-s<seed>/, then evaluated on the same 96 val pairs
(stratified like the test subset). Prints a table (mean and spread over seeds) and writes
reports/benchmarks/gleamx_format_study.json. Test pairs are never read.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml

VARIANTS = {  # name: (gleamx_model overrides, gleamx_train overrides)
    "last_w1": ({"verdict_first": False}, {"verdict_loss_weight": 1.0}),
    "last_w5": ({"verdict_first": False}, {"verdict_loss_weight": 5.0}),
    "first_w1": ({"verdict_first": True}, {"verdict_loss_weight": 1.0}),
    "first_w5": ({"verdict_first": True}, {"verdict_loss_weight": 5.0}),
    "label_only": ({"verdict_first": True}, {"verdict_loss_weight": 5.0, "label_only": True}),
    # a token budget that keeps Chinese explanations whole: at 64 tokens 2 of 100 Chinese training
    # answers kept their second (fact-bearing) sentence, English 90 (SmolLM2: 1.68 tokens per hanzi)
    "first_w5_128": ({"verdict_first": True}, {"verdict_loss_weight": 5.0, "max_answer_tokens": 128,
                                               "max_new_tokens": 128}),
    # measured facts: probes on the tower's embedding read both images' dominant cover into the prompt
    "first_w5_hints": ({"verdict_first": True, "fact_hints": True}, {"verdict_loss_weight": 5.0}),
    # the sentences that only restate the verdict dropped from the answers: the budget goes to facts
    "first_w5_hints_drop": ({"verdict_first": True, "fact_hints": True},
                            {"verdict_loss_weight": 5.0, "drop_verdict_restatements": True}),
    # the restating sentences kept, their tokens weighted like the verdict's (their stance tied to it)
    "first_w5_hints_rw5": ({"verdict_first": True, "fact_hints": True},
                           {"verdict_loss_weight": 5.0, "restatement_loss_weight": 5.0}),
    "first_w5_hints_drop_zh": ({"verdict_first": True, "fact_hints": True, "fact_hint_languages": ["en", "zh"]},
                               {"verdict_loss_weight": 5.0, "drop_verdict_restatements": True}),
    # Chinese answers only lose their restatement (English ones keep the reference's opening), and
    # Chinese prompts get the measured facts too: the budget goes to facts where it runs out
    "first_w5_hints_zh_dropzh": ({"verdict_first": True, "fact_hints": True, "fact_hint_languages": ["en", "zh"]},
                                 {"verdict_loss_weight": 5.0, "drop_verdict_restatements": ["zh"]}),
}
# the default with the probes' readings gated by confidence: an image read below the gate is called
# unclear and the training answers say nothing of its land cover (fewer, truer facts)
VARIANTS |= {f"default_gate{round(100 * t)}": ({"fact_hint_min_confidence": t}, {}) for t in (0.6, 0.7, 0.8)}
# inference-only variants: name -> (the trained variant they reuse, GleamXTrainConfig inference overrides)
INFERENCE_VARIANTS = {
    # decoding may not restate the opposite of the verdict line (stance.py)
    "first_w5_hints_guard": ("first_w5_hints", {"stance_guard": True}),
    "first_w5_hints_drop_guard": ("first_w5_hints_drop", {"stance_guard": True}),
    "first_w5_hints_zh_dropzh_guard": ("first_w5_hints_zh_dropzh", {"stance_guard": True}),
}
KEYS = ("accuracy", "unparseable", "predicted_match_share", "sbert", "fact_correct", "hallucination",
        "accuracy_language_en", "accuracy_language_zh", "sbert_en", "sbert_zh", "fact_correct_en", "fact_correct_zh",
        "explanation_contradicts_verdict", "explanation_contradicts_verdict_en", "explanation_contradicts_verdict_zh",
        # all-MiniLM is an English model: ROUGE-L and BLEU-4 judge the Chinese answers' closeness too
        "rouge_l_en", "rouge_l_zh", "bleu4_en", "bleu4_zh", "hallucination_en", "hallucination_zh",
        "facts_per_answer_en", "facts_per_answer_zh")


def run_variant(root: Path, params: dict, name: str, seed: int, pairs: int) -> dict:
    from data_assets.gleamx.schema import read_records
    from gleam_models.gleamx import evaluate
    from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig
    from gleam_models.gleamx.fact_check import truths_from_manifest
    from gleam_models.gleamx.generate import load_explainer
    from gleam_models.gleamx.text_metrics import load_sbert
    from gleam_models.gleamx.train import train_gleamx

    trained, infer_over = INFERENCE_VARIANTS.get(name, (name, {}))
    model_over, train_over = VARIANTS[trained]
    mcfg = GleamXModelConfig(**{**params["gleamx_model"], **model_over})
    tcfg = GleamXTrainConfig(**{**params["gleamx_train"], **train_over, **infer_over, "seed": seed, "progress": False})
    out = root / "reports" / "benchmarks" / "gleamx_format" / f"{trained}-s{seed}"  # a finished run is reused
    truths = truths_from_manifest(root / "data" / "validated" / "manifest.parquet")
    t0 = time.perf_counter()
    train_gleamx(mcfg, tcfg, root / "data" / "gleamx", root, out, root / ".cache", truths=truths if mcfg.fact_hints else None)
    train_s = time.perf_counter() - t0
    records = evaluate.stratified_subset(read_records(root / "data" / "gleamx" / "val.jsonl"), pairs, 0)
    explainer = load_explainer(out, cache_dir=root / ".cache", base_dir=root, max_new_tokens=tcfg.max_new_tokens,
                               stance_guard=tcfg.stance_guard)
    run = evaluate.run_explainer(name, explainer, records, root, "study", tcfg.gen_batch_size,
                                 explains=not tcfg.label_only)
    sbert = None if tcfg.label_only else load_sbert(params["gleamx_eval"]["sbert_model"])
    head, _ = evaluate.evaluate_system(records, run, truths, sbert)
    return {**{k: head.get(k) for k in KEYS}, "train_s": round(train_s, 1), **run.timing}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        values = [r[k] for r in rows if r.get(k) is not None]
        if values:
            out[k] = {"mean": statistics.mean(values), "spread": (max(values) - min(values)) / 2, "values": values}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path.cwd())
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=["last_w1", "first_w1", "first_w5", "label_only"],
                    choices=sorted([*VARIANTS, *INFERENCE_VARIANTS]))
    ap.add_argument("--pairs", type=int, default=96)
    args = ap.parse_args()
    root = args.project.resolve()
    params = yaml.safe_load((root / "params.yaml").read_text())
    out = root / "reports" / "benchmarks" / "gleamx_format_study.json"
    # runs of earlier calls stay (a study runs one variant and seed per call); same pairs only
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    results = earlier.get("runs", {}) if earlier.get("pairs") == args.pairs else {}
    for v in args.variants:
        for seed in args.seeds:
            results.setdefault(v, {})[f"seed{seed}"] = run_variant(root, params, v, seed, args.pairs)
    table = {v: summarise(list(r.values())) for v, r in results.items()}
    print(f"{'variant':<12} " + " ".join(f"{k:>22}" for k in KEYS))
    for v, m in table.items():
        scale = lambda k: 1 if k.startswith(("bleu4", "facts_per_answer")) else 100  # noqa: E731 - not shares
        cells = [f"{scale(k) * m[k]['mean']:.1f} +- {scale(k) * m[k]['spread']:.1f}" if k in m else "-" for k in KEYS]
        print(f"{v:<12} " + " ".join(f"{c:>22}" for c in cells))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": "val", "pairs": args.pairs, "runs": results, "summary": table}, indent=1))
    print(out)


if __name__ == "__main__":
    main()
