"""metrics/headline/*.json (DVC's metrics): a few figures under short names, equal to the full files'."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.config import load_project
from orchestration.headline import HEADLINES, discard, headline_path, write_headline
from pipeline_support import PROJECT_ROOT


@pytest.mark.parametrize("name", sorted(HEADLINES))
def test_headline_figures_come_from_the_full_metrics_file(name, tmp_path):
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    project = load_project(tmp_path / "params.yaml")
    doc = json.loads((PROJECT_ROOT / "metrics" / f"{name}.json").read_text())
    figures = json.loads(write_headline(project, name, doc).read_text())
    assert figures and all(isinstance(v, (int, float)) and len(k) <= 15 for k, v in figures.items()), figures
    if name == "gleamc":
        cross = doc["runs"]["phase2"]["splits"]["test_cross"]
        assert figures["uav_R@1_cross"] == cross["uav"]["query_to_satellite"]["R@1"]
        r1 = [m["query_to_satellite"]["R@1"] for m in cross.values()]
        assert figures["mean_R@1_cross"] == pytest.approx(sum(r1) / len(r1), abs=0.005)
    if name == "gleamx":
        assert figures["accuracy"] == doc["gleamx"]["accuracy"]
    committed = PROJECT_ROOT / "metrics" / "headline" / f"{name}.json"
    assert figures == json.loads(committed.read_text()), "the committed headline is not the committed full file's"
    discard(project, name)
    assert not headline_path(project, name).exists()
