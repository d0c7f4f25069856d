"""The white of the eye where a gaze change shows it, in self mode.

The mesh moves an iris by stretching the eye around it (eyes_mouth.hole_triangles): the band of eye an
iris leaves as it turns (below it when the gaze goes up, beside it when it goes aside) is drawn from the
keyframe's few pixels between its iris and the lid, mostly the iris's blurred edge and the lid's shadow.
On a small or softly coded face the eye comes out a dark slit with the iris at one end where the camera
shows a white: it reads as a squint, to the eye and to a landmarker. Once the gaze has turned well away
from the keyframe's, the opening outside the iris is drawn in the keyframe's own white of that eye.
Near the keyframe's gaze nothing changes: the warp's white is the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.iris import iris_geometry
from facewire.shared.types import Image, Landmarks

FloatArray = npt.NDArray[np.float32]
# (eye ring, iris centre, iris ring, eye corners) per eye, the subject's right eye first.
_EYES: tuple[tuple[Callable[[], npt.NDArray[np.int32]], int, tuple[int, ...], tuple[int, int]], ...] = (
    (topo.right_eye_ring, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS, topo.RIGHT_EYE_CORNERS),
    (topo.left_eye_ring, topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS, topo.LEFT_EYE_CORNERS),
)
_TURN = (0.15, 0.25)  # gaze change (eye widths) over which the whole white goes from the warp's to the keyframe's colour
_SUBPIXEL = 4
_MIN_WHITE = 6  # pixels of white beside the keyframe's iris, at least, to take its colour from


@dataclass(frozen=True)
class EyeWhite:
    """One eye of a keyframe: the colour of its white (BGR) and its gaze."""

    colour: tuple[float, float, float]
    gaze: tuple[float, float]  # the iris centre in the eye's frame (_gaze)


def _gaze(landmarks: Landmarks, corners: tuple[int, int], centre: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The iris centre from the middle of the eye's corners, along and across the eye, in eye widths."""
    a, b = landmarks[corners[0], :2].astype(np.float64), landmarks[corners[1], :2].astype(np.float64)
    along = b - a
    width = max(float(np.linalg.norm(along)), 1e-6)
    along /= width
    offset = centre - 0.5 * (a + b)
    return float(offset @ along) / width, float(offset[1] * along[0] - offset[0] * along[1]) / width


def _opening(points: npt.NDArray[np.float64], origin: npt.NDArray[np.float64], shape: tuple[int, int]) -> FloatArray:
    """The eye opening's anti-aliased coverage (0..1) in a box at `origin`, shrunk by a pixel: the lid's margin
    (its lashes) is the lid's, not the eye's."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round((points - origin) * (1 << _SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_AA, shift=_SUBPIXEL)
    return cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(np.float32) * np.float32(1.0 / 255.0)


def eye_whites(image: Image, landmarks: Landmarks) -> tuple[EyeWhite | None, EyeWhite | None]:
    """Each eye's white and gaze in a keyframe (right, left); None for an eye showing too little white beside
    its iris (closed, or too small) to take a colour from.

    The white's colour is the median of the brighter half of the opening outside the iris: the rest is the
    shadow under the upper lid and the lashes.
    """
    out: list[EyeWhite | None] = []
    h, w = image.shape[:2]
    for ring_of, centre_index, iris_ring, corners in _EYES:
        points = landmarks[ring_of(), :2].astype(np.float64)
        centre, radius = iris_geometry(landmarks, centre_index, iris_ring)
        x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, [w, h])
        if x1 - x0 < 3 or y1 - y0 < 3 or not np.isfinite(centre).all():
            out.append(None)
            continue
        opening = _opening(points, np.array([x0, y0], np.float64), (int(y1 - y0), int(x1 - x0)))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        white = (opening > 0.99) & (np.hypot(xs - np.float32(centre[0]), ys - np.float32(centre[1])) > radius + 1.0)
        pixels = image[y0:y1, x0:x1][white].astype(np.float32)
        if len(pixels) < _MIN_WHITE:
            out.append(None)
            continue
        luma = pixels @ LUMA_BGR
        colour = np.median(pixels[luma >= np.median(luma)], axis=0)
        out.append(EyeWhite((float(colour[0]), float(colour[1]), float(colour[2])), _gaze(landmarks, corners, centre)))
    return out[0], out[1]


def reveal_whites(image: Image, landmarks: Landmarks, whites: tuple[EyeWhite | None, EyeWhite | None]) -> None:
    """Draw (in place) each eye's keyframe white over the opening outside the iris, as far as the gaze in
    `landmarks` (the frame's, in `image`'s pixels) has turned from the keyframe's (`_TURN`)."""
    h, w = image.shape[:2]
    for white, (ring_of, centre_index, iris_ring, corners) in zip(whites, _EYES, strict=True):
        if white is None:
            continue
        points = landmarks[ring_of(), :2].astype(np.float64)
        centre, radius = iris_geometry(landmarks, centre_index, iris_ring)
        if not np.isfinite(points).all() or not np.isfinite(centre).all():
            continue
        turn = float(np.hypot(*np.subtract(_gaze(landmarks, corners, centre), white.gaze)))
        t = min(max((turn - _TURN[0]) / (_TURN[1] - _TURN[0]), 0.0), 1.0)
        if t <= 0.0:
            continue
        x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, [w, h])
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        opening = _opening(points, np.array([x0, y0], np.float64), (int(y1 - y0), int(x1 - x0)))
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        # Outside the iris, over a pixel: the warp draws the iris itself where it is.
        outside = np.clip(np.hypot(xs - np.float32(centre[0]), ys - np.float32(centre[1])) - np.float32(radius), 0.0, 1.0)
        weight = np.ascontiguousarray(opening * outside * np.float32(t * t * (3.0 - 2.0 * t)), np.float32)
        fill = np.empty((*weight.shape, 3), np.uint8)
        fill[:] = np.clip(np.array(white.colour) + 0.5, 0, 255).astype(np.uint8)
        image[y0:y1, x0:x1] = cv2.blendLinear(fill, image[y0:y1, x0:x1], weight, 1.0 - weight)
