"""Matting back-ends behind shared.types.Matter, chosen by `make_matter` (the --matte flag)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from shared.types import Matter

MODES = ("chroma", "learned", "auto", "none")

log = logging.getLogger(__name__)


def _learned(models_dir: str | Path | None, providers: Sequence[str] | None) -> Matter:
    """Robust Video Matting through ONNX Runtime when its model is installed, else MediaPipe."""
    try:
        from sender.matte.rvm import load_rvm_matter  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        load_rvm_matter = None
    if load_rvm_matter is not None:
        kwargs: dict[str, object] = {"models_dir": models_dir}
        if providers is not None:
            kwargs["providers"] = providers
        rvm = load_rvm_matter(**kwargs)
        if rvm is not None:
            log.info("matte: Robust Video Matting (ONNX)")
            return rvm  # type: ignore[no-any-return]
    from sender.matte.learned import LearnedMatter

    log.info("matte: MediaPipe selfie segmentation")
    return LearnedMatter()


def make_matter(
    mode: str, *, models_dir: str | Path | None = None, providers: Sequence[str] | None = None
) -> Matter | None:
    """The Matter for a --matte mode: chroma | learned | auto | none (None: no matte is sent)."""
    if mode == "none":
        return None
    if mode == "chroma":
        from sender.matte.chroma import ChromaMatter

        return ChromaMatter()
    if mode == "learned":
        return _learned(models_dir, providers)
    if mode == "auto":
        from sender.matte.auto import AutoMatter
        from sender.matte.chroma import ChromaMatter

        return AutoMatter(chroma=ChromaMatter(), learned=_learned(models_dir, providers))
    raise ValueError(f"unknown matte mode {mode!r}; expected one of {', '.join(MODES)}")
