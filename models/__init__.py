"""Data that ships inside facewire: the model manifest and the project's own small model files.

Installed as the package `facewire.models` (package data), so a regular, a `--user` and an editable
install all find the files the same way.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The path of a file that ships in this folder (it may not exist; the caller says what is missing)."""
    return Path(str(files(__name__) / name))
