"""Occluders on the sender's face in the keyframe (glasses, hair, a hand, a mask), to keep in front of an avatar.

The receiver only sees the sender in keyframes, so occluders are found there once and then warp
with the keyframe like everything else. A pixel inside the face outline is an occluder when its
colour is far from the sender's own skin (robust statistics of cheek, nose, chin and forehead
patches) and it is not one of the face's own features (eyes, brows, lips, nostrils), which are
meant to be replaced. Swapping then stops there, so the avatar appears behind the glasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from shared.render import topology as topo
from shared.render.warp import Region
from shared.types import Image, Landmarks

FloatImage = npt.NDArray[np.float32]
_SKIN_PATCHES = (50, 280, 117, 346, 205, 425, 4, 195, 199, 151, 9, 36, 266)
_RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
_NOSTRILS = (2, 98, 327, 97, 326)


@dataclass(frozen=True)
class OcclusionOptions:
    chroma_sigmas: float = 4.0  # how far (in robust sigmas) a colour must be from skin to count
    dark_ratio: float = 0.45  # darker than this fraction of the skin's luminance: hair, dark frames
    min_area: float = 0.004  # of the face box: smaller specks are noise (moles, pores)
    inner_area: float = 0.03  # of the face: a patch that does not reach the outline must be this large
    edge_margin: float = 0.06  # of the face width: the outline band is left to the face mask's feather


def _polygon(mask: npt.NDArray[np.uint8], points: npt.NDArray[np.float32], value: int = 255) -> None:
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], value, cv2.LINE_8, shift=4)


def _robust(values: npt.NDArray[np.float32]) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(1.4826 * np.median(np.abs(values - med)))


def _components(
    mask: npt.NDArray[np.uint8], min_px: float, edge: npt.NDArray[np.bool_] | None = None, inner_px: float = 0.0
) -> npt.NDArray[np.uint8]:
    """Components of at least `min_px`; with `edge`, those not touching it need `inner_px` as well."""
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA]
    big = area >= min_px
    if edge is not None:
        touches = np.zeros(count, np.bool_)
        touches[np.unique(labels[edge & (mask > 0)])] = True
        big &= touches | (area >= inner_px)
    keep = np.zeros(count, np.uint8)
    keep[1:] = big[1:]
    return np.asarray(keep[labels], np.uint8)


def _rims(luma: FloatImage, width: float, skin_y: float, skin_sigma: float) -> npt.NDArray[np.bool_]:
    """Thin dark lines (a few pixels wide at this face size), much darker than the skin around them."""
    k = max(3, int(round(0.04 * width)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    dark = cv2.morphologyEx(luma, cv2.MORPH_BLACKHAT, kernel)
    threshold = max(20.0, 3.0 * skin_sigma)
    # Really dark (frames), not the shading of a wrinkle or a fold.
    return np.asarray((dark > threshold) & (luma < 0.6 * skin_y), np.bool_)


def _long_components(mask: npt.NDArray[np.uint8], min_extent: float) -> npt.NDArray[np.uint8]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = np.zeros(count, np.uint8)
    keep[1:] = extent[1:] >= min_extent
    return np.asarray(keep[labels], np.uint8)


def occluder_mask(
    image: Image, landmarks: Landmarks, options: OcclusionOptions | None = None, alpha: FloatImage | None = None
) -> FloatImage:
    """0..1 per pixel of `image`: 1 where something covers the face, 0 on skin, features and off-face.

    Only inside the outline pulled in by `options.edge_margin`: the mesh outline often runs over
    background or the hair line at the temples, which the face mask's feather handles anyway.
    With the keyframe's `alpha`, background (alpha < 0.5) is never an occluder.
    """
    opts = options or OcclusionOptions()
    h, w = image.shape[:2]
    out = np.zeros((h, w), np.float32)
    oval = landmarks[topo.face_oval_ring(), :2]
    region = Region.around(oval, (w, h), 2)
    fy, fx, _, _ = region.clip_to((w, h))
    crop = image[fy, fx]
    if crop.size == 0:
        return out
    shift = np.array([fx.start, fy.start], np.float32)
    lm = landmarks[:, :2] - shift
    width = float(np.ptp(oval[:, 0]))
    face = np.zeros(crop.shape[:2], np.uint8)
    _polygon(face, oval - shift)
    margin = max(1, int(round(opts.edge_margin * width)))
    inner = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    ycc = cv2.cvtColor(crop, cv2.COLOR_BGR2YCrCb).astype(np.float32)

    patches = np.zeros(crop.shape[:2], np.uint8)
    radius = max(2, int(round(0.035 * width)))
    for i in _SKIN_PATCHES:
        cv2.circle(patches, (int(lm[i, 0]), int(lm[i, 1])), radius, 255, -1)
    samples = ycc[(patches > 0) & (face > 0)]
    if len(samples) < 20:
        return out
    (my, sy), (mcr, scr), (mcb, scb) = (_robust(samples[:, k]) for k in range(3))
    scr, scb, sy = max(scr, 2.5), max(scb, 2.5), max(sy, 6.0)
    chroma = np.sqrt(((ycc[..., 1] - mcr) / scr) ** 2 + ((ycc[..., 2] - mcb) / scb) ** 2)
    # Another colour, or much darker (hair, dark frames). Not brighter: that is mostly shine on skin.
    odd = (chroma > opts.chroma_sigmas) | (ycc[..., 0] < opts.dark_ratio * my)

    sym = topo.symmetry()
    eyes = np.zeros(crop.shape[:2], np.uint8)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        _polygon(eyes, lm[ring])
    features = np.zeros(crop.shape[:2], np.uint8)
    _polygon(features, lm[topo.outer_lip_ring()])
    lines_ok = np.ones(crop.shape[:2], np.uint8)
    for brow in (np.array(_RIGHT_BROW), sym[list(_RIGHT_BROW)]):
        hull = cv2.convexHull(np.round(lm[brow]).astype(np.int32))
        cv2.fillConvexPoly(features, hull, 255)
    for i in _NOSTRILS:
        cv2.circle(features, (int(lm[i, 0]), int(lm[i, 1])), radius, 255, -1)
    grow = max(1, int(round(0.03 * width)))
    features = cv2.dilate(features, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    lines_ok[features > 0] = 0
    # Eye sockets (make-up, shadows, lashes) are the face's own: a wider berth than other features.
    socket = max(1, int(round(0.07 * width)))
    features |= cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * socket + 1, 2 * socket + 1)))

    # Areas of another colour that come in from outside the face (hair, a hand) or are large (a
    # mask). A small patch inside the face with skin all round is the face's own (a flush between
    # the brows, a birthmark, make-up) and is replaced with the rest of it.
    candidates = (odd & (face > 0) & (features == 0)).astype(np.uint8)
    from_edge = (face > 0) & (inner == 0)
    face_area = float(np.count_nonzero(face))
    blobs = _components(candidates, opts.min_area * crop.size / 3, from_edge, opts.inner_area * face_area)
    # Thin dark lines crossing the face, long ones only: spectacle frames. (Clear rims are too faint
    # to tell from skin texture this way; erasing them leaves no ghost, just no glasses.)
    near_eyes = cv2.dilate(eyes, np.ones((3, 3), np.uint8))
    rims = _rims(ycc[..., 0], width, my, sy) & (face > 0) & (near_eyes == 0) & (lines_ok > 0)
    rims = _long_components(rims.astype(np.uint8), 0.25 * width)
    mask = np.maximum(blobs, rims)
    mask = mask * (inner > 0)
    if alpha is not None:
        mask = mask * (alpha[fy, fx] >= 0.5)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.8, 0.012 * width))
    out[fy, fx] = np.clip(soft * 1.5, 0.0, 1.0)
    return out


# Skin for the cover's colour model: cheeks, nose and the sides of the nose, never the forehead
# (a fringe may cover all of it).
_LOWER_SKIN = (50, 280, 117, 346, 205, 425, 4, 195, 5, 6, 36, 266)
_BROW_TOPS = (105, 334, 66, 296, 107, 336)


def hair_cover(image: Image, landmarks: Landmarks, sigmas: float = 3.0, dark_ratio: float = 0.75) -> FloatImage:
    """0..1 where hair (a fringe, a hat) covers an avatar's forehead, from the top of the face down to the brows.

    For an avatar portrait, prepared once, so it may be thorough: unlike `occluder_mask` it reaches
    the very top of the outline, where a fringe lies, and it only takes what hangs in from the
    outline above the eyes (hair grows from above), so a shadow or a mole inside the forehead stays.
    Brows and eyes are never cover.
    """
    h, w = image.shape[:2]
    out = np.zeros((h, w), np.float32)
    oval = landmarks[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return out
    face = np.zeros((h, w), np.uint8)
    _polygon(face, oval)
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    patches = np.zeros((h, w), np.uint8)
    radius = max(2, int(round(0.035 * width)))
    for i in _LOWER_SKIN:
        cv2.circle(patches, (int(landmarks[i, 0]), int(landmarks[i, 1])), radius, 255, -1)
    samples = ycc[(patches > 0) & (face > 0)]
    if len(samples) < 20:
        return out
    (my, sy), (mcr, scr), (mcb, scb) = (_robust(samples[:, k]) for k in range(3))
    scr, scb = max(scr, 2.5), max(scb, 2.5)
    chroma = np.sqrt(((ycc[..., 1] - mcr) / scr) ** 2 + ((ycc[..., 2] - mcb) / scb) ** 2)
    odd = (chroma > sigmas) | (ycc[..., 0] < dark_ratio * my)
    eye_line = float(landmarks[[33, 133, 263, 362], 1].mean())
    rows = np.arange(h, dtype=np.float32)[:, None]
    upper = np.broadcast_to(rows < eye_line, (h, w))
    keep_out = np.zeros((h, w), np.uint8)
    sym = topo.symmetry()
    for brow in (np.array(_RIGHT_BROW), sym[list(_RIGHT_BROW)]):
        cv2.fillConvexPoly(keep_out, cv2.convexHull(np.round(landmarks[brow, :2]).astype(np.int32)), 255)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        _polygon(keep_out, landmarks[ring, :2])
    grow = max(1, int(round(0.03 * width)))
    keep_out = cv2.dilate(keep_out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    candidates = (odd & upper & (face > 0) & (keep_out == 0)).astype(np.uint8)
    band = max(1, int(round(0.03 * width)))
    rim = (face > 0) & (cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))) == 0) & upper
    face_area = float(np.count_nonzero(face))
    mask = _components(candidates, 0.002 * face_area, rim, np.inf)
    if not mask.any():
        return out
    # Strands leave gaps of skin between them: close them, and reach a little past the hair's edge.
    k = max(3, int(round(0.03 * width)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return (mask > 0).astype(np.float32)
