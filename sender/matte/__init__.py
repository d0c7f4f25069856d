"""Matting back-ends behind shared.types.Matter, chosen by `make_matter` (the --matte flag)."""

from __future__ import annotations

import logging
from pathlib import Path

from facewire.shared.types import Matter

MODES = ("chroma", "learned", "auto", "none")

log = logging.getLogger(__name__)


def _learned(models_dir: str | Path | None, providers: str) -> Matter:
    """Robust Video Matting through ONNX Runtime when its model is installed, else MediaPipe."""
    try:
        from facewire.sender.matte.rvm import load_rvm_matter
    except ImportError:
        pass
    else:
        rvm = load_rvm_matter(models_dir, providers)
        if rvm is not None:
            log.info("matte: Robust Video Matting (ONNX)")
            return rvm
    from facewire.sender.matte.learned import LearnedMatter

    log.info("matte: MediaPipe selfie segmentation")
    return LearnedMatter()


def make_matter(mode: str, *, models_dir: str | Path | None = None, providers: str = "auto") -> Matter | None:
    """The Matter for a --matte mode: chroma | learned | auto | none (None: no matte is sent).

    learned and auto use Robust Video Matting (ONNX Runtime; `providers` as facewire.sender.matte.rvm
    takes them) when its model is installed under `models_dir`, else MediaPipe selfie
    segmentation."""
    if mode == "none":
        return None
    if mode == "chroma":
        from facewire.sender.matte.chroma import ChromaMatter

        return ChromaMatter()
    if mode == "learned":
        return _learned(models_dir, providers)
    if mode == "auto":
        from facewire.sender.matte.auto import AutoMatter
        from facewire.sender.matte.chroma import ChromaMatter

        return AutoMatter(chroma=ChromaMatter(), learned=_learned(models_dir, providers))
    raise ValueError(f"unknown matte mode {mode!r}; expected one of {', '.join(MODES)}")
