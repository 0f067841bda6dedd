"""Retrieval evaluation of GLEAM-C. Placeholder; the evaluation work owns this module."""
from __future__ import annotations

from data_assets.settings import Section


class EvalConfig(Section):
    ks: list[int] = [1, 5, 10]
