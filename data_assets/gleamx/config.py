"""Config for GLEAM-X dataset generation. Placeholder shape; the GLEAM-X data issue owns it."""
from __future__ import annotations

from typing import Literal

from data_assets.settings import Section


class GleamXDataConfig(Section):
    teacher: Literal["facts", "openai"] = "facts"
    seed: int = 0
