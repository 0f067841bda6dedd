"""Training throughput: the GLEAM-C trainer vs its compute limit and a Sample4Geo-style loop.

Same model (timm backbone + ImageNet weights), same global batch, same pairs, loss and optimizer:
- limit: the trainer's own step (PairModel forward, backward, clip, AdamW with its param groups,
  bf16 autocast, channels_last, frozen BatchNorm) on normalised batches built once, before timing,
  with the trainer's BatchMaker from the trainer's first batches. Nothing else: what the trainer
  could reach if its data path were free;
- trainer: `train_phase` itself (decode-once uint8 cache, tensor augmentation, the balanced
  sampler). Its one-time decode is reported separately;
- reference: images decoded and resized with PIL every step, PIL/torchvision augmentation, eager
  fp32, NCHW, BatchNorm in train mode (what Sample4Geo's train.py does).

Interleaving (shared, busy machines): one `train_phase` call runs all rounds, in this thread.
Its on_progress hook, called synchronously after every `--steps-per-round` trainer steps, runs the
same number of reference and limit steps, alternating their order (T R L, T L R, ...). The trainer
is timed from the hook's return to its next call, so its set-up and the other pipelines never
fall in its time; the first --warmup-rounds rounds (they hold the set-up) are dropped. A load
change then hits neighbouring seconds of all three pipelines; the per-round ratios' median and
spread (quartiles, min-max) say how far a figure can be trusted. A round whose trainer time holds
an epoch end (checkpoint, next epoch's batch plan) is dropped too: that cost is per epoch, not per
step. The hook stops train_phase (an exception) once --rounds rounds are timed.

    .venv/bin/python benchmarks/train_throughput.py --out reports/train_throughput.json
    .venv/bin/python benchmarks/train_throughput.py --manifest data/validated/manifest.parquet --base-dir .

Without --manifest a synthetic dataset is generated in a temp dir.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torchvision import transforms

from data_assets.io import load_image, write_json
from data_assets.manifest import read_manifest, write_manifest
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.data import ImageCache, TrainPairs, aug_generator, load_pairs, sample_aug_params
from gleam_models.encoder import create_encoder
from gleam_models.loss import ContrastiveLoss
from gleam_models.recipe import param_groups
from gleam_models.samplers import epoch_batches
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import (BatchMaker, PairModel, autocast_dtype, freeze_prefixes, lr_at, set_train_mode,
                                train_phase)

PIPELINES = ("trainer", "limit", "reference")


def subset_manifest(manifest: Path, n_pairs: int, out: Path, seed: int = 0) -> Path:
    """n_pairs random train pairs (one per location where possible) as their own manifest."""
    df = read_manifest(manifest)
    train = df[(df["kind"] == "pair") & (df["split"] == "train")].sample(frac=1.0, random_state=seed)
    train = train.drop_duplicates("location_id").head(n_pairs) if train["location_id"].nunique() >= n_pairs else train.head(n_pairs)
    return write_manifest(train, out)


def trainer_batches(pairs: TrainPairs, train_cfg: TrainConfig, epoch: int = 0) -> list:
    """The trainer's batches of an epoch, exactly as train_phase draws them (balanced_random sampler)."""
    return epoch_batches(pairs.pair_loc, pairs.pair_mod, train_cfg.phase1.batch_size, train_cfg.seed, epoch,
                         conflicts=pairs.semi_positives)


class EnoughRounds(Exception):
    """Raised by the hook to end train_phase once every round is timed."""


class ComputeLimit:
    """train_phase's per-step work (lr schedule, forward, finite check, backward, clip, step) on batches made once."""

    def __init__(self, pairs: TrainPairs, cache: ImageCache, model_cfg: EncoderConfig, train_cfg: TrainConfig,
                 device: torch.device, total_steps: int, n_batches: int = 4):
        self.pcfg, self.seed = train_cfg.phase1, train_cfg.seed
        torch.manual_seed(train_cfg.seed)
        encoder = create_encoder(model_cfg)
        freeze_prefixes(encoder, self.pcfg.freeze, "train.phase1.freeze")
        self.model = PairModel(encoder, ContrastiveLoss(train_cfg.init_temperature, train_cfg.label_smoothing)).to(device)
        self.opt = torch.optim.AdamW(param_groups(self.model, self.pcfg.weight_decay, train_cfg.temperature_lr_scale,
                                                  self.pcfg.backbone_lr_scale, self.pcfg.layer_decay), lr=self.pcfg.lr)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        dtype = autocast_dtype(train_cfg.precision, device)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        set_train_mode(encoder, train_cfg.batchnorm, self.pcfg.freeze)
        make = BatchMaker(pairs, cache, model_cfg, encoder, train_cfg.augment, device)
        self.batches = [make(b, 0, sample_aug_params(aug_generator(self.seed, 0, i, 0), len(b)))
                        for i, b in enumerate(trainer_batches(pairs, train_cfg)[:n_batches])]
        self.total_steps = total_steps

    def step(self, i: int) -> int:
        query_groups, sat = self.batches[i % len(self.batches)]
        lr = lr_at(i, self.total_steps, self.pcfg.warmup_steps, self.pcfg.lr, self.pcfg.min_lr_ratio)
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with self.autocast():
            loss, _, _ = self.model(query_groups, sat)
        if not torch.isfinite(loss):
            raise RuntimeError(f"compute limit: loss is {loss.item()} at step {i}")
        loss.backward()
        loss.item()
        if self.pcfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.pcfg.clip_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return 2 * len(sat)


class ReferenceLoop:
    """Sample4Geo-style: PIL decode + resize + augment every step, eager fp32, NCHW, BN training."""

    def __init__(self, pairs: TrainPairs, model_cfg: EncoderConfig, batch: int, lr: float, device: torch.device):
        self.pairs, self.batch, self.device = pairs, batch, device
        self.encoder = create_encoder(model_cfg.model_copy(update={"channels_last": False})).to(
            device, memory_format=torch.contiguous_format)
        self.loss_fn = ContrastiveLoss().to(device)
        self.opt = torch.optim.AdamW(list(self.encoder.parameters()) + list(self.loss_fn.parameters()), lr=lr)
        mean, std = self.encoder.mean.flatten().tolist(), self.encoder.std.flatten().tolist()
        self.tf = {view: transforms.Compose([
            transforms.Resize(tuple(size), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(), transforms.ColorJitter(0.2, 0.2),
            transforms.ToTensor(), transforms.Normalize(mean, std)]) for view, size in model_cfg.input_size.items()}
        self.order = list(range(len(pairs)))
        random.Random(0).shuffle(self.order)
        self.encoder.train()

    def step(self, i: int) -> int:
        p = self.pairs
        idx = [self.order[(i * self.batch + j) % len(self.order)] for j in range(self.batch)]
        q_by_view: dict[str, list[int]] = {}
        for j, k in enumerate(idx):
            q_by_view.setdefault(p.modalities[p.pair_mod[k]], []).append(j)
        sats = torch.stack([self.tf["satellite"](load_image(p.satellite_paths[p.pair_loc[k]]).rotate(
            90 * random.randint(0, 3))) for k in idx]).to(self.device)
        feats, pos = [], []
        for view, js in q_by_view.items():
            x = torch.stack([self.tf[view](load_image(p.query_paths[idx[j]])) for j in js]).to(self.device)
            feats.append(self.encoder(x))
            pos += js
        q = torch.cat(feats)[torch.argsort(torch.tensor(pos)).to(self.device)]
        loss = self.loss_fn(q, self.encoder(sats))
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 1.0)
        self.opt.step()
        return 2 * self.batch


class Interleaver:
    """train_phase's on_progress hook: times the trainer between calls, runs the other pipelines inside."""

    def __init__(self, others: dict[str, Callable[[int], int]], trainer_images: Callable[[int, int], int],
                 steps_per_round: int, warmup_rounds: int, rounds: int, steps_per_epoch: int):
        self.others, self.trainer_images = others, trainer_images
        self.k, self.warmup, self.wanted, self.steps_per_epoch = steps_per_round, warmup_rounds, rounds, steps_per_epoch
        self.rounds: list[dict] = []
        self.seen, self.dropped_epoch_ends, self.last_step, self.left_at = 0, 0, 0, time.perf_counter()

    def __call__(self, step: int, total: int, row: dict) -> None:
        entered = time.perf_counter()
        timed = {"trainer": (self.trainer_images(self.last_step, step), entered - self.left_at)}
        names = list(self.others) if self.seen % 2 == 0 else list(reversed(self.others))
        for name in names:
            t0 = time.perf_counter()
            images = sum(self.others[name](self.seen * self.k + j) for j in range(self.k))
            timed[name] = (images, time.perf_counter() - t0)
        epoch_end = self.last_step > 0 and self.last_step % self.steps_per_epoch == 0  # a row always ends an epoch
        self.dropped_epoch_ends += epoch_end
        if self.seen >= self.warmup and not epoch_end:
            self.rounds.append({"order": ["trainer", *names], **{
                n: {"images": im, "seconds": s, "images_per_s": im / s} for n, (im, s) in timed.items()}})
        self.seen, self.last_step = self.seen + 1, step
        if len(self.rounds) == self.wanted:
            raise EnoughRounds
        self.left_at = time.perf_counter()


def spread(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values), "max": max(values)}


def summarise(rounds: list[dict]) -> dict:
    out = {name: {"images_per_s": sum(r[name]["images"] for r in rounds) / sum(r[name]["seconds"] for r in rounds),
                  "timed_steps_seconds": sum(r[name]["seconds"] for r in rounds),
                  "per_round": spread([r[name]["images_per_s"] for r in rounds])} for name in PIPELINES}
    for other in ("limit", "reference"):
        ratios = [r["trainer"]["images_per_s"] / r[other]["images_per_s"] for r in rounds]
        out[f"trainer_vs_{other}"] = {**spread(ratios), "of_totals": out["trainer"]["images_per_s"]
                                      / out[other]["images_per_s"], "per_round": ratios}
    return out


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def cells(name: str, fmt: str, unit: str = "") -> list[str]:
        v = result["summary"][name]
        whole = v["of_totals"] if "of_totals" in v else v["images_per_s"]
        p = v if "of_totals" in v else v["per_round"]
        return [f"{whole:{fmt}}{unit}", f"{p['median']:{fmt}}{unit} [{p['q1']:{fmt}}-{p['q3']:{fmt}}] "
                                        f"({p['min']:{fmt}}-{p['max']:{fmt}})"]

    table = Table(title=f"training throughput ({result['backbone']}, {result['input_size']}px, batch {result['batch']}, "
                        f"{result['threads']} threads, {result['rounds']} rounds x {result['steps_per_round']} step)")
    for col in ("pipeline", "all rounds", escape("per round: median [q1-q3] (min-max)"), "notes"):
        table.add_column(col)
    table.add_row("limit, images/s", *cells("limit", ".1f"), f"bare step on ready tensors, {result['precision']}")
    table.add_row("trainer, images/s", *cells("trainer", ".1f"),
                  f"train_phase; uint8 cache ({result['one_time_decode_seconds']:.1f}s once)")
    table.add_row("reference, images/s", *cells("reference", ".1f"), "Sample4Geo-style: PIL every step, fp32, NCHW")
    table.add_row("trainer / limit", *cells("trainer_vs_limit", ".2f", "x"), "goal >= 0.85")
    table.add_row("trainer / reference", *cells("trainer_vs_reference", ".2f", "x"), "Sample4Geo-style speed-up")
    Console(width=140).print(table)


def run(manifest: Path, base_dir: Path, model_cfg: EncoderConfig, train_cfg: TrainConfig, work: Path,
        rounds: int, warmup: int) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where train_phase trains
    k, batch = train_cfg.log_every_steps, train_cfg.phase1.batch_size
    pairs = load_pairs(manifest, base_dir)
    t0 = time.perf_counter()
    cache = ImageCache(work / "cache")
    items = [(q, model_cfg.input_size[pairs.modalities[m]]) for q, m in zip(pairs.query_paths, pairs.pair_mod)]
    cache.prefill(items + [(s, model_cfg.input_size["satellite"]) for s in pairs.satellite_paths])
    decode_seconds = time.perf_counter() - t0
    steps_per_epoch = len(pairs) // batch
    epochs = -(-k * (rounds + warmup) // steps_per_epoch) + 1  # + room for the dropped epoch-end rounds
    train_cfg = train_cfg.model_copy(update={"phase1": train_cfg.phase1.model_copy(update={"epochs": epochs})})
    sizes = [2 * len(b) for e in range(epochs) for b in trainer_batches(pairs, train_cfg, e)[:steps_per_epoch]]
    limit = ComputeLimit(pairs, cache, model_cfg, train_cfg, device, epochs * steps_per_epoch)
    reference = ReferenceLoop(pairs, model_cfg, batch, train_cfg.phase1.lr, device)
    hook = Interleaver({"reference": reference.step, "limit": limit.step}, lambda a, b: sum(sizes[a:b]), k, warmup,
                       rounds, steps_per_epoch)
    torch.manual_seed(0)
    with contextlib.suppress(EnoughRounds):
        train_phase(model_cfg, train_cfg, "phase1", manifest, base_dir, work / "run", work / "cache", resume=False,
                    on_progress=hook)
    if len(hook.rounds) != rounds:
        raise RuntimeError(f"expected {rounds} timed rounds, got {len(hook.rounds)}")
    return {"pairs": len(pairs), "steps_per_epoch": steps_per_epoch, "one_time_decode_seconds": decode_seconds,
            "dropped_epoch_end_rounds": hook.dropped_epoch_ends, "rounds_detail": hook.rounds,
            "summary": summarise(hook.rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, help="manifest with train pairs (default: synthetic)")
    ap.add_argument("--base-dir", type=Path, default=Path("."))
    # the README's figures are MobileNetV2's: --backbone mobilenetv2_100 --weights registry:mobilenet_v2
    ap.add_argument("--backbone", default=EncoderConfig.model_fields["backbone"].default)
    ap.add_argument("--weights", default=EncoderConfig.model_fields["weights"].default)
    ap.add_argument("--size", type=int, default=128, help="input side (panorama: size x 2*size)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=40, help="timed rounds")
    ap.add_argument("--steps-per-round", type=int, default=1, help="steps of each pipeline per round")
    ap.add_argument("--warmup-rounds", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--out", type=Path, default=Path("reports/train_throughput.json"))
    args = ap.parse_args()

    s, k = args.size, args.steps_per_round
    model_cfg = EncoderConfig(backbone=args.backbone, weights=args.weights, input_size={
        "satellite": (s, s), "uav": (s, s), "street_map": (s, s), "panorama": (s, 2 * s), "ground": (s, s)})
    # lr as before; the schedule does not change a step's cost. epochs: set by run() from the pairs
    train_cfg = TrainConfig(precision=args.precision, progress=False, log_every_steps=k, phase1=PhaseConfig(
        batch_size=args.batch, lr=1e-4, warmup_steps=0))
    n_pairs = args.batch * k * (args.rounds + args.warmup_rounds)  # one epoch, where the data has that many
    with tempfile.TemporaryDirectory(prefix="gleam-bench-") as tmp:
        work = Path(tmp)
        if args.manifest is None:
            source = make_synthetic_dataset(work / "data", n_locations=max(args.batch, n_pairs // 4 + 1),
                                            modalities=("uav", "street_map", "panorama", "ground"), size=256)
        else:
            source = args.manifest
        manifest = subset_manifest(source, n_pairs, work / "subset.parquet")
        measured = run(manifest, args.base_dir if args.manifest else work, model_cfg, train_cfg, work,
                       args.rounds, args.warmup_rounds)
    result = {"backbone": args.backbone, "input_size": s, "batch": args.batch, "precision": args.precision,
              "threads": torch.get_num_threads(), "rounds": args.rounds, "steps_per_round": k,
              "warmup_rounds": args.warmup_rounds, **measured}
    print_table(result)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
