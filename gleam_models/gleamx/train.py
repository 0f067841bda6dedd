"""Fine-tune GLEAM-X: LoRA on the LM + the projector, answer-only loss, resumable and deterministic.

    out_dir/
        gleamx.json, projector.safetensors, adapter/   the trained model (gleam_models.gleamx.build)
        checkpoints/step-0000010/                     trainable.safetensors, optimizer.safetensors,
                                                      rng.safetensors, state.json (no pickle)
        metrics.jsonl, summary.json, train_params.json

Data order is a pure function of (seed, micro-batch index) and the only other randomness (LoRA
dropout) comes from torch's RNG, saved in every checkpoint: a run killed at any moment resumes
from its newest checkpoint to the same weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from data_assets.errors import ConfigError, DataError
from data_assets.io import atomic_directory, atomic_path, read_json, sha256_file, sha256_text, write_json, write_text
from gleam_models.gleamx.build import add_lora, build_model, save_trained
from gleam_models.gleamx.consistency import restatements
from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig
from gleam_models.gleamx.data import (FeatureCache, answer_for, pad_batch, prompt_ids, record_pair,
                                      stratified_subsample, stratum, train_val_records, training_example,
                                      verdict_weights)
from gleam_models.gleamx.fact_probes import PROBES_FILE, FactProbes, cross_fitted, hint_text, unmeasured_images
from gleam_models.gleamx.prompts import verdict_line

# training options added after runs were fingerprinted: in the fingerprint only when set away from
# their default, so runs made before them keep their fingerprints (and are not retrained)
LATER_TRAIN_OPTIONS = ("drop_verdict_restatements", "restatement_loss_weight")
LATER_MODEL_OPTIONS = ("fact_hint_min_confidence",)


def _later_at_default(cfg, names: tuple[str, ...]) -> set[str]:
    return {k for k in names if getattr(cfg, k) == type(cfg).model_fields[k].default}


def run_fingerprint(model_cfg: GleamXModelConfig, train_cfg: GleamXTrainConfig, records_dir: Path,
                    base_dir: Path | None = None, truths: dict[str, dict] | None = None) -> str:
    """Config, training records and the vision tower's weights (by content: a retrained GLEAM-C
    phase 2 at the same path must re-train GLEAM-X, not reuse the run made on the old tower), and
    with fact_hints the ground truth the probes are fitted on."""
    hint_fields = {"fact_hints", "fact_hint_languages", "fact_hint_min_confidence"}
    cfg = {"model": model_cfg.model_dump(mode="json", exclude=(set() if model_cfg.fact_hints else hint_fields)
                                         | _later_at_default(model_cfg, LATER_MODEL_OPTIONS)),
           "train": train_cfg.model_dump(mode="json", exclude={"progress", "gen_batch_size", "max_new_tokens",
                                                               "stance_guard", "checkpoint_every_steps",
                                                               "keep_checkpoints"}
                                         | _later_at_default(train_cfg, LATER_TRAIN_OPTIONS)),
           "data": sha256_file(Path(records_dir) / "train.jsonl")}
    if model_cfg.kind == "llava":
        from gleam_models.checkpoint import weights_fingerprint
        from gleam_models.gleamx.build import resolve_path

        tower = resolve_path(model_cfg.vision_checkpoint, Path(base_dir or Path.cwd()))
        cfg["vision"] = weights_fingerprint(tower) if tower.is_file() else None
    if model_cfg.fact_hints:
        cfg["truths"] = sha256_text(json.dumps(truths or {}, sort_keys=True))
    return sha256_text(json.dumps(cfg, sort_keys=True))[:16]


def lr_at(step: int, cfg: GleamXTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def micro_batch(m: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Example indices of micro-batch m: consecutive slices of seeded per-epoch permutations."""
    out = []
    for pos in range(m * batch_size, (m + 1) * batch_size):
        epoch, i = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[i]))
    return out


def prepare(model_cfg, train_cfg, records_dir, base_dir, cache_dir, truths: dict[str, dict] | None = None):
    """Model (LoRA applied), sources, and the training subset as a micro-batch function.
    truths: location_id -> ground truth, needed by fact_hints (the probes are fitted on it)."""
    torch.manual_seed(train_cfg.seed)
    train, _, val_source = train_val_records(records_dir, train_cfg.val_fraction, train_cfg.seed)
    subset = stratified_subsample(train, train_cfg.train_subsample, train_cfg.seed)
    if model_cfg.kind == "vlm":
        if model_cfg.fact_hints:
            raise ConfigError("gleamx_model.fact_hints needs kind=llava (the probes read the GLEAM-C tower's embedding)")
        model, batch, info = _prepare_vlm(model_cfg, train_cfg, subset, base_dir)
    else:
        model, batch, info = _prepare_llava(model_cfg, train_cfg, subset, base_dir, cache_dir, train, truths)
    strata: dict[str, int] = {}
    for r in subset:
        strata["/".join(stratum(r))] = strata.get("/".join(stratum(r)), 0) + 1
    data = {"batch": batch, "n": len(subset), "strata": strata, "val_source": val_source, "train_records": len(train)}
    return model, info, data


def _prepare_llava(model_cfg, train_cfg, subset, base_dir, cache_dir, train, truths):
    model, tok, info = build_model(model_cfg, base_dir, cache_dir, train_cfg.seed)
    features = FeatureCache(model, info["vision_fingerprint"], cache_dir)
    tokens, cosine = features.pair_features([record_pair(r, base_dir) for r in subset])
    hints, unmeasured = [None] * len(subset), [frozenset()] * len(subset)
    if model_cfg.fact_hints:
        model.fact_probes, hints, unmeasured = training_hints(features, train, subset, truths or {}, base_dir,
                                                              train_cfg.seed, model_cfg)
    cfg = model.config
    answers = [answer_for(r, tok, train_cfg.answer_sentences, train_cfg.label_only, train_cfg.max_answer_tokens,
                          cfg.verdict_first, r.language in train_cfg.drop_verdict_restatements, gone)
               for r, gone in zip(subset, unmeasured)]
    examples = [training_example(tok, prompt_ids(tok, r.modality, r.language, cfg.use_cosine, cfg.tokens_per_image,
                                                 cfg.image_token_id, cfg.verdict_first, hint), a)
                for r, a, hint in zip(subset, answers, hints)]
    weights = None
    if train_cfg.verdict_loss_weight != 1.0 or train_cfg.restatement_loss_weight != 1.0:
        restated = lambda a, lang: restatements(a, lang) if train_cfg.restatement_loss_weight != 1.0 else ()  # noqa: E731
        weights = [[0.0] * (len(ids) - len(w)) + w for (ids, _), w in
                   ((e, verdict_weights(tok, a, verdict_line(r.label, r.language), train_cfg.verdict_loss_weight,
                                        restated(a, r.language), train_cfg.restatement_loss_weight))
                    for e, a, r in zip(examples, answers, subset))]
    if len(cosine) > 1:
        model.config.cosine_mean, model.config.cosine_std = float(cosine.mean()), float(cosine.std())
    add_lora(model, model_cfg.lora, train_cfg.seed)

    def batch(idx: list[int]) -> dict:
        ids, mask, labels = pad_batch([examples[i][0] for i in idx], tok.pad_token_id, left=False,
                                      labels=[examples[i][1] for i in idx])
        out = {"input_ids": ids, "attention_mask": mask, "labels": labels, "image_tokens": tokens[idx],
               "cosine": cosine[idx]}
        if weights is not None:
            out["loss_weights"] = torch.zeros(ids.shape)
            for j, i in enumerate(idx):
                out["loss_weights"][j, : len(weights[i])] = torch.tensor(weights[i])
        return out

    return model, batch, info


def training_hints(features: FeatureCache, train: list, subset: list, truths: dict[str, dict], base_dir: Path,
                   seed: int, model_cfg: GleamXModelConfig
                   ) -> tuple[FactProbes, list[str | None], list[frozenset[str]]]:
    """Probes fitted on every training image with ground truth; the subset's prompt hints from
    cross-fitted readings (no image is read by a probe that saw its location), and per record the
    images those hints call unclear (in the languages that get a hint)."""
    images: dict[tuple[str, str], str] = {}  # (path, view) -> location
    for r in train:
        images[(r.query_path, r.modality)] = r.query_location_id
        images[(r.satellite_path, "satellite")] = r.satellite_location_id
    keys = sorted(images)
    labelled = [k for k in keys if images[k] in truths]
    if len({images[k] for k in labelled}) < 2:
        raise DataError(None, f"gleamx_model.fact_hints: {len(labelled)} training images have ground truth in "
                              "the manifest; the probes need locations with ground_truth (or set fact_hints=false)")
    emb = _embeddings(features, keys, base_dir)
    index = {k: i for i, k in enumerate(keys)}
    rows = [index[k] for k in labelled]
    probes = FactProbes.fit(emb[rows], [k[1] for k in labelled], [truths[images[k]] for k in labelled])
    readings = dict(zip(keys, probes.read(emb, [k[1] for k in keys])))  # images without ground truth
    readings.update(zip(labelled, cross_fitted(emb[rows], [k[1] for k in labelled], [truths[images[k]] for k in labelled],
                                               [images[k] for k in labelled], seed)))
    pairs = [(readings[(r.query_path, r.modality)], readings[(r.satellite_path, "satellite")]) for r in subset]
    gate, languages = model_cfg.fact_hint_min_confidence, model_cfg.fact_hint_languages
    hints = [hint_text(q, s, r.language, languages, gate) for (q, s), r in zip(pairs, subset)]
    unclear = [unmeasured_images(q, s, gate) if hint else frozenset() for (q, s), hint in zip(pairs, hints)]
    return probes, hints, unclear


def _embeddings(features: FeatureCache, keys: list[tuple[str, str]], base_dir: Path) -> np.ndarray:
    out = np.zeros((len(keys), 0), dtype=np.float32)
    for view in sorted({v for _, v in keys}):
        idx = [i for i, (_, v) in enumerate(keys) if v == view]
        emb = torch.stack([e for _, e in features.get_many([Path(base_dir) / keys[i][0] for i in idx], view)]).numpy()
        if out.shape[1] == 0:
            out = np.zeros((len(keys), emb.shape[1]), dtype=np.float32)
        out[idx] = emb
    return out


def _prepare_vlm(model_cfg, train_cfg, subset, base_dir):
    from gleam_models.gleamx.build import resolve_path
    from gleam_models.gleamx.vlm import VlmBatches, add_vlm_lora, load_vlm, prompt_and_full, vlm_fingerprint

    source = resolve_path(model_cfg.lm_source, base_dir)
    model, processor = load_vlm(source)
    tok = processor.tokenizer
    rows = []
    for r in subset:
        prompt, full = prompt_and_full(processor, r.modality, r.language,
                                       answer_for(r, tok, train_cfg.answer_sentences, train_cfg.label_only,
                                                  train_cfg.max_answer_tokens, model_cfg.verdict_first,
                                                  r.language in train_cfg.drop_verdict_restatements),
                                       model_cfg.verdict_first)
        pair = record_pair(r, base_dir)
        rows.append((prompt, full, pair.query_path, pair.satellite_path))
    model = add_vlm_lora(model, model_cfg.lora, train_cfg.seed)
    fp = vlm_fingerprint(source)
    info = {"lm_source": str(source), "lm_fingerprint": fp, "vision_checkpoint": str(source), "vision_fingerprint": fp}
    return model, VlmBatches(processor, rows), info


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(root: Path, step: int, params, optimizer, state: dict, keep: int) -> None:
    with atomic_directory(root / f"step-{step:07d}") as tmp:
        save_file({n: p.detach().cpu().contiguous() for n, p in params.items()}, str(tmp / "trainable.safetensors"))
        opt = optimizer.state_dict()
        save_file({f"{i}.{k}": v.detach().cpu().contiguous() for i, s in opt["state"].items() for k, v in s.items()},
                  str(tmp / "optimizer.safetensors"))
        save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        write_json(tmp / "state.json", {**state, "step": step, "param_groups": opt["param_groups"]})
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: Path, fingerprint: str) -> Path | None:
    done = [p for p in sorted(root.glob("step-*")) if (p / "state.json").is_file()]
    for p in reversed(done):
        if read_json(p / "state.json").get("fingerprint") == fingerprint:
            return p
    return None


def load_checkpoint(path: Path, params, optimizer) -> dict:
    weights = load_file(str(path / "trainable.safetensors"))
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])
    state = read_json(path / "state.json")
    flat = load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict] = {}
    for key, v in flat.items():
        i, k = key.split(".", 1)
        opt_state.setdefault(int(i), {})[k] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch"])
    return state


# ----------------------------------------------------------------------------- training

def train_gleamx(model_cfg: GleamXModelConfig, train_cfg: GleamXTrainConfig, records_dir: Path, base_dir: Path,
                 out_dir: Path, cache_dir: Path | None, device: str | None = None, on_progress=None,
                 truths: dict[str, dict] | None = None) -> dict:
    """Train (or resume, or return the finished run's summary) and write out_dir; returns summary.
    on_progress(step, total_steps, row), if given, is called with every metrics.jsonl row.
    truths (location_id -> ground truth; fact_check.truths_from_manifest) fit the fact_hints probes."""
    from tqdm.auto import tqdm

    out_dir, start_clock = Path(out_dir), time.perf_counter()
    fingerprint = run_fingerprint(model_cfg, train_cfg, records_dir, base_dir, truths)
    if (out_dir / "summary.json").is_file() and read_json(out_dir / "summary.json").get("fingerprint") == fingerprint:
        return read_json(out_dir / "summary.json")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, info, data = prepare(model_cfg, train_cfg, records_dir, base_dir, cache_dir, truths)
    model.to(device).train()
    if model_cfg.kind == "llava":
        model.vision_tower.eval()
    params = trainable(model)
    optimizer = torch.optim.AdamW(params.values(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    ckpt_root = out_dir / "checkpoints"
    step, rows, rates = 0, [], []  # rates (tokens/s): this session's, returned, never written
    resume = latest_checkpoint(ckpt_root, fingerprint)
    if resume is not None:
        step = load_checkpoint(resume, params, optimizer)["step"]
        rows = [r for r in _read_rows(out_dir / "metrics.jsonl") if r["step"] <= step]
    else:
        shutil.rmtree(ckpt_root, ignore_errors=True)
    n = data["n"]
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=train_cfg.precision == "bf16")
    bar = tqdm(total=train_cfg.steps, initial=step, desc=f"gleamx {'label-only' if train_cfg.label_only else 'explain'}",
               disable=not train_cfg.progress, dynamic_ncols=True)
    while step < train_cfg.steps:
        t0, ntok, loss_sum = time.perf_counter(), 0, 0.0
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, train_cfg)
        for a in range(train_cfg.grad_accum):
            idx = micro_batch(step * train_cfg.grad_accum + a, n, train_cfg.batch_size, train_cfg.seed)
            batch = {k: v.to(device) for k, v in data["batch"](idx).items()}
            with autocast:
                out = model(**batch)
            (out.loss.float() / train_cfg.grad_accum).backward()
            loss_sum += float(out.loss.detach()) / train_cfg.grad_accum
            ntok += int(batch["attention_mask"].sum())
        if train_cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(params.values(), train_cfg.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tps = ntok / max(1e-9, time.perf_counter() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tps:.0f}")
        if step % train_cfg.log_every_steps == 0 or step == train_cfg.steps:
            rows.append({"step": step, "loss": round(loss_sum, 5), "lr": lr_at(step - 1, train_cfg)})
            rates.append(round(tps, 1))
            write_text(out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
            if on_progress is not None:
                on_progress(step, train_cfg.steps, {**rows[-1], "tokens_per_s": rates[-1]})
        if train_cfg.checkpoint_every_steps and step % train_cfg.checkpoint_every_steps == 0 and step < train_cfg.steps:
            save_checkpoint(ckpt_root, step, params, optimizer, {"fingerprint": fingerprint}, train_cfg.keep_checkpoints)
    bar.close()
    summary = _summary(train_cfg, fingerprint, info, data, rows)
    session = {"tokens_per_s_mean": round(sum(rates) / len(rates), 1) if rates else None,
               "seconds_this_session": round(time.perf_counter() - start_clock, 1),
               "resumed_from": None if resume is None else resume.name}
    extra = {"label_only": train_cfg.label_only, "fingerprint": fingerprint}
    if model_cfg.kind == "vlm":
        from gleam_models.gleamx.vlm import save_vlm_trained
        save_vlm_trained(model, out_dir, model_cfg, info, extra)
    else:
        if getattr(model, "fact_probes", None) is not None:  # before gleamx.json, which save_trained writes last
            with atomic_path(out_dir / PROBES_FILE) as tmp:
                model.fact_probes.save(tmp)
        save_trained(model, out_dir, model_cfg, info, extra)
    write_json(out_dir / "train_params.json", {"gleamx_model": model_cfg.model_dump(mode="json"),
                                               "gleamx_train": train_cfg.model_dump(mode="json")})
    write_json(out_dir / "summary.json", summary)  # a DVC output: no clock, the same for a resumed run
    return {**summary, **session}


def _summary(cfg, fingerprint, info, data, rows) -> dict:
    tail = [r["loss"] for r in rows[-5:]]
    return {"fingerprint": fingerprint, "steps": cfg.steps, "label_only": cfg.label_only,
            "train_examples": data["n"], "train_records_available": data["train_records"],
            "strata": data["strata"], "val_source": data["val_source"],
            "final_loss": rows[-1]["loss"] if rows else None, "loss_last5_mean": sum(tail) / len(tail) if tail else None,
            "vision_fingerprint": info["vision_fingerprint"], "lm_fingerprint": info["lm_fingerprint"],
            "lm_source": info["lm_source"], "vision_checkpoint": info["vision_checkpoint"]}


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
