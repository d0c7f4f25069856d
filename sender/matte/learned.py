"""Learned matting for ordinary backgrounds: MediaPipe selfie segmentation, edge-refined.

The segmentation network works at 256x256 (general) or 256x144 (landscape), so its mask is soft
and blurred at full resolution. Where it is uncertain -- a band around the outline -- a colour
guided filter snaps it to the picture's own edges (hair, shoulders); inside and outside the
band the mask is left as it is, so the solid body and the background cannot pick up texture.

The network is fed a copy of the frame already reduced to about `seg_width` pixels wide: MediaPipe
would otherwise convert the whole frame, shrink it to the network's input and blow the mask back
up to the frame's size, all of which costs more than the network itself (measured at 640x480 on
one core: 3.2 ms a call at full size, 2.4 ms at 320x240) and adds nothing the network can see.

The network runs on every `seg_every`-th frame. In between, the last mask is carried to the
current frame by the face's motion (the tracker's head position and scale, a similarity
transform) and the guided filter, which always runs on the current frame, snaps its edges to the
picture. Only a nearly still face (by default under 3% of a face width since the mask was
made) lets a mask be carried: the body does not follow the head exactly, and with larger motion
the carried mask was measured to stray (up to 0.07 mean absolute difference on a fast clip).
Motion, a lost face or a new scene make the network run on that frame instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sender.matte.guided import refine_in_band
from shared.types import Alpha, CapturedFrame, FaceObservation, HeadPose, Image


@dataclass(frozen=True)
class LearnedConfig:
    """model: 0 general (256x256), 1 landscape (256x144, faster). seg_width: the frame is reduced
    to about this width before segmentation (never enlarged). guide_scale: the guided filter's
    coefficients are solved at this fraction of full resolution. band: mask values between band
    and 1 - band are refined. seg_every: run the network on every n-th frame and carry its mask
    by the face's motion in between (1: every frame). max_carry: the largest face motion, in face
    widths (two canonical units), a mask is carried over; more, and the network runs."""

    model: int = 1
    seg_width: int = 320
    seg_every: int = 2
    max_carry: float = 0.03
    guide_scale: float = 0.25
    guide_radius: int = 2
    guide_eps: float = 2e-3
    band: float = 0.03

    def __post_init__(self) -> None:
        if self.seg_every < 1 or self.max_carry < 0:
            raise ValueError(f"seg_every must be >= 1 and max_carry >= 0, got {self.seg_every}, {self.max_carry}")
        if self.seg_width < 64:
            raise ValueError(f"seg_width must be >= 64, got {self.seg_width}")
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
        self.reset()

    def _segmenter(self) -> object:
        if self._seg is None:
            import mediapipe as mp

            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self.config.model)
        return self._seg

    def reset(self) -> None:
        """Forget the carried mask: the next frame is segmented afresh."""
        self._mask_small: Alpha | None = None
        self._mask_pose: HeadPose | None = None
        self._carried = 0
        self.last_segmented = False

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
        res = self._segmenter().process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))  # type: ignore[attr-defined]
        return np.asarray(res.segmentation_mask, dtype=np.float32)

    def raw_mask(self, frame: CapturedFrame) -> Alpha:
        """The network's mask at the frame's size (bilinear from the segmentation size)."""
        img = frame.image
        mask = self._segment(self._small(img))
        return np.asarray(cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR), np.float32)

    def _carry(self, small: Image, frame_w: int, face: FaceObservation | None) -> Alpha | None:
        """The last mask moved by the face's motion since it was made, or None when it cannot be
        carried (none yet, due for a fresh one, no face now or then, other size, large motion)."""
        prev, then = self._mask_small, self._mask_pose
        if prev is None or then is None or face is None or face.state != "tracked":
            return None
        if self._carried + 1 >= self.config.seg_every or prev.shape != small.shape[:2]:
            return None
        now = face.pose
        k = small.shape[1] / frame_w
        ratio = now.scale / max(then.scale, 1e-6)
        moved = math.hypot(now.tx - then.tx, now.ty - then.ty) / max(2.0 * then.scale, 1e-6)
        if moved > self.config.max_carry or abs(math.log(max(ratio, 1e-6))) > self.config.max_carry:
            return None
        # similarity about the head: (tx, ty) then -> (tx, ty) now, scaled by the face's size ratio
        m = np.array(
            [[ratio, 0.0, k * (now.tx - ratio * then.tx)], [0.0, ratio, k * (now.ty - ratio * then.ty)]], np.float32
        )
        return np.asarray(
            cv2.warpAffine(prev, m, (prev.shape[1], prev.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            np.float32,
        )

    def matte(self, frame: CapturedFrame, face: FaceObservation | None = None) -> Alpha:
        c = self.config
        img = frame.image
        small = self._small(img)
        h, w = img.shape[:2]
        carried = self._carry(small, w, face)
        self.last_segmented = carried is None
        if carried is None:
            mask_small = self._segment(small)
            self._mask_small, self._carried = mask_small, 0
            self._mask_pose = face.pose if face is not None and face.state == "tracked" else None
        else:
            mask_small, self._carried = carried, self._carried + 1
        mask = np.asarray(cv2.resize(mask_small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
        # the network's near-certain values are certain: keeps the background at exactly 0
        mask = np.asarray(cv2.threshold(mask, c.band, 0.0, cv2.THRESH_TOZERO)[1], np.float32)
        mask = np.asarray(cv2.max(mask, cv2.threshold(mask, 1.0 - c.band, 1.0, cv2.THRESH_BINARY)[1]), np.float32)
        sw, sh = max(8, round(w * c.guide_scale)), max(8, round(h * c.guide_scale))
        # the guide stays in 0..255 (no scaling pass over the frame); eps is scaled to match. The
        # low-resolution guide and mask come from the reduced frame (the same area averages)
        src = small if small.shape[1] >= sw else img
        guide_low = np.asarray(cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
        mask_low = np.asarray(cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
        eps = c.guide_eps * 255.0 * 255.0
        return refine_in_band(mask, guide_low, mask_low, img, c.guide_radius, eps, lo=c.band)
