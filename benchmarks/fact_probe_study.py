"""How true are the measured facts? The GLEAM-X fact probes' readings per input feature set, on VALIDATION.

    .venv/bin/python benchmarks/fact_probe_study.py [--params params.yaml] [--out reports/benchmarks/fact_probes.json]

The probes (gleam_models/gleamx/fact_probes.py) read each image's dominant land cover and its share
into the prompt; a false reading becomes a false fact in the explanation. They are fitted on the
GLEAM-X training images' ground truth and read the val images here (test is never read), once per
feature set: the GLEAM-C phase-2 embedding the model uses, that embedding plus colour statistics
(RGB mean/std, a hue x saturation and a value histogram, excess-green shares), the frozen ImageNet
embedding, and both embeddings. A reading's facts are checked as the evaluation checks a stated
fact (fact_check.check_fact: the dominant class exactly, its share within 10 points). A second
table keeps only the readings whose dominant class has at least a given probability
(gleamx_model.fact_hint_min_confidence), on val and on the training images read cross-fitted. Needs a
project that has run the pipeline up to gleamx_dataset and gleamc_phase2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from data_assets.gleamx.schema import read_records
from data_assets.io import sha256_file, write_json
from gleam_models.checkpoint import weights_fingerprint
from gleam_models.data import decode_resized
from gleam_models.embed import embed_arrays
from gleam_models.encoder import load_encoder
from gleam_models.gleamx.fact_check import check_fact, truths_from_manifest
from gleam_models.gleamx.fact_probes import FactProbes, cross_fitted
from orchestration.config import load_project


def labelled_images(path: Path, truths: dict) -> dict[tuple[str, str], str]:
    """(image path, view) -> location id, for every image of the split whose location has ground truth."""
    out = {}
    for r in read_records(path):
        out[(r.query_path, r.modality)] = r.query_location_id
        out[(r.satellite_path, "satellite")] = r.satellite_location_id
    return {k: v for k, v in sorted(out.items()) if v in truths}


def colour_features(image: np.ndarray) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(image).convert("HSV")).reshape(-1, 3).astype(np.float32)
    rgb = image.reshape(-1, 3).astype(np.float32) / 255
    excess_green = 2 * rgb[:, 1] - rgb[:, 0] - rgb[:, 2]
    hue_sat = np.histogram2d(hsv[:, 0], hsv[:, 1], bins=[12, 4], range=[[0, 256], [0, 256]])[0].ravel() / len(hsv)
    value = np.histogram(hsv[:, 2], bins=8, range=(0, 256))[0] / len(hsv)
    green = [(excess_green > t).mean() for t in (0.0, 0.05, 0.1, 0.2)]
    return np.concatenate([rgb.mean(0), rgb.std(0), hue_sat, value, green])


def features(encoders: dict, keys: list[tuple[str, str]], root: Path, sizes: dict) -> dict[str, np.ndarray]:
    images = [decode_resized(root / path, tuple(sizes[view])) for path, view in keys]
    out = {"colour": np.stack([colour_features(a) for a in images])}
    for name, encoder in encoders.items():
        emb = np.zeros((len(keys), encoder.embed_dim), np.float32)
        for view in sorted({v for _, v in keys}):  # one input size per view
            idx = [i for i, (_, v) in enumerate(keys) if v == view]
            emb[idx] = embed_arrays(encoder, [images[i] for i in idx])
        out[name] = emb
    return out


def fact_accuracy(readings: list[dict], locations: list[str], truths: dict) -> dict[str, float | int]:
    counts = {"dominant": [0, 0], "share": [0, 0]}
    for reading, location in zip(readings, locations):
        dom, share = reading["dominant"], reading["land_cover"].get(reading["dominant"])
        facts = [("dominant", "dominant", dom)] + ([("share", "cover", (dom, round(100 * share)))] if share is not None else [])
        for kind, key, value in facts:
            status, _ = check_fact(key, value, truths[location])
            if status != "unverifiable":
                counts[kind][0] += status == "correct"
                counts[kind][1] += 1
    right, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
    return {"dominant": counts["dominant"][0] / max(1, counts["dominant"][1]),
            "share": counts["share"][0] / max(1, counts["share"][1]), "all": right / max(1, total), "facts": total}


THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def by_confidence(readings: list[dict], locations: list[str], truths: dict) -> list[dict]:
    """Facts true among the readings a gate at each dominant-class confidence keeps
    (gleamx_model.fact_hint_min_confidence: below it, the prompt says the image is unclear)."""
    rows = []
    for t in THRESHOLDS:
        kept = [i for i, r in enumerate(readings) if r["confidence"] >= t]
        acc = fact_accuracy([readings[i] for i in kept], [locations[i] for i in kept], truths)
        rows.append({"min_confidence": t, "kept": len(kept) / max(1, len(readings)), **acc})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks/fact_probes.json"))
    args = ap.parse_args()
    project = load_project(args.params)
    truths = truths_from_manifest(project.validated_manifest)
    train = labelled_images(project.data_dir / "gleamx" / "train.jsonl", truths)
    val = labelled_images(project.data_dir / "gleamx" / "val.jsonl", truths)
    model_cfg = project.cfg.model
    tower = project.path(project.cfg.gleamx_model.vision_checkpoint)
    encoders = {"phase2": load_encoder(model_cfg, tower), "imagenet": load_encoder(model_cfg, None)}
    f_train = features(encoders, list(train), project.root, model_cfg.input_size)
    f_val = features(encoders, list(val), project.root, model_cfg.input_size)
    variants = {"phase-2 embedding (the model's)": ["phase2"], "phase-2 embedding + colour": ["phase2", "colour"],
                "ImageNet embedding": ["imagenet"], "both embeddings": ["phase2", "imagenet"]}
    rows = {}
    for name, parts in variants.items():
        x_train, x_val = (np.hstack([f[p] for p in parts]) for f in (f_train, f_val))
        probes = FactProbes.fit(x_train, [v for _, v in train], [truths[loc] for loc in train.values()])
        rows[name] = fact_accuracy(probes.read(x_val, [v for _, v in val]), list(val.values()), truths)
    # the model's own features: val, and the training images read as the training prompts read them
    # (cross-fitted: by probes that never saw their location), a larger sample of new locations
    probes = FactProbes.fit(f_train["phase2"], [v for _, v in train], [truths[loc] for loc in train.values()])
    gate = {"val": by_confidence(probes.read(f_val["phase2"], [v for _, v in val]), list(val.values()), truths),
            "train_cross_fitted": by_confidence(
                cross_fitted(f_train["phase2"], [v for _, v in train], [truths[loc] for loc in train.values()],
                             list(train.values())), list(train.values()), truths)}
    produced_by = {"phase2_fingerprint": weights_fingerprint(tower), "imagenet": model_cfg.backbone,
                   "manifest_sha256": sha256_file(project.validated_manifest)}
    print(f"probes fitted on {len(train)} training images, read on {len(val)} val images; tower {produced_by['phase2_fingerprint']}")
    print("| features | dominant class right | share within 10 pts | all facts true | facts |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['dominant']:.1f}% | {100 * r['share']:.1f}% | {100 * r['all']:.1f}% | {r['facts']} |")
    print("\nphase-2 embedding, readings kept by the dominant class's probability:")
    print("| read | min confidence | images kept | dominant class right | share within 10 pts | all facts true |")
    print("| --- | --- | --- | --- | --- | --- |")
    for split, table in gate.items():
        for r in table:
            print(f"| {split} | {r['min_confidence']:.1f} | {100 * r['kept']:.0f}% | {100 * r['dominant']:.1f}% | "
                  f"{100 * r['share']:.1f}% | {100 * r['all']:.1f}% |")
    write_json(args.out, {"split": "val", "train_images": len(train), "val_images": len(val), **produced_by,
                          "rows": rows, "by_confidence": gate})
    print(args.out)


if __name__ == "__main__":
    main()
