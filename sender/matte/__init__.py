"""Matting back-ends behind shared.types.Matter, chosen by `make_matter` (the --matte flag)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

from facewire.shared.types import Alpha, CapturedFrame, Matter

MODES = ("chroma", "learned", "auto", "none")

log = logging.getLogger(__name__)


@runtime_checkable
class SkippingMatter(Protocol):
    """A Matter that can leave out the frames whose matte nobody asks for (SenderAnalyzer, `matte=False`).

    `optional_matte(frame)` stands for `matte(frame)` on such a frame: None when the matter skipped it, or
    the matte when it must see every frame anyway (a state that follows the video: a chroma key's plate).
    `late_matte(frame)`: the matte of that skipped frame after all (a keyframe was decided on it), as
    `matte(frame)` would have made it. Only a matter whose matte of a frame does not depend on the frames
    before it may skip: what is sent stays the same, frame for frame."""

    def optional_matte(self, frame: CapturedFrame) -> Alpha | None: ...

    def late_matte(self, frame: CapturedFrame) -> Alpha: ...


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
