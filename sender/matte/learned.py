"""Learned matting for ordinary backgrounds: MediaPipe selfie segmentation, edge-refined.

The segmentation network works at 256x256 (general) or 256x144 (landscape), so its mask is soft
and blurred at full resolution. Where it is uncertain -- a band around the outline -- a colour
guided filter snaps it to the picture's own edges (hair, shoulders); inside and outside the
band the mask is left as it is, so the solid body and the background cannot pick up texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sender.matte.guided import refine_in_band
from shared.types import Alpha, CapturedFrame, FaceObservation


@dataclass(frozen=True)
class LearnedConfig:
    """model: 0 general (256x256), 1 landscape (256x144, faster). guide_scale: the guided filter's
    coefficients are solved at this fraction of full resolution. band: mask values between band
    and 1 - band are refined."""

    model: int = 1
    guide_scale: float = 0.25
    guide_radius: int = 2
    guide_eps: float = 2e-3
    band: float = 0.03

    def __post_init__(self) -> None:
        if self.model not in (0, 1):
            raise ValueError(f"model must be 0 (general) or 1 (landscape), got {self.model}")
        if not 0.0 < self.guide_scale <= 1.0 or self.guide_radius < 1 or self.guide_eps <= 0:
            raise ValueError("guide_scale in (0, 1], guide_radius >= 1 and guide_eps > 0 are required")
        if not 0.0 < self.band < 0.5:
            raise ValueError(f"band must be in (0, 0.5), got {self.band}")


class LearnedMatter:
    """shared.types.Matter on MediaPipe selfie segmentation (bundled weights, no download)."""

    name = "learned"

    def __init__(self, config: LearnedConfig | None = None) -> None:
        self.config = config or LearnedConfig()
        self._seg: object | None = None

    def _segmenter(self) -> object:
        if self._seg is None:
            import mediapipe as mp

            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self.config.model)
        return self._seg

    def reset(self) -> None:
        """Selfie segmentation keeps no state across frames; nothing to forget."""

    def close(self) -> None:
        if self._seg is not None:
            self._seg.close()  # type: ignore[attr-defined]
            self._seg = None

    def raw_mask(self, frame: CapturedFrame) -> Alpha:
        img = frame.image
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {img.shape} {img.dtype}")
        res = self._segmenter().process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))  # type: ignore[attr-defined]
        return np.asarray(res.segmentation_mask, dtype=np.float32)

    def matte(self, frame: CapturedFrame, face: FaceObservation | None = None) -> Alpha:
        c = self.config
        mask = self.raw_mask(frame)
        # the network's near-certain values are certain: keeps the background at exactly 0
        mask = np.asarray(cv2.threshold(mask, c.band, 0.0, cv2.THRESH_TOZERO)[1], np.float32)
        mask = np.maximum(mask, np.asarray(cv2.threshold(mask, 1.0 - c.band, 1.0, cv2.THRESH_BINARY)[1], np.float32))
        img = frame.image
        h, w = img.shape[:2]
        sw, sh = max(8, round(w * c.guide_scale)), max(8, round(h * c.guide_scale))
        # the guide stays in 0..255 (no scaling pass over the frame); eps is scaled to match
        guide_low = np.asarray(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
        mask_low = np.asarray(cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
        eps = c.guide_eps * 255.0 * 255.0
        return refine_in_band(mask, guide_low, mask_low, img, c.guide_radius, eps, lo=c.band)
