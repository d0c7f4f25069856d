"""Learned matting for ordinary backgrounds: MediaPipe selfie segmentation, edge-refined.

The segmentation network works at 256x256 (general) or 256x144 (landscape), so its mask is soft
and blurred at full resolution. Where it is uncertain -- a band around the outline -- a colour
guided filter snaps it to the picture's own edges (hair, shoulders); inside and outside the
band the mask is left as it is, so the solid body and the background cannot pick up texture.

The network is fed a copy of the frame already reduced to about `seg_width` pixels wide: MediaPipe
would otherwise convert the whole frame, shrink it to the network's input and blow the mask back
up to the frame's size, all of which costs more than the network itself (measured at 640x480 on
one core: 3.2 ms a call at full size, 2.4 ms at 320x240) and adds nothing the network can see.

Segmenting and refining cost about as much as the face tracker, and run on every frame, beside the
tracker (the sender tracks the face while this matter works: SenderAnalyzer). A frame that shows
nothing new keeps the last matte, for a steady outline: at most every other frame (`seg_every`),
when the face has barely moved since the last segmented frame (under 3% of a face width and of its
size by default) and the picture around the outline has not changed beyond that motion (hair,
hands and shoulders move on their own), that frame's matte is carried over, moved by the face's
motion (the tracker's head position and scale, a similarity transform). Otherwise, and with no
face or in a new scene, the fresh matte is kept. Carrying by the head's motion alone strayed on a
fast clip (up to 0.07 mean absolute difference from a fresh matte), hence the two gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.sender.matte.edges import decontaminate
from facewire.sender.matte.guided import refine_in_band
from facewire.shared.types import Alpha, CapturedFrame, FaceSource, HeadPose, Image, face_of


@dataclass(frozen=True)
class LearnedConfig:
    """model: 0 general (256x256), 1 landscape (256x144, faster). seg_width: the frame is reduced
    to about this width before segmentation (never enlarged). guide_scale: the guided filter's
    coefficients are solved at this fraction of full resolution. band: mask values between band
    and 1 - band are refined. seg_every: run the network on every n-th frame and carry its mask
    by the face's motion in between (1: every frame). max_carry: the largest face motion, in face
    widths (two canonical units), a mask is carried over; more, and the network runs. max_change:
    the largest mean grey-level change around the outline (after that motion) a mask is carried
    over. full_res_refine: evaluate the guided filter at the frame's size instead of the reduced
    frame's (then upsampled): sharper by about half a pixel, ~1.5 ms more at 640x480; the frame
    messages carry the matte at 1/8 size, so only keyframes could show the difference."""

    model: int = 1
    seg_width: int = 320
    seg_every: int = 2
    max_carry: float = 0.03
    max_change: float = 4.0
    full_res_refine: bool = False
    guide_scale: float = 0.25
    guide_radius: int = 2
    guide_eps: float = 2e-3
    band: float = 0.03

    def __post_init__(self) -> None:
        if self.seg_every < 1 or self.max_carry < 0 or self.max_change < 0:
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
        """Forget the carried mask: the next frame is segmented afresh."""
        self._alpha: Alpha | None = None  # the matte of the last segmented frame
        self._mask_pose: HeadPose | None = None
        self._grey: Image | None = None  # the reduced frame (grey) that matte was made from
        self._edge: npt.NDArray[np.uint8] | None = None  # where that mask was unsure, widened
        self._carried = 0
        self.last_segmented = False
        self._last: tuple[Image, Alpha] | None = None  # the last frame and its matte, for foreground()

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

    def _carry(self, small: Image, frame_w: int, face_source: FaceSource) -> npt.NDArray[np.float64] | None:
        """The face's motion since the last segmented frame as a 2x3 similarity in full-frame
        pixels, when that frame's matte may be carried over to this one; else None (none yet,
        due for a fresh one, no face now or then, other size, large motion, changed picture).
        The face is asked for last: a frame due for a fresh matte is segmented while it is tracked."""
        then, grey_then, edge_then = self._mask_pose, self._grey, self._edge
        if then is None or grey_then is None or edge_then is None or self._alpha is None:
            return None
        if self._carried + 1 >= self.config.seg_every:
            return None
        if grey_then.shape != small.shape[:2] or self._alpha.shape[1] != frame_w:
            return None  # another frame size
        face = face_of(face_source)
        if face is None or face.state != "tracked":
            return None
        now = face.pose
        ratio = now.scale / max(then.scale, 1e-6)
        moved = math.hypot(now.tx - then.tx, now.ty - then.ty) / max(2.0 * then.scale, 1e-6)
        if moved > self.config.max_carry or abs(math.log(max(ratio, 1e-6))) > self.config.max_carry:
            return None
        # similarity about the head: (tx, ty) then -> (tx, ty) now, scaled by the face's size ratio
        full = np.array([[ratio, 0.0, now.tx - ratio * then.tx], [0.0, ratio, now.ty - ratio * then.ty]])
        k = small.shape[1] / frame_w
        m = full * np.array([[1.0, 1.0, k], [1.0, 1.0, k]])
        size = (small.shape[1], small.shape[0])
        # the picture around the outline must not have changed beyond that motion (hair, hands and
        # shoulders move on their own): mean absolute difference there, in grey levels
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        moved_grey = cv2.warpAffine(grey_then, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        edge = cv2.warpAffine(edge_then, m, size, flags=cv2.INTER_NEAREST)
        if cv2.countNonZero(edge) and cv2.mean(cv2.absdiff(grey, moved_grey), edge)[0] > self.config.max_change:
            return None
        return full

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

    def matte(self, frame: CapturedFrame, face: FaceSource = None) -> Alpha:
        alpha = self._matte(frame, face)
        self._last = (frame.image, alpha)
        return alpha

    def foreground(self) -> Image | None:
        """The last frame with the room taken out of the matte's soft edge (facewire.sender.matte.edges).

        A few milliseconds at 640x480, so the sender asks only for frames that become keyframes;
        it asks right after matte(), while the frame is still the one analysed.
        """
        if self._last is None:
            return None
        image, alpha = self._last
        return decontaminate(image, alpha)

    def _matte(self, frame: CapturedFrame, face: FaceSource) -> Alpha:
        c = self.config
        img = frame.image
        small = self._small(img)
        h, w = img.shape[:2]
        # The fresh matte is made before the carry is judged, even on a frame that will be carried: the judgement
        # needs the frame's face, which the sender tracks meanwhile (SenderAnalyzer), so the matte's ~6 ms overlap
        # the tracker's instead of following them. A carry now spends CPU (~3 ms a carried frame) for stability.
        mask_small = self._segment(small)
        fresh = self._refine(img, small, mask_small)
        motion = self._carry(small, w, face)
        self.last_segmented = motion is None
        if motion is not None and self._alpha is not None:
            self._carried += 1
            if abs(motion[0, 0] - 1.0) < 1e-3 and math.hypot(motion[0, 2], motion[1, 2]) < 0.25:
                return self._alpha.copy()
            # a similarity keeps exact 0s and 1s away from the outline
            return np.asarray(
                cv2.warpAffine(self._alpha, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), np.float32
            )
        alpha = fresh
        self._carried = 0
        if c.seg_every > 1:
            tracked = face_of(face)
            self._mask_pose = tracked.pose if tracked is not None and tracked.state == "tracked" else None
            self._alpha = alpha
            self._grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), np.uint8)
            self._edge = np.asarray(cv2.dilate(cv2.inRange(mask_small, 0.05, 0.95), np.ones((5, 5), np.uint8)), np.uint8)
        return alpha


def _certain(mask: Alpha, band: float) -> Alpha:
    """The network's near-certain values made certain (below band 0, above 1 - band 1), so the
    background stays at exactly 0 and the body at exactly 1."""
    out = np.asarray(cv2.threshold(mask, band, 0.0, cv2.THRESH_TOZERO)[1], np.float32)
    return np.asarray(cv2.max(out, cv2.threshold(out, 1.0 - band, 1.0, cv2.THRESH_BINARY)[1]), np.float32)
