"""Robust Video Matting (MobileNetV3, ONNX) as a Matter, with its recurrent state carried across frames.

Inputs src (RGB 0..1, NCHW), r1i..r4i (the previous frame's r1o..r4o; zeros [1,1,1,1] at the start
or after reset) and downsample_ratio; outputs fgr, pha, r1o..r4o. Only pha is used: it is the alpha.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facewire.shared.models.onnx import BoundSession, SessionConfig, default_threads
from facewire.shared.models.registry import ModelNotInstalledError, Registry
from facewire.shared.models.variants import load_model
from facewire.shared.types import Alpha, CapturedFrame, Image, Matter

log = logging.getLogger(__name__)

MODEL = "rvm_mobilenetv3"
STATE_IN = ("r1i", "r2i", "r3i", "r4i")
STATE_OUT = ("r1o", "r2o", "r3o", "r4o")


def auto_downsample_ratio(height: int, width: int) -> float:
    """RVM's own rule: the backbone sees at most 512 px on the long side."""
    return min(512.0 / max(height, width), 1.0)


class RvmMatter:
    """Matter backed by an RVM session. Not thread-safe: one instance per capture stream."""

    name = "rvm"

    def __init__(self, session: BoundSession, downsample_ratio: float | None = None) -> None:
        missing = {"src", "downsample_ratio", *STATE_IN} - set(session.input_names)
        if missing or not {"pha", *STATE_OUT} <= set(session.output_names):
            raise ValueError(f"not an RVM session: inputs {list(session.input_names)}, outputs {list(session.output_names)}")
        if downsample_ratio is not None and not 0.0 < downsample_ratio <= 1.0:
            raise ValueError(f"downsample_ratio must be in (0, 1], got {downsample_ratio}")
        self.session = session
        self.downsample_ratio = downsample_ratio
        self._dtype = session.input_dtype("src")  # float16 for RVM's fp16 export
        self._state: dict[str, np.ndarray] = {}
        self._shape: tuple[int, int] | None = None
        self.reset()

    def reset(self) -> None:
        zero = np.zeros((1, 1, 1, 1), dtype=self._dtype)
        self._state = {name: zero for name in STATE_IN}
        self._shape = None

    def alpha(self, image: Image) -> Alpha:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"RVM needs an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if self._shape is not None and self._shape != (h, w):
            self.reset()  # the recurrent state is tied to the frame size
        self._shape = (h, w)
        src = (image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0).astype(self._dtype)
        ratio = self.downsample_ratio or auto_downsample_ratio(h, w)
        feeds: dict[str, npt.ArrayLike] = {"src": src, "downsample_ratio": np.array([ratio], dtype=np.float32)}
        feeds.update(self._state)
        out = self.session.run(feeds, ["pha", *STATE_OUT])
        self._state = {i: out[o] for i, o in zip(STATE_IN, STATE_OUT, strict=True)}
        pha = out["pha"].reshape(out["pha"].shape[-2:]).astype(np.float32)
        return np.clip(pha, 0.0, 1.0)

    def matte(self, frame: CapturedFrame) -> Alpha:
        return self.alpha(frame.image)

    def foreground(self) -> Image | None:
        return None  # no backdrop colour to remove: the frame is the foreground

    def close(self) -> None:
        return None  # the ONNX session is released with the object


def load_rvm_matter(
    models_dir: Path | str | None = None,
    providers: str = "auto",
    *,
    manifest: Path | str | None = None,
    downsample_ratio: float | None = None,
    threads: int | None = None,
    variant: str | None = None,
) -> Matter | None:
    """An RVM Matter, or None (logged) when the model is not installed; a corrupt file raises ModelError."""
    registry = Registry(manifest, models_dir)
    config = SessionConfig(providers=providers, threads=default_threads() if threads is None else threads)
    try:
        loaded = load_model(registry, MODEL, config, variant)
    except ModelNotInstalledError as exc:
        # The MediaPipe matte is the documented default, so a missing optional model is news, not a warning.
        log.info("RVM matting not installed (`facewire-models fetch rvm_mobilenetv3` to use it); using MediaPipe")
        log.debug("RVM: %s", exc)
        return None
    return RvmMatter(loaded.session, downsample_ratio)
