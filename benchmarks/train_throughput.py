"""Training throughput: the GLEAM-C trainer vs a Sample4Geo-style reference loop, side by side.

Same model (timm backbone + ImageNet weights), same global batch, same pairs, same loss and
optimizer. The difference is the pipeline:
- reference: images decoded and resized with PIL every step, PIL/torchvision augmentation,
  eager fp32, NCHW, BatchNorm in train mode (what Sample4Geo's train.py does);
- GLEAM-C: `train_phase` itself (decode-once uint8 cache, tensor augmentation, bf16 autocast,
  channels_last, frozen BatchNorm statistics). Its one-time decode is reported separately.

    .venv/bin/python benchmarks/train_throughput.py --out reports/train_throughput.json
    .venv/bin/python benchmarks/train_throughput.py --manifest data/validated/manifest.parquet --base-dir .

Without --manifest a synthetic dataset is generated in a temp dir.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import statistics
import time
from pathlib import Path

import torch
from torchvision import transforms

from data_assets.io import load_image, write_json
from data_assets.manifest import read_manifest, write_manifest
from gleam_models.config import EncoderConfig, PhaseConfig, TrainConfig
from gleam_models.data import load_pairs
from gleam_models.encoder import create_encoder
from gleam_models.loss import ContrastiveLoss
from gleam_models.synthetic import make_synthetic_dataset
from gleam_models.train import train_phase


def subset_manifest(manifest: Path, n_pairs: int, out: Path, seed: int = 0) -> Path:
    """The first n_pairs train pairs (random, one per location where possible) as their own manifest."""
    df = read_manifest(manifest)
    train = df[(df["kind"] == "pair") & (df["split"] == "train")].sample(frac=1.0, random_state=seed)
    train = train.drop_duplicates("location_id").head(n_pairs) if train["location_id"].nunique() >= n_pairs else train.head(n_pairs)
    return write_manifest(train, out)


def reference_loop(pairs, model_cfg: EncoderConfig, batch: int, steps: int, warmup: int, lr: float) -> dict:
    """Sample4Geo-style: PIL decode + resize + augment every step, eager fp32, NCHW, BN training."""
    encoder = create_encoder(model_cfg.model_copy(update={"channels_last": False})).to(memory_format=torch.contiguous_format)
    loss_fn = ContrastiveLoss()
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(loss_fn.parameters()), lr=lr)
    mean, std = encoder.mean.flatten().tolist(), encoder.std.flatten().tolist()

    def pipeline(size):
        return transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                   transforms.RandomHorizontalFlip(), transforms.ColorJitter(0.2, 0.2),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])

    tf = {view: pipeline(tuple(size)) for view, size in model_cfg.input_size.items()}
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    encoder.train()
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        idx = [order[(step * batch + j) % len(order)] for j in range(batch)]
        q_by_view: dict[str, list[int]] = {}
        for j, p in enumerate(idx):
            q_by_view.setdefault(pairs.modalities[pairs.pair_mod[p]], []).append(j)
        sats = torch.stack([tf["satellite"](load_image(pairs.satellite_paths[pairs.pair_loc[p]]).rotate(
            90 * random.randint(0, 3))) for p in idx])
        feats, pos = [], []
        for view, js in q_by_view.items():
            x = torch.stack([tf[view](load_image(pairs.query_paths[idx[j]])) for j in js])
            feats.append(encoder(x))
            pos += js
        q = torch.cat(feats)[torch.argsort(torch.tensor(pos))]
        loss = loss_fn(q, encoder(sats))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    return {"images_per_s": 2 * batch * steps / sum(times), "seconds": sum(times), "steps": steps}


def gleamc_trainer(manifest: Path, base_dir: Path, model_cfg: EncoderConfig, batch: int, steps: int, warmup: int,
                   lr: float, precision: str, work: Path) -> dict:
    """train_phase for warmup+steps steps; throughput from its own metrics log after warm-up."""
    phase = PhaseConfig(epochs=1, batch_size=batch, lr=lr, warmup_steps=0)
    cfg = TrainConfig(precision=precision, progress=False, log_every_steps=1, phase1=phase)
    t0 = time.perf_counter()
    from gleam_models.data import ImageCache
    pairs = load_pairs(manifest, base_dir)
    cache = ImageCache(work / "cache")
    items = [(q, model_cfg.input_size[pairs.modalities[m]]) for q, m in zip(pairs.query_paths, pairs.pair_mod)]
    cache.prefill(items + [(s, model_cfg.input_size["satellite"]) for s in pairs.satellite_paths])
    decode_seconds = time.perf_counter() - t0
    logged: list[dict] = []  # on_progress rows carry images_per_s (metrics.jsonl does not: a DVC output)
    train_phase(model_cfg, cfg, "phase1", manifest, base_dir, work / "run", work / "cache", resume=False,
                on_progress=lambda step, total, row: logged.append(row))
    rows = logged[warmup:]
    images = sum(2 * batch for _ in rows)
    seconds = sum(2 * batch / r["images_per_s"] for r in rows)
    return {"images_per_s": images / seconds, "seconds": seconds, "steps": len(rows),
            "one_time_decode_seconds": decode_seconds, "precision": precision}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, help="manifest with train pairs (default: synthetic)")
    ap.add_argument("--base-dir", type=Path, default=Path("."))
    ap.add_argument("--backbone", default="mobilenetv2_100")
    ap.add_argument("--weights", default="registry:mobilenet_v2")
    ap.add_argument("--size", type=int, default=128, help="input side (panorama: size x 2*size)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per pipeline")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate the two pipelines this many times; medians are reported (shared, noisy machines)")
    ap.add_argument("--out", type=Path, default=Path("reports/train_throughput.json"))
    args = ap.parse_args()

    s = args.size
    model_cfg = EncoderConfig(backbone=args.backbone, weights=args.weights, input_size={
        "satellite": (s, s), "uav": (s, s), "street_map": (s, s), "panorama": (s, 2 * s), "ground": (s, s)})
    n_pairs = args.batch * (args.steps + args.warmup)
    with tempfile.TemporaryDirectory(prefix="gleam-bench-") as tmp:
        work = Path(tmp)
        if args.manifest is None:
            n_loc = max(args.batch, n_pairs // 4 + 1)
            source = make_synthetic_dataset(work / "data", n_locations=n_loc,
                                            modalities=("uav", "street_map", "panorama", "ground"), size=256)
        else:
            source = args.manifest
        manifest = subset_manifest(source, n_pairs, work / "subset.parquet")
        base_dir = args.base_dir if args.manifest else work
        pairs = load_pairs(manifest, base_dir)
        refs, ourss = [], []
        for _ in range(args.rounds):  # interleaved, so load changes hit both pipelines alike
            torch.manual_seed(0)
            refs.append(reference_loop(pairs, model_cfg, args.batch, args.steps, args.warmup, 1e-4))
            ourss.append(gleamc_trainer(manifest, base_dir, model_cfg, args.batch, args.steps, args.warmup, 1e-4,
                                        args.precision, work))
    ratios = [o["images_per_s"] / r["images_per_s"] for o, r in zip(ourss, refs)]
    ref = min(refs, key=lambda r: abs(r["images_per_s"] - statistics.median(x["images_per_s"] for x in refs)))
    ours = min(ourss, key=lambda r: abs(r["images_per_s"] - statistics.median(x["images_per_s"] for x in ourss)))
    ours["one_time_decode_seconds"] = ourss[0]["one_time_decode_seconds"]
    result = {
        "backbone": args.backbone, "input_size": s, "batch": args.batch, "steps": args.steps,
        "threads": torch.get_num_threads(), "pairs": len(pairs), "rounds": args.rounds,
        "reference_sample4geo_style": ref, "gleamc": ours,
        "speedup": statistics.median(ratios), "speedup_per_round": ratios,
    }
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"training throughput ({args.backbone}, {s}px, batch {args.batch}, {torch.get_num_threads()} threads)")
    for col in ("pipeline", "images/s", "timed steps", "notes"):
        table.add_column(col)
    table.add_row("Sample4Geo-style loop", f"{ref['images_per_s']:.1f}", str(ref["steps"]), "PIL every step, fp32, NCHW")
    table.add_row("GLEAM-C train_phase", f"{ours['images_per_s']:.1f}", str(ours["steps"]),
                  f"uint8 cache ({ours['one_time_decode_seconds']:.1f}s once), {args.precision}, channels_last")
    table.add_row("speed-up (median of rounds)", f"{result['speedup']:.2f}x", "",
                  "per round: " + ", ".join(f"{r:.2f}x" for r in ratios))
    Console().print(table)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
