"""Two-phase GLEAM-C training: one function, one phase, one process or many (torchrun).

    train_phase(model_cfg, train_cfg, "phase1", manifest, base_dir, out_dir, cache_dir)
    train_phase(model_cfg, train_cfg, "phase2", ..., init_checkpoint=phase1_dir / "model.safetensors")

A step: take this rank's slice of a global batch (one pair per location, modalities balanced),
augment cached uint8 images, embed queries and satellites with the one shared encoder, gather
every rank's features (with gradients) and apply symmetric InfoNCE over the global batch.
AdamW + cosine schedule with warm-up, gradient clipping and accumulation, bf16/fp16 autocast,
channels_last; optionally a lower backbone lr, layer-wise lr decay and an EMA of the weights
(recipe.py). Every run is a function of (config, data, seed): checkpoints hold the optimizer, the
sampler's neighbour table, the EMA and the step, so a killed run resumes to the same result.

Outputs (rank 0): out_dir/model.safetensors, out_dir/checkpoints/<fingerprint>/step-*/,
out_dir/metrics.jsonl (step, epoch, loss, lr, temperature), out_dir/summary.json (timings: the return value).
Checkpoints live under the run's fingerprint, so a changed config or manifest starts a fresh run in
its own folder instead of refusing to start; finishing a run drops the other fingerprints' folders.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from data_assets.errors import ConfigError, GleamError
from data_assets.io import read_json, relative_path, sha256_file, sha256_text, write_json, write_text
from gleam_models.checkpoint import (list_checkpoints, load_checkpoint, restore_rng, save_checkpoint, save_model,
                                     weights_fingerprint)
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.data import (ImageCache, TrainPairs, aug_generator, augment_pair, colour_jitter,
                               load_pairs, sample_aug_params, to_nchw)
from gleam_models.distributed import DistInfo, barrier, gather_rows, gather_with_grad, setup_distributed
from gleam_models.embed import embed_arrays
from gleam_models.encoder import GleamEncoder, load_encoder, read_checkpoint, load_encoder_state
from gleam_models.loss import ContrastiveLoss
from gleam_models.recipe import (RECIPE_FIELDS, WeightsEma, drop_orphan_emas, ema_path, non_default_recipe,
                                  param_groups)
from gleam_models.samplers import epoch_batches, nearest_locations, shard
from gleam_models.wise_ft import apply_wise_ft, require_pretrained

PHASES = ("phase1", "phase2")
# differ on every run: in the returned summary and on_progress rows (the stage puts them in
# reports/timings/), never in summary.json or metrics.jsonl, DVC outputs that must be the same bytes
TIMING_KEYS = ("seconds", "images_per_s")


class TrainingDiverged(GleamError):
    """The loss became NaN/inf; the message names the step and the batch's locations."""


# ----------------------------------------------------------------------------- small pure pieces

def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_ratio: float) -> float:
    """Linear warm-up to base_lr, then cosine decay to base_lr * min_ratio at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (GradScaler); use bf16 or fp32 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def freeze_prefixes(encoder: nn.Module, prefixes: list[str], key: str) -> None:
    names = [n for n, _ in encoder.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            tops = sorted({".".join(n.split(".")[:2]) for n in names})
            raise ConfigError(f"{key}: {prefix!r} matches no parameter; e.g. {', '.join(tops[:12])}")
    for n, p in encoder.named_parameters():
        if any(n.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)


def set_train_mode(encoder: nn.Module, batchnorm: str, frozen: list[str]) -> None:
    """train() everywhere, except BatchNorm layers whose statistics stay fixed."""
    encoder.train()
    for name, m in encoder.named_modules():
        if isinstance(m, _BatchNorm) and (batchnorm == "frozen" or any(name.startswith(f) for f in frozen)):
            m.eval()


# ----------------------------------------------------------------------------- the model of a step

class PairModel(nn.Module):
    """Encoder + loss as one module, so DDP sees exactly one forward per step."""

    def __init__(self, encoder: GleamEncoder, loss: ContrastiveLoss):
        super().__init__()
        self.encoder, self.loss = encoder, loss

    def forward(self, query_groups: list[tuple[torch.Tensor, torch.Tensor]], sat: torch.Tensor):
        """query_groups: (positions in the batch, images) per input size (panoramas are wider)."""
        sat_feat = self.encoder(sat)
        order = torch.cat([pos for pos, _ in query_groups])
        feats = torch.cat([self.encoder(x) for _, x in query_groups])
        query_feat = feats[torch.argsort(order.to(feats.device))]
        with torch.autocast(sat.device.type, enabled=False):  # similarities in fp32
            loss = self.loss(query_feat.float(), sat_feat.float(), gather=gather_with_grad)
        return loss, query_feat, sat_feat


class BatchMaker:
    """Pair indices -> augmented, normalised tensors on the device."""

    def __init__(self, pairs: TrainPairs, cache: ImageCache, model_cfg: EncoderConfig, encoder: GleamEncoder,
                 augment: bool, device: torch.device):
        self.pairs, self.cache, self.sizes = pairs, cache, model_cfg.input_size
        self.augment, self.device = augment, device
        self.mean, self.std = encoder.mean.to(device), encoder.std.to(device)
        self.memory_format = torch.channels_last if model_cfg.channels_last else torch.contiguous_format

    def __call__(self, local: np.ndarray, offset: int, params: dict[str, torch.Tensor]):
        queries, sats = [], []
        for j, p in enumerate(local):
            mod = self.pairs.modalities[self.pairs.pair_mod[p]]
            q = torch.from_numpy(self.cache.get(self.pairs.query_paths[p], self.sizes[mod]))
            s = torch.from_numpy(self.cache.get(self.pairs.satellite_paths[self.pairs.pair_loc[p]],
                                                self.sizes["satellite"]))
            if self.augment:
                q, s = augment_pair(q, s, mod, params, offset + j)
            queries.append(q)
            sats.append(s)
        jitter = params["jitter"][offset:offset + len(local)]
        sat = self._finish(to_nchw(sats), jitter[:, 2], jitter[:, 3])
        groups: dict[tuple[int, ...], list[int]] = {}
        for j, q in enumerate(queries):
            groups.setdefault(tuple(q.shape), []).append(j)
        query_groups = [(torch.tensor(idx), self._finish(to_nchw([queries[j] for j in idx]),
                                                         jitter[idx, 0], jitter[idx, 1]))
                        for idx in groups.values()]
        return query_groups, sat

    def _finish(self, x_uint8: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        x = x_uint8.to(self.device, non_blocking=True).float().div_(255)
        if self.augment:
            x = colour_jitter(x, brightness.to(self.device), contrast.to(self.device))
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)


# ----------------------------------------------------------------------------- the trainer

def train_phase(model_cfg: EncoderConfig, train_cfg: TrainConfig, phase: str, manifest_path: Path,
                base_dir: Path, out_dir: Path, cache_dir: Path, init_checkpoint: Path | None = None,
                resume: bool = True, on_progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train one phase; see the module docstring. Returns the summary (also out_dir/summary.json).
    on_progress(step, total_steps, row) is called (rank 0) with every metrics.jsonl row."""
    if phase not in PHASES:
        raise ConfigError(f"phase must be one of {PHASES}, got {phase!r}")
    pcfg: PhaseConfig = getattr(train_cfg, phase)
    out_dir, manifest_path, base_dir = Path(out_dir), Path(manifest_path), Path(base_dir)
    if train_cfg.threads is not None:
        torch.set_num_threads(train_cfg.threads)
    use_cuda = torch.cuda.is_available()
    dist_info = setup_distributed(use_cuda)
    device = torch.device(f"cuda:{dist_info.local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    amp_dtype = autocast_dtype(train_cfg.precision, device)

    if pcfg.wise_ft_alpha is not None:
        require_pretrained(model_cfg, f"train.{phase}.wise_ft_alpha")  # fail now, not after training
    fingerprint = run_fingerprint(model_cfg, train_cfg, pcfg, manifest_path, init_checkpoint)
    summary_path, ckpt_root = out_dir / "summary.json", out_dir / "checkpoints" / fingerprint
    if resume and summary_path.is_file() and (out_dir / "model.safetensors").is_file():
        summary = read_json(summary_path)
        if summary.get("fingerprint") == fingerprint and summary.get("wise_ft_alpha") == pcfg.wise_ft_alpha:
            return summary  # this phase already finished with this exact config and data
    if not resume and dist_info.is_main:
        shutil.rmtree(ckpt_root.parent, ignore_errors=True)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    barrier(dist_info)

    # data: pairs, decode-once cache (each rank decodes its share), batch layout
    pairs = load_pairs(manifest_path, base_dir, "train", pcfg.modalities)
    cache = ImageCache(cache_dir)
    items = [(q, model_cfg.input_size[pairs.modalities[m]]) for q, m in zip(pairs.query_paths, pairs.pair_mod)]
    items += [(s, model_cfg.input_size["satellite"]) for s in pairs.satellite_paths]
    cache.prefill(items[dist_info.rank::dist_info.world_size], progress=train_cfg.progress and dist_info.is_main)
    barrier(dist_info)
    if pcfg.batch_size % dist_info.world_size:
        raise ConfigError(f"train.{phase}.batch_size={pcfg.batch_size} must be divisible by the "
                          f"number of processes ({dist_info.world_size})")
    steps_per_epoch = (len(pairs) // pcfg.batch_size) // pcfg.grad_accum
    if steps_per_epoch == 0 and pcfg.epochs > 0:
        raise ConfigError(f"train.{phase}: {len(pairs)} training pairs make no full optimizer step with "
                          f"batch_size={pcfg.batch_size} x grad_accum={pcfg.grad_accum}; lower them")
    total_steps = steps_per_epoch * pcfg.epochs

    # model, loss, optimizer
    torch.manual_seed(train_cfg.seed)
    encoder = load_encoder(model_cfg, init_checkpoint)
    loss_fn = ContrastiveLoss(train_cfg.init_temperature, train_cfg.label_smoothing)
    if init_checkpoint is not None:  # phase 2 continues phase 1's temperature too
        state, _ = read_checkpoint(Path(init_checkpoint))
        if "loss.logit_scale" in state:
            loss_fn.load_state_dict({"logit_scale": state["loss.logit_scale"]})
    freeze_prefixes(encoder, pcfg.freeze, f"train.{phase}.freeze")
    if train_cfg.batchnorm == "sync" and dist_info.enabled and use_cuda:
        encoder = nn.SyncBatchNorm.convert_sync_batchnorm(encoder)
    model = PairModel(encoder, loss_fn).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, pcfg.weight_decay, train_cfg.temperature_lr_scale,
                                               pcfg.backbone_lr_scale, pcfg.layer_decay), lr=pcfg.lr)
    ema = WeightsEma(model, pcfg.ema_decay) if pcfg.ema_decay is not None else None
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    step, seconds, images_seen, neighbours = 0, 0.0, 0, None
    metrics = _read_metrics(out_dir / "metrics.jsonl") if resume else []
    ckpts = list_checkpoints(ckpt_root) if resume else []
    if not ckpts:
        metrics = []  # another config's (or a finished run's) log must not prefix this run's
    if ckpts:
        state, extra = load_checkpoint(ckpts[-1])
        if state.get("fingerprint") != fingerprint:
            raise ConfigError(f"{ckpts[-1]}: checkpoint was written with a different config or data "
                              f"(fingerprint {state.get('fingerprint')} != {fingerprint}); resume=False "
                              f"(--no-resume) starts over, or delete {ckpt_root}")
        ckpt_state, _ = read_checkpoint(ckpts[-1] / "model.safetensors")
        load_encoder_state(encoder, ckpt_state, origin=str(ckpts[-1]))
        loss_fn.load_state_dict({"logit_scale": ckpt_state["loss.logit_scale"]})
        optimizer.load_state_dict(extra["optimizer"])
        if ema is not None:
            ema.load(ema_path(ckpts[-1]))
        if scaler is not None and extra.get("scaler"):
            scaler.load_state_dict(extra["scaler"])
        if extra.get("neighbours") is not None:
            neighbours = extra["neighbours"].numpy()
        step, seconds, images_seen = state["step"], state["seconds"], state["images_seen"]
        restore_rng(state["rng"], ckpts[-1])
        metrics = [row for row in metrics if row["step"] <= step]

    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None) \
        if dist_info.enabled else model
    make_batch = BatchMaker(pairs, cache, model_cfg, encoder, train_cfg.augment, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    trainable = [p for p in model.parameters() if p.requires_grad]

    def checkpoint(epoch_done: bool) -> None:
        if dist_info.is_main:
            _write_metrics(out_dir / "metrics.jsonl", metrics)
            if ema is not None:  # before its checkpoint directory appears
                ema.save(ema_path(ckpt_root / f"step-{step:07d}"))
            save_checkpoint(ckpt_root, step, encoder, loss_fn, optimizer, scaler, neighbours, {
                "fingerprint": fingerprint, "phase": phase, "epoch": step // max(1, steps_per_epoch),
                "epoch_done": epoch_done, "seconds": seconds, "images_seen": images_seen,
                "world_size": dist_info.world_size}, keep=train_cfg.keep_checkpoints)
            drop_orphan_emas(ckpt_root)
        barrier(dist_info)

    from tqdm.auto import tqdm
    bar = tqdm(total=total_steps, initial=step, desc=f"GLEAM-C {phase}", unit="step", dynamic_ncols=True,
               disable=not (train_cfg.progress and dist_info.is_main))
    window_loss, window_steps, window_images, window_start = 0.0, 0, 0, time.perf_counter()
    while step < total_steps:
        epoch, pos = divmod(step, steps_per_epoch)
        if pcfg.sampler == "similarity" and (neighbours is None or (pos == 0 and epoch % pcfg.sim_every_epochs == 0)):
            t0 = time.perf_counter()  # re-embedding is part of the training cost: counted in seconds
            neighbours = similarity_neighbours(encoder, pairs, cache, model_cfg, pcfg, dist_info)
            seconds += time.perf_counter() - t0
        batches = epoch_batches(pairs.pair_loc, pairs.pair_mod, pcfg.batch_size, train_cfg.seed, epoch,
                                neighbours if pcfg.sampler == "similarity" else None,
                                pcfg.sim_group_size, pcfg.sim_closest_share,
                                conflicts=pairs.semi_positives, multiple_of=dist_info.world_size)
        short = sum(len(b) < pcfg.batch_size for b in batches)
        if short and dist_info.is_main and pos == 0:
            tqdm.write(f"GLEAM-C {phase} epoch {epoch}: {short}/{len(batches)} batches could not be filled "
                       "with mutually non-overlapping locations and are shorter (see gleam_models/samplers.py)")
        set_train_mode(encoder, train_cfg.batchnorm, pcfg.freeze)
        for pos in range(pos, steps_per_epoch):
            t0 = time.perf_counter()
            lr = lr_at(step, total_steps, pcfg.warmup_steps, pcfg.lr, pcfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            step_loss = 0.0
            for micro in range(pcfg.grad_accum):
                batch = batches[pos * pcfg.grad_accum + micro]
                local = shard(batch, dist_info.rank, dist_info.world_size)
                params = sample_aug_params(aug_generator(train_cfg.seed, epoch, pos, micro), len(batch))
                query_groups, sat = make_batch(local, dist_info.rank * len(local), params)
                sync = ddp.no_sync() if (dist_info.enabled and micro < pcfg.grad_accum - 1) else contextlib.nullcontext()
                with sync:
                    with autocast():
                        loss, q_feat, s_feat = ddp(query_groups, sat)
                    if not torch.isfinite(loss):
                        raise _diverged(phase, step, epoch, loss, batch, local, q_feat, s_feat, pairs, ckpt_root)
                    scaled = loss / pcfg.grad_accum
                    (scaler.scale(scaled) if scaler else scaled).backward()
                step_loss += loss.item() / pcfg.grad_accum
            if scaler:
                scaler.unscale_(optimizer)
            if pcfg.clip_norm:
                torch.nn.utils.clip_grad_norm_(trainable, pcfg.clip_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if ema is not None:
                ema.update(model, step)
            n_images = 2 * sum(len(batches[pos * pcfg.grad_accum + m]) for m in range(pcfg.grad_accum))
            seconds += time.perf_counter() - t0
            images_seen += n_images
            window_loss, window_steps, window_images = window_loss + step_loss, window_steps + 1, window_images + n_images
            if step % train_cfg.log_every_steps == 0 or step == total_steps or pos == steps_per_epoch - 1:
                now = time.perf_counter()
                row = {"phase": phase, "step": step, "epoch": epoch, "loss": window_loss / window_steps, "lr": lr,
                       "temperature": loss_fn.temperature, "images_per_s": window_images / max(1e-9, now - window_start)}
                metrics.append({k: v for k, v in row.items() if k not in TIMING_KEYS})
                if on_progress is not None and dist_info.is_main:
                    on_progress(step, total_steps, dict(row))
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{row['images_per_s']:.0f}")
                window_loss, window_steps, window_images, window_start = 0.0, 0, 0, now
            bar.update(1)
            if pcfg.checkpoint_every_steps and step % pcfg.checkpoint_every_steps == 0 and pos < steps_per_epoch - 1:
                checkpoint(epoch_done=False)
        checkpoint(epoch_done=True)
    bar.close()
    if ema is not None:  # the checkpoints keep the raw weights (and the EMA); the model is the EMA
        ema.copy_to(model)

    summary = {
        "phase": phase, "fingerprint": fingerprint, "backbone": model_cfg.backbone,
        "final_loss": metrics[-1]["loss"] if metrics else None, "steps": step, "epochs": pcfg.epochs,
        "seconds": seconds, "images_per_s": images_seen / seconds if seconds else None,
        "temperature": loss_fn.temperature, "pairs": len(pairs), "locations": len(pairs.location_ids),
        "modalities": pairs.modalities, "world_size": dist_info.world_size, "precision": train_cfg.precision,
        "threads": torch.get_num_threads(),  # CPU reductions (and so the exact weights) depend on it
        "sampler": pcfg.sampler,
        "init_checkpoint": relative_path(init_checkpoint, base_dir) if init_checkpoint else None,
        "wise_ft_alpha": pcfg.wise_ft_alpha, **non_default_recipe(pcfg),
    }
    if dist_info.is_main:
        _write_metrics(out_dir / "metrics.jsonl", metrics)
        meta = {"phase": phase, "fingerprint": fingerprint, **non_default_recipe(pcfg)}
        if pcfg.wise_ft_alpha is not None:  # the checkpoints keep the trained weights; the model is the mix
            summary["wise_ft"] = apply_wise_ft(encoder, loss_fn, model_cfg, pcfg.wise_ft_alpha,
                                               f"train.{phase}.wise_ft_alpha")
            meta.update(summary["wise_ft"])
        save_model(out_dir / "model.safetensors", encoder, loss_fn, meta)
        write_json(summary_path, {k: v for k, v in summary.items() if k not in TIMING_KEYS})
        _drop_other_runs(ckpt_root)
    barrier(dist_info)
    return summary


def similarity_neighbours(encoder: GleamEncoder, pairs: TrainPairs, cache: ImageCache, model_cfg: EncoderConfig,
                          pcfg: PhaseConfig, dist_info: DistInfo) -> np.ndarray:
    """Embed every training location's satellite image (sharded over ranks); nearest others per location."""
    size = model_cfg.input_size["satellite"]
    mine = pairs.satellite_paths[dist_info.rank::dist_info.world_size]
    emb = torch.from_numpy(embed_arrays(encoder, [cache.get(p, size) for p in mine]))
    device = next(encoder.parameters()).device
    parts = gather_rows(emb.to(device), dist_info).cpu()
    if dist_info.enabled:  # rows arrive rank by rank; put them back in location order
        n, w = len(pairs.satellite_paths), dist_info.world_size
        order = torch.cat([torch.arange(r, n, w) for r in range(w)])
        emb = torch.empty_like(parts)
        emb[order] = parts
    return nearest_locations(emb.numpy(), pcfg.sim_neighbours)


def run_fingerprint(model_cfg: EncoderConfig, train_cfg: TrainConfig, pcfg: PhaseConfig,
                    manifest_path: Path, init_checkpoint: Path | None) -> str:
    """What determines the result: configs, seed, the manifest's bytes and the init weights' content.

    The init checkpoint is hashed by its tensors (weights_fingerprint), not its bytes: safetensors
    writes metadata keys in no fixed order, so identical weights can give different files.
    wise_ft_alpha is left out: it mixes the finished run's weights, so changing it reuses the run.
    Recipe options at their defaults are left out too: runs from before they existed stay valid."""
    keys = ("seed", "precision", "batchnorm", "label_smoothing", "init_temperature", "augment",
            "temperature_lr_scale")
    at_default = set(RECIPE_FIELDS) - set(non_default_recipe(pcfg))
    blob = {
        "model": model_cfg.model_dump(mode="json"),
        "phase": pcfg.model_dump(mode="json", exclude={"wise_ft_alpha", *at_default}),
        "train": {k: getattr(train_cfg, k) for k in keys}, "manifest": sha256_file(manifest_path),
        "init": weights_fingerprint(Path(init_checkpoint)) if init_checkpoint else None,
    }
    return sha256_text(json.dumps(blob, sort_keys=True))[:16]


def _diverged(phase, step, epoch, loss, batch, local, q_feat, s_feat, pairs, ckpt_root) -> TrainingDiverged:
    bad_rows = (~torch.isfinite(q_feat).all(1) | ~torch.isfinite(s_feat).all(1)).nonzero().flatten().tolist()
    rows = [local[i] for i in bad_rows] or list(batch)
    locs = [pairs.location_ids[pairs.pair_loc[p]] for p in rows]
    shown = ", ".join(locs[:10]) + (f" (+{len(locs) - 10} more)" if len(locs) > 10 else "")
    which = "locations with non-finite embeddings" if bad_rows else "batch locations"
    last = list_checkpoints(ckpt_root)
    kept = f"last good checkpoint kept: {last[-1]}" if last else "no checkpoint was written yet"
    return TrainingDiverged(f"{phase}: loss is {loss.item()} at step {step + 1} (epoch {epoch}); {which}: "
                            f"{shown}; {kept}. Lower the lr, enable clip_norm, or use precision=fp32.")


def _drop_other_runs(ckpt_root: Path) -> None:
    """Other fingerprints' checkpoints: this finished run has replaced the model they were heading to."""
    if ckpt_root.parent.is_dir():
        for other in ckpt_root.parent.iterdir():
            if other.is_dir() and other != ckpt_root and not other.name.startswith("."):
                shutil.rmtree(other, ignore_errors=True)


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_metrics(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> None:
    """`[torchrun --nproc_per_node N] python -m gleam_models.train --config run.json`.

    run.json: {"model": {...EncoderConfig}, "train": {...TrainConfig}, "phase": "phase1",
    "manifest_path": ..., "base_dir": ..., "out_dir": ..., "cache_dir": ..., "init_checkpoint": null,
    "resume": true}. Prints the summary as JSON (rank 0).
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m gleam_models.train", description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    run = read_json(args.config)
    try:
        summary = train_phase(
            EncoderConfig(**run.get("model", {})), TrainConfig(**run.get("train", {})), run["phase"],
            Path(run["manifest_path"]), Path(run["base_dir"]), Path(run["out_dir"]), Path(run["cache_dir"]),
            Path(run["init_checkpoint"]) if run.get("init_checkpoint") else None, run.get("resume", True))
    except GleamError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if setup_distributed(torch.cuda.is_available()).is_main:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
