"""The GLEAM-X data stage: pairs -> teacher answers -> records, per (modality, shard) slice + merge.

out_dir/
  pairs.parquet            every pair of the run (all slices), with both locations' ground truth
  shards/<modality>-<k>.{records,rejects}.jsonl, .report.json   one slice's results
  train.jsonl val.jsonl test.jsonl rejects.jsonl report.json    the merged dataset
Answers live in cache_dir (outside out_dir, which DVC deletes before re-running): a re-run or a
resumed run replays them instead of paying again.
"""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_assets.errors import ConfigError, DataError
from data_assets.gleamx.config import GleamXDataConfig
from data_assets.gleamx.pairs import EmbedFn, build_pairs
from data_assets.gleamx.schema import GleamXRecord, write_jsonl
from data_assets.gleamx.teachers import (ANSWER_KINDS, TRANSPORT_KINDS, Outcome, Teacher, TeacherRequest,
                                         make_teacher)
from data_assets.io import atomic_path, read_json, write_json
from data_assets.manifest import MODALITIES, SPLITS, read_manifest

FAILURE_KINDS = tuple(dict.fromkeys(TRANSPORT_KINDS + ANSWER_KINDS))


def slice_name(modality: str, shard: int) -> str:
    return f"{modality}-{shard:03d}"


def _missing(value) -> bool:
    """pandas turns None into NaN in string columns; records want None."""
    return value is None or (isinstance(value, float) and value != value)


def _truth(raw) -> dict | None:
    return json.loads(raw) if isinstance(raw, str) and raw.strip() else None


def _request(row: dict, base_dir: Path) -> TeacherRequest:
    return TeacherRequest(
        pair_id=row["pair_id"], modality=row["modality"], label=row["label"], language=row["language"],
        query_image=base_dir / row["query_path"], satellite_image=base_dir / row["satellite_path"],
        query_sha256=row["query_sha256"], satellite_sha256=row["satellite_sha256"],
        query_truth=_truth(row["query_truth"]), satellite_truth=_truth(row["satellite_truth"]))


def _record(row: dict, out: Outcome, teacher: Teacher) -> GleamXRecord:
    return GleamXRecord(
        id=row["pair_id"], split=row["split"], query_path=row["query_path"], satellite_path=row["satellite_path"],
        modality=row["modality"], label=row["label"], negative_kind=row["negative_kind"], language=row["language"],
        explanation=out.answer.explanation, evidence=out.answer.evidence, teacher=teacher.name, model=out.model,
        prompt_version=out.prompt_version, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
        cost_usd=round(out.cost_usd, 8), created_at=out.created_at, query_location_id=row["query_location_id"],
        satellite_location_id=row["satellite_location_id"])


def _reject(row: dict, out: Outcome, teacher: Teacher) -> dict:
    keep = ("split", "modality", "label", "negative_kind", "language", "query_location_id", "satellite_location_id")
    return {"id": row["pair_id"], **{k: row[k] for k in keep}, "reason_kind": out.reject_kind,
            "reason": out.reject_reason, "teacher": teacher.name, "model": out.model,
            "prompt_version": out.prompt_version, "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens, "cost_usd": round(out.cost_usd, 8)}


def _ask_all(teacher: Teacher, rows: list[dict], base_dir: Path, cfg: GleamXDataConfig, desc: str) -> list[Outcome]:
    """Every row's outcome, in row order; bounded concurrency for remote teachers."""
    workers = cfg.openai.concurrency if teacher.name == "openai" else 1
    outcomes: list[Outcome | None] = [None] * len(rows)
    tokens, spent = 0, 0.0
    with tqdm(total=len(rows), desc=desc, unit="pair", disable=not cfg.progress, dynamic_ncols=True) as bar:
        def done(i: int, out: Outcome) -> None:
            nonlocal tokens, spent
            outcomes[i] = out
            tokens += out.prompt_tokens + out.completion_tokens
            spent += out.spent_usd
            bar.update(1)
            bar.set_postfix(tokens=tokens, usd=f"{spent:.4f}", refresh=False)

        if workers == 1:
            for i, row in enumerate(rows):
                done(i, teacher.explain(_request(row, base_dir)))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(teacher.explain, _request(row, base_dir)): i for i, row in enumerate(rows)}
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for f in finished:
                        if f.exception() is not None:  # a config problem (bad key, no image support): stop
                            for p in pending:
                                p.cancel()
                            raise f.exception()
                        done(futures[f], f.result())
    return outcomes  # type: ignore[return-value]


def _write_slice(out_dir: Path, name: str, rows: list[dict], outcomes: list[Outcome], teacher: Teacher) -> dict:
    records = sorted((_record(r, o, teacher) for r, o in zip(rows, outcomes) if o.answer is not None),
                     key=lambda rec: rec.id)
    rejects = sorted((_reject(r, o, teacher) for r, o in zip(rows, outcomes) if o.answer is None),
                     key=lambda rej: rej["id"])
    failures = sum((o.failures for o in outcomes), Counter())
    report = {"slice": name, "pairs": len(rows), "records": len(records), "rejected": len(rejects),
              "failures_by_kind": {k: failures.get(k, 0) for k in FAILURE_KINDS},
              "this_run": {"requests": sum(o.requests for o in outcomes),
                           "cache_hits": sum(o.cache_hits for o in outcomes),
                           "cost_usd": round(sum(o.spent_usd for o in outcomes), 8)}}
    shards = out_dir / "shards"
    write_jsonl(shards / f"{name}.records.jsonl", records)
    write_jsonl(shards / f"{name}.rejects.jsonl", rejects)
    write_json(shards / f"{name}.report.json", report)  # last: its presence marks the slice complete
    return report


def _write_pairs(out_dir: Path, pairs: pd.DataFrame, meta: dict) -> None:
    table = pa.Table.from_pandas(pairs, preserve_index=False)
    table = table.replace_schema_metadata({b"gleamx": json.dumps(meta).encode()})
    with atomic_path(out_dir / "pairs.parquet") as tmp:
        pq.write_table(table, tmp)


def generate_gleamx_dataset(cfg: GleamXDataConfig, manifest_path: Path, base_dir: Path, out_dir: Path,
                            cache_dir: Path, embed_fn: EmbedFn | None = None, modality: str | None = None,
                            shard: int | None = None) -> dict:
    """Generate one (modality, shard) slice, or everything (both None: all slices, then merge)."""
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"gleamx modality {modality!r}: expected one of {', '.join(MODALITIES)}")
    if shard is not None and not 0 <= shard < cfg.num_shards:
        raise ConfigError(f"gleamx shard {shard}: expected 0..{cfg.num_shards - 1} (gleamx.num_shards)")
    base_dir, out_dir = Path(base_dir).resolve(), Path(out_dir)
    if out_dir.resolve() in Path(cache_dir).resolve().parents or Path(cache_dir).resolve() == out_dir.resolve():
        raise ConfigError(f"gleamx cache_dir {cache_dir} lies inside the output dir {out_dir}, which re-runs delete")
    pairs, info = build_pairs(read_manifest(manifest_path), base_dir, cfg, embed_fn)
    slices = sorted({(m, int(s)) for m, s in zip(pairs["modality"], pairs["shard"])})
    _write_pairs(out_dir, pairs, {**info, "num_shards": cfg.num_shards, "seed": cfg.seed,
                                  "slices": [slice_name(m, s) for m, s in slices], "teacher": cfg.teacher})
    mask = pd.Series(True, index=pairs.index)
    if modality is not None:
        mask &= pairs["modality"] == modality
    if shard is not None:
        mask &= pairs["shard"] == shard
    selected = pairs[mask]
    teacher = make_teacher(cfg, cache_dir)
    rows = [{k: (None if _missing(v) else v) for k, v in r.items()} for r in selected.to_dict("records")]
    what = "all" if modality is None and shard is None else f"{modality or '*'}/{'*' if shard is None else shard}"
    try:
        outcomes = _ask_all(teacher, rows, base_dir, cfg, desc=f"gleamx {what}")
    finally:
        getattr(teacher, "close", lambda: None)()
    reports = []
    for m, s in slices:
        if (modality and m != modality) or (shard is not None and s != shard):
            continue
        idx = [i for i, r in enumerate(rows) if r["modality"] == m and int(r["shard"]) == s]
        reports.append(_write_slice(out_dir, slice_name(m, s), [rows[i] for i in idx], [outcomes[i] for i in idx], teacher))
    if modality is None and shard is None:
        return merge_shards(out_dir, cfg.max_failed_fraction)
    for report in reports:
        check_failed_fraction(report, cfg.max_failed_fraction, f"slice {report['slice']}",
                              out_dir / "shards" / f"{report['slice']}.rejects.jsonl")
    return {"slices": reports, "visual_negatives": info["visual_negatives"]}


def check_failed_fraction(report: dict, max_failed_fraction: float, what: str, rejects_path: Path) -> None:
    """DataError with the counts when too many pairs got no usable answer (a teacher failing on
    every pair must not look like a finished dataset)."""
    pairs, rejected = report["pairs"], report["rejected"]
    if pairs and rejected / pairs > max_failed_fraction:
        by_kind = {k: v for k, v in report["failures_by_kind"].items() if v}
        reasons = report.get("rejects_by_reason") or _counts(_read_jsonl(rejects_path), "reason_kind")
        raise DataError(rejects_path, f"gleamx {what}: the teacher gave no usable answer for {rejected} of {pairs} "
                                      f"pairs ({rejected / pairs:.1%}, above gleamx.max_failed_fraction "
                                      f"{max_failed_fraction:.0%}); {report['records']} records; rejects by reason "
                                      f"{reasons}; failures by kind {by_kind}")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(path, "shard file missing (run that slice first)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_shards(out_dir: Path, max_failed_fraction: float = 1.0) -> dict:
    """Assemble every slice into {train,val,test}.jsonl, rejects.jsonl and report.json; DataError
    (after writing them, for inspection) when more than max_failed_fraction of the pairs failed."""
    out_dir = Path(out_dir)
    pairs_path = out_dir / "pairs.parquet"
    if not pairs_path.is_file():
        raise DataError(pairs_path, "no pairs table: run generation for at least one slice first")
    meta = json.loads(pq.read_schema(pairs_path).metadata[b"gleamx"])
    pairs = pd.read_parquet(pairs_path)
    records, rejects, slice_reports = [], [], []
    for name in meta["slices"]:
        report_path = out_dir / "shards" / f"{name}.report.json"
        if not report_path.is_file():
            raise DataError(report_path, f"slice {name} has not finished; run it, then merge again")
        slice_reports.append(read_json(report_path))
        records += _read_jsonl(out_dir / "shards" / f"{name}.records.jsonl")
        rejects += _read_jsonl(out_dir / "shards" / f"{name}.rejects.jsonl")
    seen = sorted(r["id"] for r in records + rejects)
    if seen != sorted(pairs["pair_id"]):
        raise DataError(out_dir / "shards", "shard files do not cover the current pairs exactly (stale slices "
                                            "from another config?); re-run every slice, then merge")
    records.sort(key=lambda r: r["id"])
    rejects.sort(key=lambda r: r["id"])
    for split in SPLITS:
        write_jsonl(out_dir / f"{split}.jsonl", [r for r in records if r["split"] == split])
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    report = _report(records, rejects, slice_reports, meta, pairs)
    report["max_failed_fraction"] = max_failed_fraction
    report["passed"] = not (report["pairs"] and report["rejected"] / report["pairs"] > max_failed_fraction)
    write_json(out_dir / "report.json", report)
    check_failed_fraction(report, max_failed_fraction, "dataset", out_dir / "rejects.jsonl")
    return report


def _counts(rows: list[dict], key: str) -> dict:
    return dict(sorted(Counter(str(r[key]) for r in rows).items()))


def _report(records: list[dict], rejects: list[dict], slices: list[dict], meta: dict, pairs: pd.DataFrame) -> dict:
    failures = sum((Counter(s["failures_by_kind"]) for s in slices), Counter())
    this_run = sum((Counter(s["this_run"]) for s in slices), Counter())
    paid = records + rejects
    return {
        "teacher": meta["teacher"],
        "models": sorted({r["model"] for r in paid}),
        "prompt_versions": sorted({r["prompt_version"] for r in paid}),
        "pairs": len(pairs), "records": len(records), "rejected": len(rejects),
        "counts": {k: _counts(records, k) for k in ("split", "language", "modality", "label", "negative_kind")},
        "counts_by_split": {s: {k: _counts([r for r in records if r["split"] == s], k)
                                for k in ("language", "modality", "label")} for s in SPLITS},
        "rejects_by_reason": _counts(rejects, "reason_kind"),
        "failures_by_kind": {k: failures.get(k, 0) for k in FAILURE_KINDS},
        "tokens": {"prompt": sum(r["prompt_tokens"] for r in paid),
                   "completion": sum(r["completion_tokens"] for r in paid)},
        "cost_usd": round(sum(r["cost_usd"] for r in paid), 6),
        "this_run": {"requests": this_run.get("requests", 0), "cache_hits": this_run.get("cache_hits", 0),
                     "cost_usd": round(this_run.get("cost_usd", 0.0), 6)},
        "cache_hits": this_run.get("cache_hits", 0),
        "visual_negatives": meta["visual_negatives"],
        "num_shards": meta["num_shards"], "seed": meta["seed"],
    }
