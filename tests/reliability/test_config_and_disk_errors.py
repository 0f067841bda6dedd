"""Item 9: unclear failures become one clear line - bad encoding, non-finite floats, duplicate keys,
a full disk - and nothing torn is left behind. Plus property-based tests of the config parsers."""
from __future__ import annotations

import math
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_assets.errors import ConfigError
from orchestration.config import apply_overrides, load_project, parse_override
from pipeline_support import PROJECT_ROOT, gleam, tmp_project


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_non_utf8_params_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes((PROJECT_ROOT / "params.yaml").read_bytes() + "\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_project(params)
    assert "not UTF-8" in _one_error_line(gleam("config", "check", cwd=tmp_path))


@pytest.mark.parametrize("override", ["train.phase1.lr=.inf", "train.phase1.lr=-.inf", "train.phase1.lr=.nan",
                                      "gleamx.languages.en=.nan", "validate.max_bad_fraction=.nan"])
def test_non_finite_floats_are_refused_in_every_section(tmp_path, override):
    with pytest.raises(ConfigError, match="finite number"):
        load_project(tmp_project(tmp_path), [override])


@pytest.mark.parametrize("extra, line", [("\ntrain:\n  seed: 3\n", "key 'train' is given twice"),
                                         (None, "key 'seed' is given twice")])
def test_duplicated_keys_are_refused(tmp_path, extra, line):
    params = tmp_project(tmp_path)
    text = params.read_text()
    if extra is None:  # nested: a second seed inside the train section
        head, sep, rest = text.partition("\ntrain:")
        line_end = rest.index("\n")
        text = head + sep + rest[:line_end] + "\n  seed: 5" + rest[line_end:]
        assert text.count("seed: 5") == 1
    params.write_text(text + (extra or ""))
    with pytest.raises(ConfigError, match=line):
        load_project(params)
    assert "given twice" in _one_error_line(gleam("config", "check", cwd=tmp_path))


@pytest.fixture()
def full_disk(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk path is untested")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_nothing_torn(tmp_path, full_disk):
    tmp_project(tmp_path)
    result = gleam("embedded-dataset", "--set", f"paths.data_dir={full_disk}/data", cwd=tmp_path)
    assert result.returncode == 28 and "disk full" in _one_error_line(result)
    left = [p for p in full_disk.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left == [], left


def test_checkpoint_writes_report_a_full_disk_as_enospc(tmp_path, full_disk):
    import errno

    import torch

    from gleam_models.checkpoint import save_checkpoint
    from gleam_models.encoder import create_encoder
    from gleam_models.loss import ContrastiveLoss
    from rel_support import TINY

    encoder, loss = create_encoder(TINY), ContrastiveLoss()
    big = torch.nn.Linear(600, 600)  # ~1.4 MB of optimizer state: more than the disk holds
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(big.parameters()))
    big(torch.ones(1, 600)).sum().backward()
    optimizer.step()
    with pytest.raises(OSError) as err:
        save_checkpoint(full_disk / "ckpt", 1, encoder, loss, optimizer, None, None, {}, keep=2)
    assert err.value.errno == errno.ENOSPC
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------ property-based: the parsers

KEY = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
SCALAR = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.none(),
                   st.floats(allow_nan=False, allow_infinity=False, width=32),
                   st.text(string.ascii_letters + string.digits + " _-", min_size=1, max_size=12)
                   .filter(lambda s: s.strip() == s and yaml.safe_load(s) == s))


@given(keys=st.lists(KEY, min_size=1, max_size=4), value=SCALAR)
def test_parse_override_round_trips_any_dotted_key_and_scalar(keys, value):
    text = ".".join(keys) + "=" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    parsed_keys, parsed = parse_override(text)
    assert parsed_keys == keys
    assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value, rel_tol=1e-6))


@given(keys=st.lists(KEY, min_size=1, max_size=4), value=st.integers())
def test_apply_overrides_sets_exactly_that_key(keys, value):
    raw = {"keep": {"me": 1}}
    out = apply_overrides(raw, [".".join(keys) + f"={value}"])
    node = out
    for k in keys:
        node = node[k]
    assert node == value and raw == {"keep": {"me": 1}}  # the input is never modified
    if keys[0] != "keep":
        assert out["keep"] == {"me": 1}


@given(text=st.text(max_size=60))
def test_any_override_text_is_parsed_or_refused_with_a_config_error(text):
    try:
        parse_override(text)
    except ConfigError:
        pass


PARAMS = (PROJECT_ROOT / "params.yaml").read_text()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(PARAMS)), junk=st.text(max_size=20))
def test_any_damaged_params_file_loads_or_is_refused_with_a_config_error(tmp_path, cut, junk):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS[:cut] + junk + PARAMS[cut + len(junk):], encoding="utf-8")
    try:
        load_project(params)
    except ConfigError as e:
        assert str(params) in str(e)
    finally:
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
