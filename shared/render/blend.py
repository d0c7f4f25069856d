"""Putting a rendered face into the scene: the scene's light on the face, and seams that do not show.

Shading: the avatar keeps its albedo (its own fine detail and colours) but takes the sender's
low-frequency shading: the face is multiplied by the ratio of the two faces' blurred luminance.
Only a fraction of the colour difference is transferred, because full colour matching pulls a
recogniser towards the sender. Blending: a feathered face mask that stops short of the outline
(so the sender's jaw, hairline and ears stay), weakened where the matte is uncertain and zero
where an occluder (glasses, hair, a hand) covers the face in the keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt

from shared.render import topology as topo
from shared.render.warp import Points, Region
from shared.types import Alpha, Image, Landmarks

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BlendOptions:
    shading_strength: float = 1.0
    chroma_strength: float = 0.8
    feather: float = 0.07  # fraction of the face width
    inset: float = 0.03  # the mask edge sits this far inside the outline
    max_gain: float = 1.7
    forehead_fade: float = 0.75  # of the brows-to-mesh-top height, faded out towards the hairline


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
    # Drawn and blurred at quarter size: the mask is smooth, and this runs every frame. The small
    # canvas has a margin so the feather fades out past the region's edge: a tight region (the
    # chin 2 px from its border) would otherwise cut the fade off and leave a hard edge.
    f = 4 if min(region.width, region.height) >= 64 else 1
    pad = 2 + int(np.ceil(2.0 * sigma / f))
    cols, rows = -(-region.width // f) + 2 * pad, -(-region.height // f) + 2 * pad
    mask = np.zeros((rows, cols), np.float32)
    # Pixel centres: full-size x sits at (x + 0.5) / f - 0.5 on the small canvas, as cv2.resize samples.
    points = (shrunk + 0.5) / f - 0.5 + pad
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, sigma / f), borderType=cv2.BORDER_CONSTANT)
    big = cv2.resize(mask, (cols * f, rows * f), interpolation=cv2.INTER_LINEAR)
    soft = np.ascontiguousarray(big[pad * f : pad * f + region.height, pad * f : pad * f + region.width], np.float32)
    if options.forehead_fade <= 0.0:
        return soft
    return soft * _forehead_fade(landmarks, region, options.forehead_fade)


def _forehead_fade(landmarks: Landmarks, region: Region, fraction: float) -> FloatImage:
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
    if fraction <= 0.0:
        return np.ones((region.height, region.width), np.float32)
    t = np.clip((top - height) / np.float32(fraction * span), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


_BROWS = (105, 66, 334, 296, 107, 336)
# Half-width of the side-of-midline step, as a fraction of the face width. A narrow step fits a
# painted terminator exactly, but whatever of it the two faces do not share becomes a hard line
# down the nose of the result; a broad one reads as light falling off across the face.
_TERMINATOR_WIDTH = 0.2


def _light_basis(size: tuple[int, int], midline: tuple[Points, Points] | None, width: float) -> FloatImage:
    """[1, u, v, u^2, uv, v^2, step] per pixel, u and v in [-1, 1] across the region; shape (h, w, 7).

    `step` is a soft sign of the side of the face's midline (nose bridge to chin): paintings and
    studio portraits are often lit from one side with a terminator down the nose, which a smooth
    quadratic cannot follow. Points are in the (small) region's pixels.
    """
    w, h = size
    quadratic = _quadratic_basis(w, h)
    if midline is None:
        return quadratic
    terms = [quadratic[..., k] for k in range(quadratic.shape[-1])]
    if midline is not None:
        a, b = midline
        direction = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        side = (xs - a[0]) * direction[1] - (ys - a[1]) * direction[0]
        terms.append(np.tanh(side / max(_TERMINATOR_WIDTH * width, 0.5)).astype(np.float32))
    return np.stack(terms, axis=-1)


@lru_cache(maxsize=16)
def _quadratic_basis(w: int, h: int) -> FloatImage:
    """[1, u, v, u^2, uv, v^2] over a w x h grid, cached: the region size repeats from frame to frame."""
    u, v = np.meshgrid(np.linspace(-1, 1, w, dtype=np.float32), np.linspace(-1, 1, h, dtype=np.float32))
    basis = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
    basis.flags.writeable = False
    return basis


def _fit_field(values: FloatImage, weight: FloatImage, basis: FloatImage) -> FloatImage:
    """Weighted least-squares quadratic surface through `values`, evaluated on the whole region."""
    b = basis.reshape(-1, basis.shape[-1])
    w = np.maximum(weight.reshape(-1), 0.0)
    if float(w.sum()) < 1.0:
        return np.full(values.shape, float(values.mean()), np.float32)
    bw = b * w[:, None]
    # Normal equations (7x7), lightly regularised: a tenth of the cost of an SVD least squares.
    gram = (bw.T @ b).astype(np.float64) + 1e-3 * float(w.sum()) * np.eye(b.shape[1])
    coef = np.linalg.solve(gram, (bw.T @ values.reshape(-1)).astype(np.float64))
    return (basis @ coef.astype(np.float32)).astype(np.float32)


def match_shading(
    face: Image,
    scene: Image,
    weight: FloatImage,
    width: float,
    options: BlendOptions,
    midline: tuple[Points, Points] | None = None,
) -> Image:
    """The face with the scene's low-frequency luminance and part of its colour, both region-sized.

    The face's RGB is multiplied by one smooth factor: the ratio of the two fitted light fields
    (the scene's light on the avatar's albedo), rolled off where the face's local brightness would
    pass white. Then the colour moves part of the way to the scene's by one global per-channel
    balance. A factor that is smooth and common to all channels keeps every pixel's chromaticity
    relative to its neighbours: scaling luminance alone, or rolling off per pixel, bleaches the
    brightened skin while its darker creases keep their colour, and fine wrinkles turn into red
    or orange cracks (see also frontal.soften_fine_chroma). Statistics come from quarter-size copies.
    """
    h, w = face.shape[:2]
    f = 4 if min(h, w) >= 32 else 1
    small = (max(1, w // f), max(1, h // f))
    face_bgr = cv2.resize(face, small, interpolation=cv2.INTER_AREA)
    scene_bgr = cv2.resize(scene, small, interpolation=cv2.INTER_AREA)
    face_y = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    scene_y = cv2.cvtColor(scene_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    wt = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    # The light as a smooth quadratic field of log-luminance over the face: it carries direction and
    # falloff but not features (eye sockets, moustaches), which a blur ratio would also transfer.
    small_midline = None if midline is None else (midline[0] / f, midline[1] / f)
    basis = _light_basis(small, small_midline, width / f)
    light_f = _fit_field(np.log(face_y + 8.0), wt, basis)
    light_s = _fit_field(np.log(scene_y + 8.0), wt, basis)
    gain = np.clip(np.exp(light_s - light_f), 1.0 / options.max_gain, options.max_gain)
    if options.shading_strength != 1.0:
        gain = gain**options.shading_strength
    # Brightening a painted face to a bright room would clip its skin to flat white: the roll-off
    # acts on the local brightness (features blurred away), so a crease and the skin around it
    # get the same factor.
    local = cv2.GaussianBlur(face_y, (0, 0), max(0.5, 0.04 * width / f))
    factor = (_rolloff(local * gain) + 1.0) / (local + 1.0)
    lit_small = face_bgr.astype(np.float32) * factor[..., None]
    balance = _colour_balance(lit_small, scene_bgr, wt, options.chroma_strength)
    factor3 = factor[..., None] * np.asarray(balance or (1.0, 1.0, 1.0), np.float32)
    factor_full = cv2.resize(factor3.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.multiply(face, factor_full, dtype=cv2.CV_8U), np.uint8)


def _colour_balance(face: FloatImage, scene: Image, weight: FloatImage, strength: float) -> tuple[float, float, float] | None:
    """Per-channel gains (B, G, R) taking part of the way from the face's mean colour to the scene's.

    A gain, not an additive chroma shift: every pixel keeps its chromaticity relative to its
    neighbours, so dark creases and near-black pupils change in proportion to the skin around them.
    An additive shift weighted by brightness leaves creases with the avatar's old colour, and fine
    wrinkles turn into red or orange lines on re-toned skin. Normalised to unit luminance: the
    light comes from the shading field alone.
    """
    wsum = float(weight.sum())
    if wsum <= 1e-3 or strength <= 0.0:
        return None
    wt = weight[..., None]
    mean_f = (face.astype(np.float32) * wt).reshape(-1, 3).sum(0) / wsum
    mean_s = (scene.astype(np.float32) * wt).reshape(-1, 3).sum(0) / wsum
    gains = (np.maximum(mean_s, 4.0) / np.maximum(mean_f, 4.0)) ** strength
    gains /= float(gains @ _LUMA_BGR)
    # Bounded: a large cast turns dark features (eyes, brows) into false colours.
    gains = np.clip(gains, 1.0 / _MAX_BALANCE, _MAX_BALANCE)
    return float(gains[0]), float(gains[1]), float(gains[2])


_LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)
_MAX_BALANCE = 1.35


_ROLLOFF_KNEE = 200.0


def _rolloff(x: FloatImage) -> FloatImage:
    """Tone curve: identity below the knee, then an exponential approach to white instead of clipping."""
    room = 255.0 - _ROLLOFF_KNEE
    above = 255.0 - room * np.exp(-(np.maximum(x, _ROLLOFF_KNEE) - _ROLLOFF_KNEE) / room)
    return np.where(x <= _ROLLOFF_KNEE, x, above).astype(np.float32)


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
