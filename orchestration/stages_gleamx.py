"""GLEAM-X fine-tuning stage: the explanation-supervised model and the label-only ablation."""
from __future__ import annotations

from typing import TYPE_CHECKING

import time

from data_assets.errors import DataError
from orchestration.stage_api import StageResult, side_files, stage

if TYPE_CHECKING:  # the config imports every library's settings: too slow for `gleam --help`
    from orchestration.config import Project

SECTIONS = ["gleamx_model", "gleamx_train"]


@stage(lambda p, **_: [p.models_dir / "gleamx", p.models_dir / "gleamx_label_only"],
       also_clean=lambda p, **_: side_files(p, timings="gleamx_finetune"))
def gleamx_finetune(project: Project, on_progress=None) -> StageResult:
    """Train models/gleamx/ (explanation + verdict) and models/gleamx_label_only/ (verdict only).

    Each run resumes from its newest checkpoint and is skipped when already finished with the same
    config and data (its summary.json carries the fingerprint). on_progress(step, total, metrics) gets
    every logged step of both runs, the run's name under metrics["run"]."""
    from gleam_models.gleamx.build import resolve_path
    from gleam_models.gleamx.train import train_gleamx

    cfg_model, cfg_train = project.cfg.gleamx_model, project.cfg.gleamx_train
    records = project.gleamx_dir
    if not (records / "train.jsonl").is_file():
        raise DataError(records / "train.jsonl", "no GLEAM-X records: run gleamx-dataset first")
    vision = resolve_path(cfg_model.vision_checkpoint, project.root)
    if not vision.is_file():
        raise DataError(vision, "GLEAM-X's vision tower is the GLEAM-C phase-2 model: run gleamc-phase2 first")
    runs = {"gleamx": cfg_train, "gleamx_label_only": cfg_train.model_copy(update={"label_only": True})}
    truths = None
    if cfg_model.fact_hints:  # the probes are fitted on the training locations' ground truth
        from gleam_models.gleamx.fact_check import truths_from_manifest
        truths = truths_from_manifest(project.validated_manifest)
    summary, outputs, start = {}, {}, time.perf_counter()
    for name, train_cfg in runs.items():
        out = project.models_dir / name
        t0 = time.perf_counter()
        progress = None if on_progress is None else (
            lambda step, total, metrics, run=name: on_progress(step, total, {"run": run, **metrics}))
        result = train_gleamx(cfg_model, train_cfg, records, project.root, out, project.cache_dir,
                              on_progress=progress, truths=truths)
        project.save_resolved(out, sections=SECTIONS)
        # tokens/s and resumed_from: this session's (absent when the run had already finished)
        summary[name] = {k: result.get(k) for k in ("final_loss", "loss_last5_mean", "train_examples", "steps",
                                                    "tokens_per_s_mean", "val_source", "resumed_from")}
        summary[name]["seconds"] = round(time.perf_counter() - t0, 1)
        outputs[name] = out
    summary["seconds_total"] = round(time.perf_counter() - start, 1)
    summary["vision_fingerprint"], summary["lm_fingerprint"] = result["vision_fingerprint"], result["lm_fingerprint"]
    from orchestration.timings import write_timings
    write_timings(project, "gleamx_finetune", {"seconds_total": summary["seconds_total"], **{
        name: {k: summary[name][k] for k in ("seconds", "tokens_per_s_mean", "resumed_from")} for name in runs}})
    return StageResult("gleamx_finetune", outputs, summary)


def model_dir_fingerprint(model_dir) -> str:
    """Content hash of a trained GLEAM-X model: its projector and LoRA adapter weights."""
    from data_assets.io import sha256_text
    from gleam_models.checkpoint import weights_fingerprint

    files = [model_dir / "projector.safetensors", model_dir / "adapter" / "adapter_model.safetensors"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(missing[0], "GLEAM-X model incomplete: run gleamx-finetune first")
    return sha256_text("|".join(weights_fingerprint(f) for f in files))[:16]


@stage(lambda p: [p.reports_dir / "gleamx"], validated_input=True,
       also_clean=lambda p: [p.metrics_dir / "gleamx.json", *side_files(p, headline="gleamx", timings="gleamx_evaluation")])
def gleamx_evaluation(project: Project) -> StageResult:
    """The fine-tuned explainer, its label-only ablation, the untuned base model and the GLEAM-C cosine
    threshold, on the same fixed stratified pairs (metrics/gleamx.json, reports/gleamx/index.html)."""
    from data_assets.gleamx.schema import read_records
    from gleam_models.gleamx import baselines, evaluate
    from gleam_models.gleamx.fact_check import truths_from_manifest
    from gleam_models.gleamx.generate import load_base_explainer, load_explainer
    from gleam_models.gleamx.report import markdown_table, write_report
    from gleam_models.gleamx.text_metrics import load_sbert
    from orchestration.headline import discard, write_headline
    from orchestration.timings import write_timings

    discard(project, "gleamx")
    cfg, train_cfg = project.cfg.gleamx_eval, project.cfg.gleamx_train
    path = evaluate.eval_records_path(project.data_dir, cfg.split)
    everything = read_records(path)
    records = evaluate.stratified_subset(everything, cfg.subset_size, cfg.seed)
    start = time.perf_counter()
    embed, gleamc_fp = baselines.gleamc_embed_fn(project.cfg.model, project.gleamc_dir("phase2") / "model.safetensors",
                                                 project.cache_dir / "images", cfg.batch_size)
    tune = [r for split in cfg.threshold_splits if (project.gleamx_dir / f"{split}.jsonl").is_file()
            for r in read_records(project.gleamx_dir / f"{split}.jsonl")]
    cosine = baselines.cosine_threshold_baseline(evaluate.stratified_subset(tune, cfg.threshold_pairs, cfg.seed),
                                                 records, embed, project.root)
    systems = [evaluate.SystemRun("cosine_threshold", gleamc_fp, None, verdicts=cosine["verdicts"], explains=False,
                                  info={k: cosine[k] for k in ("threshold", "tune_accuracy", "tune_pairs")})]
    load = {"base_dir": project.root, "cache_dir": project.cache_dir, "max_new_tokens": train_cfg.max_new_tokens}
    for name, model_dir, explains in [("gleamx", project.models_dir / "gleamx", True),
                                      ("label_only", project.models_dir / "gleamx_label_only", False)]:
        fingerprint = model_dir_fingerprint(model_dir)
        explainer = load_explainer(model_dir, stance_guard=train_cfg.stance_guard, **load)
        systems.append(evaluate.run_explainer(name, explainer, records, project.root,
                                              fingerprint, train_cfg.gen_batch_size, explains=explains))
    base = load_base_explainer(project.cfg.gleamx_model, seed=train_cfg.seed, **load)
    base_fp = f"untuned:lm={base.meta['lm_fingerprint']},vision={gleamc_fp}"  # the LM as shipped, on this tower
    systems.append(evaluate.run_explainer("base_model", base, records, project.root, base_fp, train_cfg.gen_batch_size))
    out = project.metrics_dir / "gleamx.json"
    metrics = evaluate.evaluate_gleamx(records, systems, truths_from_manifest(project.validated_manifest), out,
                                       evaluate.eval_set_info(path, len(everything), records, cfg.subset_size, cfg.seed,
                                                              root=project.root),
                                       sbert_model=load_sbert(cfg.sbert_model), extra={"gleamc_fingerprint": gleamc_fp})
    write_headline(project, "gleamx", metrics)
    report_dir = project.reports_dir / "gleamx"
    explainer_run = next(s for s in systems if s.name == "gleamx")
    write_report(report_dir, metrics, records, explainer_run, explainer_run.verdicts, project.root,
                 cfg.report_examples, cfg.thumbnail_px)
    project.save_resolved(report_dir, sections=[*SECTIONS, "gleamx_eval"])
    seconds = round(time.perf_counter() - start, 1)
    timing = {s.name: s.timing for s in systems if s.timing}
    write_timings(project, "gleamx_evaluation", {"seconds": seconds, "systems": timing})
    summary = {"table": markdown_table(metrics), "pairs": len(records), "seconds": seconds,
               **{f"{name}/tokens_per_s": t.get("tokens_per_s") for name, t in timing.items()},
               **{f"{s.name}/accuracy": metrics[s.name]["accuracy"] for s in systems if "accuracy" in metrics[s.name]}}
    return StageResult("gleamx_evaluation", {"metrics": out, "report": report_dir / "index.html"}, summary)
