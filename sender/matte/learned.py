"""Learned matting for ordinary backgrounds: MediaPipe selfie segmentation, edge-refined.

The segmentation network works at 256x256 (general) or 256x144 (landscape), so its mask is soft
and blurred at full resolution. Where it is uncertain -- a band around the outline -- a colour
guided filter snaps it to the picture's own edges (hair, shoulders); inside and outside the
band the mask is left as it is, so the solid body and the background cannot pick up texture.

The network is fed a copy of the frame already reduced to about `seg_width` pixels wide: MediaPipe
would otherwise convert the whole frame, shrink it to the network's input and blow the mask back
up to the frame's size, all of which costs more than the network itself (measured at 640x480 on
one core: 3.2 ms a call at full size, 2.4 ms at 320x240) and adds nothing the network can see.

Every frame is segmented and refined afresh (~6 ms at 640x480 on one core, about the face tracker's
cost, which the sender runs beside it: SenderAnalyzer). A matte carried over from the last frame by
the face's motion saved that while the two ran one after the other; beside the tracker it saved
nothing, cost ~0.8 ms a frame in checks, and differed from a fresh matte by 0.002-0.006 mean
absolute difference (d6, w1, d12).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facewire.sender.graph import process_image
from facewire.sender.matte.edges import decontaminate
from facewire.sender.matte.guided import refine_in_band
from facewire.shared.types import Alpha, CapturedFrame, CoarseMatte, Image


@dataclass(frozen=True)
class LearnedConfig:
    """model: 0 general (256x256), 1 landscape (256x144, faster). seg_width: the frame is reduced
    to about this width before segmentation (never enlarged). guide_scale: the guided filter's
    coefficients are solved at this fraction of full resolution. band: mask values between band
    and 1 - band are refined. full_res_refine: evaluate the guided filter at the frame's size instead of the reduced
    frame's (then upsampled): sharper by about half a pixel, ~1.5 ms more at 640x480; the frame
    messages carry the matte at 1/8 size, so only keyframes could show the difference."""

    model: int = 1
    seg_width: int = 320
    full_res_refine: bool = False
    guide_scale: float = 0.25
    guide_radius: int = 2
    guide_eps: float = 2e-3
    band: float = 0.03

    def __post_init__(self) -> None:
        if self.seg_width < 64:
            raise ValueError(f"seg_width must be >= 64, got {self.seg_width}")
        if self.model not in (0, 1):
            raise ValueError(f"model must be 0 (general) or 1 (landscape), got {self.model}")
        if not 0.0 < self.guide_scale <= 1.0 or self.guide_radius < 1 or self.guide_eps <= 0:
            raise ValueError("guide_scale in (0, 1], guide_radius >= 1 and guide_eps > 0 are required")
        if not 0.0 < self.band < 0.5:
            raise ValueError(f"band must be in (0, 0.5), got {self.band}")


class LearnedMatter:
    """facewire.shared.types.Matter on MediaPipe selfie segmentation (bundled weights, no download)."""

    name = "learned"

    def __init__(self, config: LearnedConfig | None = None) -> None:
        self.config = config or LearnedConfig()
        self._seg: object | None = None
        self.reset()

    def _segmenter(self) -> object:
        if self._seg is None:
            import mediapipe as mp

            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self.config.model)
        return self._seg

    def reset(self) -> None:
        """Forget the last frame (kept for foreground())."""
        self._last: tuple[Image, Alpha] | None = None  # the last frame and its matte, for foreground()
        self._coarse: tuple[CapturedFrame, CoarseMatte] | None = None  # the last frame segmented, and its mask

    def close(self) -> None:
        if self._seg is not None:
            self._seg.close()  # type: ignore[attr-defined]
            self._seg = None

    def _small(self, img: Image) -> Image:
        """The frame reduced for the network (halving steps first: OpenCV's 2x area reduction is a fast path)."""
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {img.shape} {img.dtype}")
        small = img
        while small.shape[1] >= 2 * self.config.seg_width:
            small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if small.shape[1] > self.config.seg_width:
            sw = self.config.seg_width
            sh = max(8, round(small.shape[0] * sw / small.shape[1]))
            small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
        return np.asarray(small, np.uint8)

    def _segment(self, small: Image) -> Alpha:
        res = process_image(self._segmenter(), cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        return np.asarray(res["segmentation_mask"], dtype=np.float32)

    def raw_mask(self, frame: CapturedFrame) -> Alpha:
        """The network's mask at the frame's size (bilinear from the segmentation size)."""
        img = frame.image
        mask = self._segment(self._small(img))
        return np.asarray(cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR), np.float32)

    def _refine(self, img: Image, small: Image, mask_small: Alpha) -> Alpha:
        """The network's mask with its uncertain band snapped to the picture's edges by the guided
        filter, at the frame's size."""
        c = self.config
        h, w = img.shape[:2]
        sw, sh = max(8, round(w * c.guide_scale)), max(8, round(h * c.guide_scale))
        eps = c.guide_eps * 255.0 * 255.0  # the guide stays in 0..255 (no scaling pass over the frame)
        certain_small = _certain(mask_small, c.band)
        if small.shape[1] >= sw:
            # the coefficients' low-resolution guide and mask from the reduced frame: area
            # averages of area averages, at a quarter of the cost
            guide_low = np.asarray(cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
            mask_low = np.asarray(cv2.resize(certain_small, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
            if not c.full_res_refine and small.shape[1] < w:
                alpha_small = refine_in_band(certain_small, guide_low, mask_low, small, c.guide_radius, eps, lo=c.band)
                return np.asarray(cv2.resize(alpha_small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
        mask = _certain(np.asarray(cv2.resize(mask_small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32), c.band)
        if small.shape[1] < sw:
            guide_low = np.asarray(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
            mask_low = np.asarray(cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
        return refine_in_band(mask, guide_low, mask_low, img, c.guide_radius, eps, lo=c.band)

    def matte(self, frame: CapturedFrame) -> Alpha:
        coarse = self.coarse(frame) or self._segmented(frame)
        alpha = self._refine(frame.image, coarse.image, coarse.alpha)
        self._last = (frame.image, alpha)
        return alpha

    def _segmented(self, frame: CapturedFrame) -> CoarseMatte:
        small = self._small(frame.image)
        coarse = CoarseMatte(small, self._segment(small))
        self._coarse = (frame, coarse)
        return coarse

    def optional_matte(self, frame: CapturedFrame, coarse: bool = False) -> Alpha | None:
        """None: a frame is segmented on its own (MediaPipe's selfie model keeps no state between frames, checked
        by tests/test_matte.py), so one nobody asks a matte for is left out; with `coarse` it is segmented (what
        the matte costs is mostly its refinement, at the frame's size: ~2.3 of ~5 ms at 640x480), not refined."""
        if coarse:
            self._segmented(frame)
        return None

    def late_matte(self, frame: CapturedFrame) -> Alpha:
        """`matte(frame)`, from its segmentation when `optional_matte` made one."""
        return self.matte(frame)

    def coarse(self, frame: CapturedFrame) -> CoarseMatte | None:
        return self._coarse[1] if self._coarse is not None and self._coarse[0] is frame else None

    def foreground(self) -> Image | None:
        """The last frame with the room taken out of the matte's soft edge (facewire.sender.matte.edges).

        A few milliseconds at 640x480, so the sender asks only for frames that become keyframes;
        it asks right after matte(), while the frame is still the one analysed.
        """
        if self._last is None:
            return None
        image, alpha = self._last
        return decontaminate(image, alpha)


def _certain(mask: Alpha, band: float) -> Alpha:
    """The network's near-certain values made certain (below band 0, above 1 - band 1), so the
    background stays at exactly 0 and the body at exactly 1."""
    out = np.asarray(cv2.threshold(mask, band, 0.0, cv2.THRESH_TOZERO)[1], np.float32)
    return np.asarray(cv2.max(out, cv2.threshold(out, 1.0 - band, 1.0, cv2.THRESH_BINARY)[1]), np.float32)
