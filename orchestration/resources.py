"""Dagster resources: the project config, with overrides settable from the launchpad."""
from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from orchestration.config import Project, load_project
from orchestration.env import configure_environment


class GleamConfigResource(ConfigurableResource):
    """params.yaml plus dotted overrides, e.g. launchpad config:

    resources: {gleam: {config: {overrides: ["train.phase1.lr=3e-4"]}}}
    """

    params_path: str = Field(default="params.yaml", description="Path to params.yaml (relative to the working directory).")
    overrides: list[str] = Field(default_factory=list, description="Dotted KEY=VALUE overrides, as with `gleam --set`.")

    def project(self) -> Project:
        project = load_project(Path(self.params_path), self.overrides)
        configure_environment(project.root)
        return project
