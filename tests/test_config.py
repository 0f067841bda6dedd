"""The one config: typed schema, dotted overrides, clear errors, resolved config saved."""
from __future__ import annotations

import shutil

import pytest
import yaml

from data_assets.errors import ConfigError
from orchestration.config import apply_overrides, load_project, parse_override


@pytest.fixture
def params(tmp_path, project_root):
    target = tmp_path / "params.yaml"
    shutil.copyfile(project_root / "params.yaml", target)
    return target


def test_project_params_file_is_valid(project_root):
    project = load_project(project_root / "params.yaml")
    assert project.root == project_root
    assert project.cfg.ingest.sources, "the embedded default must be ingested"


def test_overrides_reach_nested_sections_and_lists(params):
    project = load_project(params, ["train.phase1.lr=3e-4", "ingest.sources.0.root=/datasets/u1652",
                                    "validate.max_bad_fraction=0.5", "evaluate.ks=[1, 3]"])
    assert project.cfg.train.phase1.lr == pytest.approx(3e-4)
    assert project.cfg.ingest.sources[0].root == "/datasets/u1652"
    assert project.cfg.validate_.max_bad_fraction == 0.5
    assert project.cfg.evaluate.ks == [1, 3]
    assert project.overrides[0] == "train.phase1.lr=3e-4"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.phase1.lrr=1", "train.phase1.lrr: unknown key"),
        ("train.phase1.lr=-1", "train.phase1.lr: Input should be greater than 0"),
        ("validate.max_bad_fraction=abc", "validate.max_bad_fraction: Input should be a valid number"),
        ("ingest.sources.0.adapter=imagenet", "ingest.sources.0.adapter: Input should be"),
        ("nosection.x=1", "nosection: unknown key"),
        ("ingest.sources.5.root=/x", "ingest.sources.5 is not an index"),
        ("train.phase1.lr", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_dotted_key_and_reason(params, override, expected):
    with pytest.raises(ConfigError) as err:
        load_project(params, [override])
    assert expected in str(err.value)


def test_bad_file_contents_are_reported_with_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found"):
        load_project(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("paths: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_project(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_project(listy)


def test_override_values_are_parsed_as_yaml_scalars():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")
    raw = {"a": {"b": 1}}
    assert apply_overrides(raw, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}
    assert raw == {"a": {"b": 1}}, "overrides must not mutate the loaded file"


def test_resolved_config_is_saved_next_to_outputs(params, tmp_path):
    project = load_project(params, ["embedded.seed=7"])
    path = project.save_resolved(tmp_path / "out", sections=["embedded"])
    doc = yaml.safe_load(path.read_text())
    assert doc["overrides"] == ["embedded.seed=7"]
    assert doc["params"]["embedded"]["seed"] == 7
    assert doc["config_fingerprint"] == project.fingerprint(["paths", "embedded"])
    assert load_project(params).fingerprint() != project.fingerprint()
    other_section = load_project(params, ["embedded.seed=7", "train.phase1.lr=0.5"])
    assert yaml.safe_load(other_section.save_resolved(tmp_path / "b", sections=["embedded"]).read_text()) == {
        **doc, "overrides": ["embedded.seed=7", "train.phase1.lr=0.5"]}, "a section not written changed the file"


def test_relative_paths_resolve_against_the_params_file(params, tmp_path):
    project = load_project(params)
    assert project.data_dir == tmp_path / "data"
    assert project.validated_manifest == tmp_path / "data" / "validated" / "manifest.parquet"
