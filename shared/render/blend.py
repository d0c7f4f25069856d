"""Putting a rendered face into the scene: the scene's light on the face, and seams that do not show.

Shading: the avatar keeps its albedo (its own fine detail and colours) but takes the sender's
low-frequency shading: the face is multiplied by the ratio of the two faces' blurred luminance.
Only a fraction of the chroma difference is transferred, because full colour matching pulls a
recogniser towards the sender. Blending: a feathered face mask that stops short of the outline
(so the sender's jaw, hairline and ears stay), weakened where the matte is uncertain and zero
where an occluder (glasses, hair, a hand) covers the face in the keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from shared.render import topology as topo
from shared.render.warp import Region
from shared.types import Alpha, Image, Landmarks

FloatImage = npt.NDArray[np.float32]
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR


@dataclass(frozen=True)
class BlendOptions:
    shading_strength: float = 1.0
    chroma_strength: float = 0.8
    feather: float = 0.07  # fraction of the face width
    inset: float = 0.03  # the mask edge sits this far inside the outline
    max_gain: float = 2.5


def face_width(landmarks: Landmarks) -> float:
    oval = landmarks[topo.face_oval_ring(), :2]
    return float(oval[:, 0].max() - oval[:, 0].min())


def face_mask(landmarks: Landmarks, region: Region, options: BlendOptions) -> FloatImage:
    """Feathered mask of the face inside its outline, region-sized, 1 inside, 0 beyond the outline."""
    width = face_width(landmarks)
    mask = np.zeros((region.height, region.width), np.uint8)
    oval = landmarks[topo.face_oval_ring(), :2] - np.array([region.x0, region.y0], np.float32)
    cv2.fillPoly(mask, [np.round(oval * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    inset = max(1, int(round(options.inset * width)))
    sigma = max(1.0, options.feather * width / 2.0)
    # Erode by inset plus the feather's reach so the blurred edge ends at the outline, not past it.
    reach = inset + int(round(sigma * 1.5))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    mask = cv2.erode(mask, kernel)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)
    return soft * _forehead_fade(landmarks, region)


def _forehead_fade(landmarks: Landmarks, region: Region) -> FloatImage:
    """1 up to above the brows, fading to 0 at the top of the mesh: the hairline is the sender's.

    The top of the mesh is where hair, fringes and hats begin on both faces; leaving it to the
    keyframe hides the seam there and keeps an avatar's fringe off the sender's forehead.
    """
    p = landmarks[:, :2].astype(np.float64)
    up = p[topo.FOREHEAD] - p[topo.CHIN]
    up /= max(float(np.linalg.norm(up)), 1e-6)
    top = float(p[topo.FOREHEAD] @ up)
    brows = float(p[list(_BROWS)].mean(axis=0) @ up)
    span = max(top - brows, 1.0)
    xs = np.arange(region.width, dtype=np.float32) + region.x0
    ys = np.arange(region.height, dtype=np.float32) + region.y0
    height = xs[None, :] * np.float32(up[0]) + ys[:, None] * np.float32(up[1])
    t = np.clip((top - height) / np.float32(0.75 * span), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


_BROWS = (105, 66, 334, 296, 107, 336)


def _lowpass(values: FloatImage, weight: FloatImage, sigma: float) -> FloatImage:
    """Weight-normalised Gaussian blur on a quarter-size copy (the shading is smooth anyway)."""
    h, w = values.shape[:2]
    factor = 4 if min(h, w) >= 32 else 1
    small = (max(1, w // factor), max(1, h // factor))
    v = cv2.resize(values * weight, small, interpolation=cv2.INTER_AREA)
    m = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    s = max(0.8, sigma / factor)
    v = cv2.GaussianBlur(v, (0, 0), s)
    m = cv2.GaussianBlur(m, (0, 0), s)
    out = v / np.maximum(m, 1e-3)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def match_shading(face: Image, scene: Image, weight: FloatImage, width: float, options: BlendOptions) -> Image:
    """The face with the scene's low-frequency luminance and part of its colour, both region-sized."""
    f = face.astype(np.float32)
    s = scene.astype(np.float32)
    lum_f = f @ _LUMA
    lum_s = s @ _LUMA
    sigma = max(2.0, width / 7.0)
    low_f = _lowpass(lum_f, weight, sigma)
    low_s = _lowpass(lum_s, weight, sigma)
    gain = np.clip((low_s + 8.0) / (low_f + 8.0), 1.0 / options.max_gain, options.max_gain)
    gain = gain**options.shading_strength
    out = f * gain[..., None]
    wsum = float(weight.sum())
    if wsum > 1.0 and options.chroma_strength > 0:
        mean_o = (out * weight[..., None]).reshape(-1, 3).sum(0) / wsum
        mean_s = (s * weight[..., None]).reshape(-1, 3).sum(0) / wsum
        lum_o, lum_sc = float(mean_o @ _LUMA), float(mean_s @ _LUMA)
        # Per-channel gains that move the chromaticity, not the brightness (that is the shading's job).
        chroma = (mean_s / max(lum_sc, 1.0)) / np.maximum(mean_o / max(lum_o, 1.0), 1e-3)
        out *= (chroma**options.chroma_strength).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def swap_weight(mask: FloatImage, alpha: Alpha | None, occluder: FloatImage | None) -> FloatImage:
    """How much of the rendered face to use per pixel: less where the matte is unsure, none under occluders."""
    weight = mask
    if alpha is not None:
        weight = weight * np.clip((alpha - 0.3) / 0.5, 0.0, 1.0)
    if occluder is not None:
        weight = weight * (1.0 - occluder)
    return weight.astype(np.float32)


def blend(base: Image, face: Image, weight: FloatImage) -> Image:
    w = weight[..., None]
    return (base.astype(np.float32) * (1.0 - w) + face.astype(np.float32) * w + 0.5).astype(np.uint8)
