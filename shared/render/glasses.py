"""Glasses the avatar wears, drawn as glasses: a rigid layer that moves with the head, not with the skin.

Left in the skin texture, an avatar's frames are warped by the face mesh like skin: they bend when
the sender talks, smiles, blinks or turns (the lower rim follows a closing lid, the top bar a raised
brow). Here the frames are found on the avatar picture once (occlusion.avatar_spectacles), painted
over with the skin round them (so the mesh warps bare skin), carried into the frontal texture's
frame as an RGBA layer, and drawn per frame with one affine map fitted to landmarks that do not
move with expression (eye corners, nose bridge, temples), the way the irises are drawn whole
(facewire.shared.render.iris).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import eye_openings, normalised_blur
from facewire.shared.render.occlusion import FRAME_EDGE, avatar_spectacles, brow_hulls, mean_eye_width
from facewire.shared.types import Image, Landmarks

FloatArray = npt.NDArray[np.float32]

# Landmarks near the glasses' plane that expression does not move: the nose bridge, the forehead's
# midline, the temples and the cheekbones under the eyes. Not the nose's tip: on a turned head it moves
# with its depth, not with the eyes; nor the eye corners: the retargeted mesh moves them on a blink.
ANCHORS = (168, 6, 197, 9, 8, 127, 356, 116, 345, 123, 352)
_FILL_LEVELS = (0.12, 0.06, 0.03, 0.015)  # of the face width: the fill's blurs, coarse to fine
_FILL_ENOUGH = 0.2  # share of a blur's window on skin for its level to set the fill
_LASH_LINE = 0.012  # of the face width round the eyes' openings: never filled
_FILL_BERTH = 0.1  # of the eye's width round the openings: lashes and liner, not skin to spread
_LEVEL_STEP = 0.5  # the layer is pre-shrunk by halves: drawn smaller than that, a thin rim aliases


@dataclass(frozen=True)
class GlassesLayer:
    """The frames in the frontal texture's pixels, cut to their box, and where that box's anchors are."""

    patches: tuple[Image, ...]  # BGRA: the frames as the picture shows them and their coverage, then shrunk by halves
    origin: tuple[float, float]  # the box's top-left in texture pixels
    anchors: npt.NDArray[np.float64]  # (len(ANCHORS), 2): the anchor landmarks in texture pixels
    # (3, len(ANCHORS)): the least-squares solve of the affine from these anchors, once: a frame's fit is one product.
    solve: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Frames:
    """The frames on the avatar picture: its pixels and their coverage (0..1), the picture's size."""

    image: Image
    alpha: FloatArray


def lift_glasses(image: Image, landmarks: Landmarks) -> tuple[Image, Frames | None]:
    """The picture with the frames of the glasses it wears painted over with skin, and the frames; or as it is and None."""
    alpha = avatar_spectacles(image, landmarks)
    if alpha is None:
        return image, None
    return fill_under(image, landmarks, alpha), Frames(image, alpha)


def fill_under(image: Image, landmarks: Landmarks, alpha: FloatArray) -> Image:
    """`image` with the skin round `alpha` spread under it (normalised blurs, coarse to fine), in alpha's box.

    Only skin is spread: not the frames, nor the eyes' openings with their lashes, nor the brows, which
    a fill reaching across the rims would otherwise smear into the skin under them.
    """
    lm = landmarks.astype(np.float32)
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    x, y, bw, bh = cv2.boundingRect(cv2.compare(alpha, 0.02, cv2.CMP_GT))
    if bw == 0 or bh == 0:
        return image
    pad = int(np.ceil(2.0 * _FILL_LEVELS[0] * width))
    h, w = image.shape[:2]
    ys, xs = slice(max(0, y - pad), min(h, y + bh + pad)), slice(max(0, x - pad), min(w, x + bw + pad))
    crop = image[ys, xs].astype(np.float32)
    a = alpha[ys, xs]
    shape = (crop.shape[0], crop.shape[1])
    local = lm.copy()
    local[:, :2] -= np.array([xs.start, ys.start], np.float32)
    excluded = eye_openings(shape, local, max(1, int(round(_FILL_BERTH * mean_eye_width(lm.astype(np.float64))))))
    for hull in brow_hulls(shape, local):
        excluded |= hull
    # The frames' dark edge and the shadow they cast on the skin go too: left, they draw the frames' ghost.
    g = max(1, int(round(FRAME_EDGE * width)))
    holes = cv2.dilate((a > 0.02).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
    a = np.maximum(a, np.clip(cv2.GaussianBlur(holes.astype(np.float32), (0, 0), 0.5 * g) * 2.0, 0.0, 1.0))
    # The eyes' openings and lash lines stay as drawn, whatever comes near them.
    lashes = eye_openings(shape, local, max(1, int(round(_LASH_LINE * width)))).astype(np.float32) / np.float32(255.0)
    a = a * (1.0 - np.clip(cv2.GaussianBlur(lashes, (0, 0), 1.0) * 2.0, 0.0, 1.0))
    trusted = ((excluded == 0) & (holes == 0)).astype(np.float32)
    fill = normalised_blur(crop, trusted, max(1.0, _FILL_LEVELS[0] * width))
    for level in _FILL_LEVELS[1:]:
        sigma = max(1.0, level * width)
        finer = normalised_blur(crop, trusted, sigma)
        t = np.clip(cv2.GaussianBlur(trusted, (0, 0), sigma) / np.float32(_FILL_ENOUGH), 0.0, 1.0)[..., None]
        fill = fill * (1.0 - t) + finer * t
    out = image.copy()
    out[ys, xs] = np.clip(crop * (1.0 - a[..., None]) + fill * a[..., None] + 0.5, 0, 255).astype(np.uint8)
    return out


def frontal_layer(frames: Frames, map_x: FloatArray, map_y: FloatArray, frontal: Landmarks) -> GlassesLayer | None:
    """The frames carried into the frontal texture by its maps (texture pixel -> picture pixel), cut to their box."""
    # 0 past the picture's edge: frames are not replicated there.
    alpha = cv2.remap(frames.alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    x, y, bw, bh = cv2.boundingRect(cv2.compare(alpha, 0.02, cv2.CMP_GT))
    if bw == 0 or bh == 0:
        return None
    # A pixel more on every side, of no coverage: the warp's bilinear edge then reads the frames' own colour.
    x, y, bw, bh = x - 1, y - 1, bw + 2, bh + 2
    patch = cv2.remap(frames.image, np.ascontiguousarray(map_x[max(y, 0) : y + bh, max(x, 0) : x + bw]),
                      np.ascontiguousarray(map_y[max(y, 0) : y + bh, max(x, 0) : x + bw]), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    cover = np.zeros(alpha.shape, np.float32)
    cover[1:-1, 1:-1] = alpha[1:-1, 1:-1]
    coverage = np.clip(cover[max(y, 0) : y + bh, max(x, 0) : x + bw] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    patches = [np.ascontiguousarray(np.dstack([patch, coverage]))]
    while min(patches[-1].shape[:2]) >= 16:
        size = (max(1, patches[-1].shape[1] // 2), max(1, patches[-1].shape[0] // 2))
        patches.append(np.asarray(cv2.resize(patches[-1], size, interpolation=cv2.INTER_AREA), np.uint8))
    anchors = frontal[list(ANCHORS), :2].astype(np.float64)
    solve = np.linalg.pinv(np.hstack([anchors, np.ones((len(anchors), 1))]))
    return GlassesLayer(tuple(patches), (float(max(x, 0)), float(max(y, 0))), anchors, solve)


def draw_glasses(face: Image, landmarks: Landmarks, layer: GlassesLayer | None) -> None:
    """Draw the frames in place over `face` (whose pixels `landmarks` are in), moved with the head as one piece."""
    if layer is None:
        return
    target = landmarks[list(ANCHORS), :2].astype(np.float64)
    if not np.isfinite(target).all():
        return
    to_face = (layer.solve @ target).T
    scale = float(np.sqrt(abs(np.linalg.det(to_face[:, :2]))))
    k = int(np.clip(np.floor(np.log(max(scale, 1e-6)) / np.log(_LEVEL_STEP)), 0, len(layer.patches) - 1))
    patch = layer.patches[k]
    # Level pixel -> texture pixel (cv2.resize's pixel centres) -> face pixel.
    sx = layer.patches[0].shape[1] / patch.shape[1]
    sy = layer.patches[0].shape[0] / patch.shape[0]
    to_texture = np.array([[sx, 0.0, 0.5 * sx - 0.5 + layer.origin[0]], [0.0, sy, 0.5 * sy - 0.5 + layer.origin[1]], [0.0, 0.0, 1.0]])
    matrix = to_face @ to_texture
    ph, pw = patch.shape[:2]
    corners = np.array([[0.0, 0.0, 1.0], [pw, 0.0, 1.0], [0.0, ph, 1.0], [pw, ph, 1.0]]) @ matrix.T
    h, w = face.shape[:2]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in corners.min(axis=0))
    x1, y1 = min(w, int(np.ceil(corners[:, 0].max())) + 2), min(h, int(np.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    matrix[:, 2] -= (x0, y0)
    # One warp of colour and coverage together; outside the patch nothing (coverage 0).
    warped = cv2.warpAffine(patch, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    weight = cv2.extractChannel(warped, 3).astype(np.float32)
    weight *= np.float32(1.0 / 255.0)
    colour = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
    face[y0:y1, x0:x1] = cv2.blendLinear(colour, face[y0:y1, x0:x1], weight, 1.0 - weight)
