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
    max_gain: float = 2.0


def face_width(landmarks: Landmarks) -> float:
    oval = landmarks[topo.face_oval_ring(), :2]
    return float(oval[:, 0].max() - oval[:, 0].min())


def face_mask(landmarks: Landmarks, region: Region, options: BlendOptions) -> FloatImage:
    """Feathered mask of the face inside its outline, region-sized, 1 inside, 0 beyond the outline."""
    width = face_width(landmarks)
    oval = landmarks[topo.face_oval_ring(), :2] - np.array([region.x0, region.y0], np.float32)
    inset = options.inset * width
    sigma = max(1.0, options.feather * width / 2.0)
    # Shrink the outline by the inset plus the feather's reach so the blurred edge ends at the outline.
    centre = oval.mean(axis=0)
    offsets = oval - centre
    radius = np.linalg.norm(offsets, axis=1, keepdims=True)
    shrunk = centre + offsets * np.clip(1.0 - (inset + 1.5 * sigma) / np.maximum(radius, 1e-3), 0.2, 1.0)
    # Drawn and blurred at quarter size: the mask is smooth, and this runs every frame.
    f = 4 if min(region.width, region.height) >= 64 else 1
    small = (max(1, region.width // f), max(1, region.height // f))
    mask = np.zeros((small[1], small[0]), np.float32)
    cv2.fillPoly(mask, [np.round(shrunk / f * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, sigma / f))
    soft = cv2.resize(mask, (region.width, region.height), interpolation=cv2.INTER_LINEAR)
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


def _blur_weighted(values: FloatImage, weight: FloatImage, sigma: float) -> FloatImage:
    v = cv2.GaussianBlur(values * weight, (0, 0), sigma)
    m = cv2.GaussianBlur(weight, (0, 0), sigma)
    return v / np.maximum(m, 1e-3)


def match_shading(face: Image, scene: Image, weight: FloatImage, width: float, options: BlendOptions) -> Image:
    """The face with the scene's low-frequency luminance and part of its colour, both region-sized.

    All statistics are taken on quarter-size copies (they are low-frequency by construction); only
    the final per-pixel gain is applied at full size.
    """
    h, w = face.shape[:2]
    f = 4 if min(h, w) >= 32 else 1
    small = (max(1, w // f), max(1, h // f))
    face_s = cv2.resize(face, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    scene_s = cv2.resize(scene, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    wt = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    # Broad enough to carry the light (direction, falloff), not the features (eye sockets, moustaches).
    sigma = max(0.8, max(2.0, width / 4.0) / f)
    low_f = _blur_weighted(face_s @ _LUMA, wt, sigma)
    low_s = _blur_weighted(scene_s @ _LUMA, wt, sigma)
    gain = np.clip((low_s + 8.0) / (low_f + 8.0), 1.0 / options.max_gain, options.max_gain)
    if options.shading_strength != 1.0:
        gain = gain**options.shading_strength
    chroma = np.ones(3, np.float32)
    wsum = float(wt.sum())
    if wsum > 1e-3 and options.chroma_strength > 0:
        shaded = face_s * gain[..., None]
        mean_o = (shaded * wt[..., None]).reshape(-1, 3).sum(0) / wsum
        mean_s = (scene_s * wt[..., None]).reshape(-1, 3).sum(0) / wsum
        lum_o, lum_sc = float(mean_o @ _LUMA), float(mean_s @ _LUMA)
        # Per-channel gains that move the chromaticity, not the brightness (that is the shading's job).
        ratio = (mean_s / max(lum_sc, 1.0)) / np.maximum(mean_o / max(lum_o, 1.0), 1e-3)
        # Bounded: a large per-channel gain turns dark features (eyes, brows) into false colours.
        chroma = np.clip(ratio**options.chroma_strength, 0.75, 1.33).astype(np.float32)
    gain3 = cv2.resize((gain[..., None] * chroma).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.multiply(face, gain3, dtype=cv2.CV_8U), np.uint8)


def swap_weight(mask: FloatImage, alpha: Alpha | None, occluder: FloatImage | None) -> FloatImage:
    """How much of the rendered face to use per pixel: less where the matte is unsure, none under occluders."""
    weight = mask
    if alpha is not None:
        weight = weight * np.clip((alpha - 0.3) / 0.5, 0.0, 1.0)
    if occluder is not None:
        weight = weight * (1.0 - occluder)
    return weight.astype(np.float32)


def blend(base: Image, face: Image, weight: FloatImage) -> Image:
    w = np.ascontiguousarray(weight, np.float32)
    return np.asarray(cv2.blendLinear(face, base, w, 1.0 - w), np.uint8)
