"""GLEAM-X evaluation: every system on the SAME fixed pairs, every metric, one metrics JSON.

Systems: "gleamx" (explanation-supervised fine-tune), "label_only" (the paper's ablation),
"base_model" (before fine-tuning) and "cosine_threshold" (GLEAM-C similarity + tuned threshold).
The caller generates the answers (gleam_models.gleamx.generate) and hands them in as texts aligned
with the evaluation records; verdicts are parsed from them unless given (the cosine baseline).
metrics/gleamx.json: headline numbers per system at the top (what `dvc metrics show` lists), the
evaluation set, and per modality / language details under "details".
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from data_assets.errors import DataError
from data_assets.gleamx.pairs import stable_int
from data_assets.io import sha256_file, write_json
from data_assets.gleamx.schema import record_field as _get
from gleam_models.gleamx.consistency import consistency_metrics
from gleam_models.gleamx.fact_check import fact_metrics
from gleam_models.metrics_file import relative_path, rounded
from gleam_models.gleamx.text_metrics import text_metrics
from gleam_models.gleamx.verdict_metrics import grouped_verdict_metrics

SYSTEMS = ("gleamx", "label_only", "base_model", "cosine_threshold")
STRATA = ("modality", "language", "label")



@dataclass
class SystemRun:
    name: str  # one of SYSTEMS (others are allowed, e.g. a Gemma variant)
    fingerprint: str  # weights fingerprint of the model that produced the answers
    texts: list[str | None] | None  # generated answers, one per evaluation record; None = verdicts only
    verdicts: list[str | None] | None = None  # given directly (cosine baseline); else parsed from texts
    explains: bool = True  # False: answers carry no explanation (label-only), no text/fact metrics
    info: dict = field(default_factory=dict)  # threshold, new tokens ...: recorded in the metrics file as is
    # wall time and tokens/s: never in the metrics file (it must be the same bytes on every run);
    # the stage writes them to reports/timings/ and its summary
    timing: dict = field(default_factory=dict)


def run_explainer(name: str, explainer, records: Sequence[Any], base_dir: Path, fingerprint: str,
                  batch_size: int = 32, cosines: Sequence[float] | None = None, explains: bool = True) -> SystemRun:
    """Answers of a GLEAM-X explainer (gleam_models.gleamx.generate) on the records, as a SystemRun."""
    from gleam_models.gleamx.generate import ExplainInput

    base_dir = Path(base_dir)
    items = [ExplainInput(base_dir / _get(r, "query_path"), base_dir / _get(r, "satellite_path"), _get(r, "modality"),
                          _get(r, "language"), None if cosines is None else float(cosines[i]))
             for i, r in enumerate(records)]
    outputs = explainer.explain(items, batch_size=batch_size)
    tokens, seconds = sum(o.new_tokens for o in outputs), sum(o.seconds for o in outputs)
    info = {"new_tokens": tokens, "batch_size": batch_size, "cosine_given": cosines is not None}
    if getattr(explainer, "stance_guard", False):  # answers whose greedy choice the guard changed (stance.py)
        info["stance_guard_changed"] = sum(o.stance_changed > 0 for o in outputs)
    timing = {"generation_s": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 2) if seconds else None}
    return SystemRun(name, fingerprint, [o.text for o in outputs], [o.verdict for o in outputs], explains, info,
                     timing)


def eval_records_path(data_dir: Path, split: str = "test") -> Path:
    """The revised split (data/gleamx_revised/<split>.jsonl) when present, else data/gleamx/<split>.jsonl."""
    revised = Path(data_dir) / "gleamx_revised" / f"{split}.jsonl"
    return revised if revised.is_file() else Path(data_dir) / "gleamx" / f"{split}.jsonl"


def stratified_subset(records: Sequence[Any], size: int | None, seed: int) -> list[Any]:
    """A fixed subset stratified by modality x language x label, proportional to the strata's sizes.

    Each non-empty stratum keeps at least one pair (when size allows); largest remainders get the
    rest. Within a stratum pairs are ranked by a hash of (seed, pair id), so the subset depends on
    the seed and the records only, not on their order. Returned in the input order."""
    if size is None or size >= len(records):
        return list(records)
    strata: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        strata[tuple(_get(r, k) for k in STRATA)].append(i)
    keys = sorted(strata)
    exact = {k: size * len(strata[k]) / len(records) for k in keys}
    quota = {k: min(len(strata[k]), max(1 if size >= len(keys) else 0, math.floor(exact[k]))) for k in keys}
    by_remainder = sorted(keys, key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    while sum(quota.values()) < size:
        grew = False
        for k in by_remainder:
            if sum(quota.values()) < size and quota[k] < len(strata[k]):
                quota[k] += 1
                grew = True
        if not grew:
            break
    while sum(quota.values()) > size:  # the one-per-stratum floor overshot: trim the largest
        k = max(keys, key=lambda k: (quota[k], k))
        quota[k] -= 1
    chosen = []
    for k in keys:
        ranked = sorted(strata[k], key=lambda i: stable_int(seed, "gleamx-eval", _get(records[i], "id")))
        chosen += ranked[: quota[k]]
    return [records[i] for i in sorted(chosen)]


def eval_set_info(path: Path, total: int, subset: Sequence[Any], size: int | None, seed: int,
                  root: Path | None = None) -> dict:
    """What was evaluated; `path` is written relative to `root` (the project root) when given."""
    path = Path(path)
    counts: dict[str, int] = defaultdict(int)
    for r in subset:
        counts["/".join(str(_get(r, k)) for k in STRATA)] += 1
    shown = relative_path(path, root) if root is not None else path.as_posix()
    return {"path": shown, "sha256": sha256_file(path), "pairs_in_file": total, "pairs": len(subset),
            "subset_size": size, "seed": seed, "stratified_by": list(STRATA), "strata": dict(sorted(counts.items()))}


def _compact(m: dict) -> dict:
    return {k: m[k] for k in ("n", "accuracy", "accuracy_ci95", "precision", "recall", "f1", "unparseable")}


def _default_parser() -> Callable[[str, str], str | None]:
    from gleam_models.gleamx.prompts import parse_verdict

    return parse_verdict


def evaluate_system(records: Sequence[Any], run: SystemRun, truths: dict[str, dict], sbert_model=None,
                    parse_verdict: Callable[[str, str], str | None] | None = None) -> tuple[dict, dict]:
    """(headline, details) of one system on the evaluation records."""
    n = len(records)
    if run.texts is not None and len(run.texts) != n or run.verdicts is not None and len(run.verdicts) != n:
        raise DataError(None, f"system {run.name!r}: answers are not aligned with the {n} evaluation pairs")
    if run.texts is None and run.verdicts is None:
        raise DataError(None, f"system {run.name!r}: neither texts nor verdicts given")
    langs = [_get(r, "language") for r in records]
    verdicts = run.verdicts
    if verdicts is None:
        parse = parse_verdict or _default_parser()
        verdicts = [parse(t or "", lang) for t, lang in zip(run.texts, langs)]
    labels = [_get(r, "label") for r in records]
    groups = {g: [_get(r, g) for r in records] for g in ("modality", "language")}
    verdict = grouped_verdict_metrics(labels, verdicts, groups)
    overall = verdict["overall"]
    headline = {"fingerprint": run.fingerprint, **_compact(overall),
                "predicted_match_share": overall["predicted_match_share"]}
    headline |= {f"accuracy_{g}_{k}": m["accuracy"] for g in groups for k, m in verdict[g].items()}
    details = {"verdict": {"overall": overall, **{g: {k: _compact(m) for k, m in verdict[g].items()} for g in groups}},
               "info": run.info}
    if run.explains and run.texts is not None:
        text = text_metrics(run.texts, [_get(r, "explanation") for r in records], langs, sbert_model)
        facts = fact_metrics(records, run.texts, truths)
        text.pop("per_pair_sbert")
        headline |= {"sbert": text["sbert"], "fact_correct": facts["overall"]["correct_share"],
                     "hallucination": facts["overall"]["hallucination_rate"]}
        for lang in sorted(text["per_language"]):
            t, f = text["per_language"][lang], facts["language"].get(lang, {})
            headline |= {f"sbert_{lang}": t["sbert"], f"bleu4_{lang}": t["bleu4"], f"rouge_l_{lang}": t["rouge_l"],
                         f"fact_correct_{lang}": f.get("correct_share"), f"hallucination_{lang}": f.get("hallucination_rate"),
                         f"facts_per_answer_{lang}": f.get("facts_per_answer")}
        agreement = consistency_metrics(run.texts, verdicts, langs)
        headline |= {"explanation_agrees_with_verdict": agreement["overall"]["agrees"],
                     "explanation_contradicts_verdict": agreement["overall"]["contradicts"]}
        headline |= {f"explanation_contradicts_verdict_{lang}": m["contradicts"]
                     for lang, m in agreement["language"].items()}
        details |= {"text": text, "facts": facts, "consistency": agreement}
    return headline, details


def evaluate_gleamx(records: Sequence[Any], systems: Sequence[SystemRun], truths: dict[str, dict], out_path: Path,
                    eval_set: dict, sbert_model=None, parse_verdict=None, extra: dict | None = None) -> dict:
    """Evaluate every system on the same records; write out_path (atomically, whole) and return it."""
    if not records:
        raise DataError(eval_set.get("path"), "no evaluation pairs")
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise DataError(None, f"system names must be unique, got {names}")
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for run in systems:
        metrics[run.name], details[run.name] = evaluate_system(records, run, truths, sbert_model, parse_verdict)
    metrics["eval_set"] = eval_set
    if extra:
        metrics["run"] = extra
    metrics["details"] = details
    metrics = rounded(metrics)
    write_json(out_path, metrics)
    return metrics
