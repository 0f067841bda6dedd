"""Errors a user can act on. The CLI prints these as one line, without a traceback."""
from __future__ import annotations

from pathlib import Path


class GleamError(Exception):
    """Base class: something is wrong with the input or the config, and the message says what."""


class ConfigError(GleamError):
    """A config value is unknown or invalid; the message names the dotted key."""


class DataError(GleamError):
    """A file or dataset is missing, corrupt or laid out wrongly; the message names the path."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path is not None else reason)
