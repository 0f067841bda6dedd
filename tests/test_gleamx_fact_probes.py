"""Measured facts (gleamx_model.fact_hints): probes on the tower's embedding, their prompt line, the model path."""
from __future__ import annotations

import numpy as np
import pytest

from data_assets.errors import DataError
from gleam_models.gleamx.fact_check import check_fact, parse_facts
from gleam_models.gleamx.fact_probes import PROBES_FILE, FactProbes, cross_fitted, hint_text


def _world(n: int = 120, dims: int = 16, seed: int = 0):
    """Embeddings whose first dims encode the dominant class and the tree share (as a tower's would)."""
    rng = np.random.default_rng(seed)
    dominant = rng.choice(["tree", "building", "other"], n)
    tree = np.where(dominant == "tree", rng.uniform(0.5, 0.9, n), rng.uniform(0.0, 0.3, n))
    emb = rng.normal(0, 0.3, (n, dims))
    for i, cls in enumerate(("tree", "building", "other")):
        emb[:, i] += 3.0 * (dominant == cls)
    emb[:, 3] = 4 * tree
    truths = [{"dominant": d, "land_cover": {"tree": float(t), "building": None, "road": None, "other": 1 - float(t)}}
              for d, t in zip(dominant, tree)]
    views = ["satellite" if i % 2 else "uav" for i in range(n)]
    return emb, views, truths


def test_probes_read_dominant_cover_and_share_and_round_trip(tmp_path):
    emb, views, truths = _world()
    probes = FactProbes.fit(emb[:80], views[:80], truths[:80])
    read = probes.read(emb[80:], views[80:])
    assert np.mean([r["dominant"] == t["dominant"] for r, t in zip(read, truths[80:])]) >= 0.9
    assert np.mean([abs(r["land_cover"]["tree"] - t["land_cover"]["tree"]) <= 0.10 for r, t in zip(read, truths[80:])]) >= 0.8
    assert all("road" not in r["land_cover"] and r["dominant"] != "road" for r in read)  # never annotated, never said
    probes.save(tmp_path / PROBES_FILE)
    assert FactProbes.load(tmp_path / PROBES_FILE).read(emb[80:], views[80:]) == read
    with pytest.raises(DataError, match="fact probes missing"):
        FactProbes.load(tmp_path / "none.safetensors")


def test_probes_saved_twice_are_the_same_bytes(tmp_path):
    """models/gleamx*/fact_probes.safetensors is hashed by DVC: safetensors' random metadata order
    (two keys: a coin flip per save) made fresh clones' dvc.lock disagree."""
    emb, views, truths = _world()
    probes = FactProbes.fit(emb, views, truths)
    blobs = set()
    for i in range(8):
        probes.save(tmp_path / f"{i}.safetensors")
        blobs.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    assert FactProbes.load(tmp_path / "0.safetensors").read(emb, views) == probes.read(emb, views)


def test_cross_fitted_readings_come_from_probes_that_never_saw_the_location():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(60, 40))  # no signal: a probe can only memorise
    truths = [{"dominant": rng.choice(["tree", "building"]), "land_cover": {}} for _ in range(60)]
    views, groups = ["uav"] * 60, [f"l{i // 2}" for i in range(60)]
    in_sample = FactProbes.fit(emb, views, truths).read(emb, views)
    held_out = cross_fitted(emb, views, truths, groups)
    acc = lambda rs: np.mean([r["dominant"] == t["dominant"] for r, t in zip(rs, truths)])  # noqa: E731
    assert acc(in_sample) >= 0.95 and acc(held_out) < 0.8


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_hint_states_checkable_facts_in_the_teachers_words(lang):
    reading = {"dominant": "tree", "land_cover": {"tree": 0.62}}
    text = hint_text(reading, {"dominant": "building", "land_cover": {"building": 0.4}}, lang)
    facts = parse_facts(text, lang)
    keys = sorted(f.key for f in facts)
    assert keys.count("dominant") == 2, (text, facts)
    truth = {"dominant": "tree", "land_cover": {"tree": 0.6}, "annotated": ["tree"]}
    first = next(f for f in facts if f.key == "dominant")
    assert check_fact("dominant", first.value, truth)[0] == "correct"


def test_languages_left_out_of_fact_hint_languages_get_no_hint():
    reading = {"dominant": "tree", "land_cover": {"tree": 0.6}}
    assert hint_text(reading, reading, "zh", ["en"]) is None
    assert hint_text(reading, reading, "en", ["en"]).startswith("Measured:")
    from gleam_models.gleamx.modeling import GleamXConfig

    # the saved model keeps what it was trained with: none stays none; absent (older models) = every language
    assert GleamXConfig(fact_hint_languages=[]).fact_hint_languages == []
    assert GleamXConfig().fact_hint_languages == ["en", "zh"]


def test_a_fact_hints_model_trains_saves_probes_and_prompts_with_them(tmp_path):
    from gleam_models.gleamx.build import merge
    from gleam_models.gleamx.generate import ExplainInput, load_explainer
    from gleam_models.gleamx.train import run_fingerprint, train_gleamx
    from gleamx_tiny import tiny_project

    root = tmp_path / "data"
    records, model_cfg, train_cfg = tiny_project(root)
    cfg = model_cfg.model_copy(update={"fact_hints": True})
    truths = {f"l{i}": {"dominant": ("tree", "building")[i % 2], "land_cover": {"tree": 0.1 + 0.15 * i}}
              for i in range(6)}
    with pytest.raises(DataError, match="fact_hints: 0 training images have ground truth"):
        train_gleamx(cfg, train_cfg.model_copy(update={"steps": 1}), records, root, tmp_path / "none", tmp_path / "cache")
    assert run_fingerprint(cfg, train_cfg, records, root, truths) != run_fingerprint(cfg, train_cfg, records, root, {})
    assert run_fingerprint(model_cfg, train_cfg, records, root) == run_fingerprint(model_cfg, train_cfg, records, root, truths)
    gated = cfg.model_copy(update={"fact_hint_min_confidence": 0.8})
    assert run_fingerprint(gated, train_cfg, records, root, truths) != run_fingerprint(cfg, train_cfg, records, root, truths)
    assert run_fingerprint(cfg.model_copy(update={"fact_hint_min_confidence": 0.0}), train_cfg, records, root,
                           truths) == run_fingerprint(cfg, train_cfg, records, root, truths)  # runs made before the gate
    train_gleamx(cfg, train_cfg.model_copy(update={"steps": 2}), records, root, tmp_path / "m", tmp_path / "cache",
                 truths=truths)
    assert (tmp_path / "m" / PROBES_FILE).is_file()
    q, s = root / "images" / "uav0.png", root / "images" / "sat0.png"
    items = [ExplainInput(q, s, "uav", "en"), ExplainInput(q, s, "uav", "zh")]
    for model_dir in (tmp_path / "m", merge(tmp_path / "m", tmp_path / "merged", root, tmp_path / "cache")):
        ex = load_explainer(model_dir, cache_dir=tmp_path / "cache", base_dir=root, max_new_tokens=4)
        hints = ex.hints(items)
        assert hints[0].startswith("Measured: image 1 is mostly") and hints[1].startswith("测量：图 1 ")
        assert all(o.new_tokens > 0 for o in ex.explain(items, 2))
    ex.model.config.fact_hint_min_confidence = 1.01  # the saved model's gate: no reading passes it
    assert ex.hints(items)[0] == "Measured: image 1 is not clear enough to measure; image 2 is not clear enough to measure."
    # the languages travel with the saved model: an English-only model gives Chinese prompts no line
    en_only = cfg.model_copy(update={"fact_hint_languages": ["en"]})
    assert run_fingerprint(en_only, train_cfg, records, root, truths) != run_fingerprint(cfg, train_cfg, records, root, truths)
    train_gleamx(en_only, train_cfg.model_copy(update={"steps": 1}), records, root, tmp_path / "en", tmp_path / "cache",
                 truths=truths)
    hints = load_explainer(tmp_path / "en", cache_dir=tmp_path / "cache", base_dir=root, max_new_tokens=4).hints(items)
    assert hints[0].startswith("Measured:") and hints[1] is None


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_reading_below_the_confidence_gate_is_called_unclear_and_states_no_fact(lang):
    from gleam_models.gleamx.fact_probes import unmeasured_images

    sure = {"dominant": "tree", "land_cover": {"tree": 0.62}, "confidence": 0.95}
    unsure = {"dominant": "building", "land_cover": {"building": 0.4}, "confidence": 0.55}
    text = hint_text(sure, unsure, lang, min_confidence=0.8)
    facts = parse_facts(text, lang)
    assert [f.value for f in facts if f.key == "dominant"] == ["tree"], (text, facts)
    assert hint_text(sure, unsure, lang) == hint_text(sure, {**unsure, "confidence": 0.99}, lang, min_confidence=0.8)
    assert unmeasured_images(sure, unsure, 0.8) == {"satellite"} and unmeasured_images(sure, unsure, 0.0) == set()
    assert unmeasured_images(unsure, unsure, 0.6) == {"query", "satellite"}


def test_the_confidence_is_the_read_class_probability():
    emb, views, truths = _world()
    read = FactProbes.fit(emb[:80], views[:80], truths[:80]).read(emb[80:], views[80:])
    confidence = np.array([r["confidence"] for r in read])
    right = np.array([r["dominant"] == t["dominant"] for r, t in zip(read, truths[80:])])
    assert ((confidence > 1 / 3) & (confidence <= 1)).all()  # three classes seen: the argmax is above a third
    noisy = FactProbes.fit(emb[:80] + np.random.default_rng(2).normal(0, 3, emb[:80].shape), views[:80], truths[:80])
    assert np.mean([r["confidence"] for r in noisy.read(emb[80:] * 0, views[80:])]) < confidence[right].mean()
