"""The painted-out iris is filled with the eye's white, however little of it the picture shows.

A painted eye's iris often fills most of its opening: the only white is a few pixels beside the iris, and
the next pixels out, past the iris's reach, are the dark corners and the lid's shadow. Filled from those,
the hole came out a brown disc (s5), which showed round the drawn iris wherever it moved or the lids opened
wider than the picture's: dark discs for eyes.
"""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.render.iris import draw_irises, iris_geometry, lift_irises
from facewire.shared.types import Image, Landmarks
from tests.test_render_iris import _scaled_landmarks
from tests.test_render_iris_hidden import _EYES, _eye_picture

CORNER = (60, 75, 100)  # BGR: the shaded corners of a painted eye
PALE = (150, 160, 190)  # its white, a thin ring beside the iris
DARK_IRIS = (40, 30, 45)


def _painted_eye(lm: Landmarks, white_reach: float) -> Image:
    """Skin; each opening in the corners' colour, a pale ring out to `white_reach` iris radii, a dark iris."""
    return _eye_picture(lm, CORNER, DARK_IRIS, (PALE, white_reach))


def _distance(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(pixels.astype(np.float64) - np.array(colour, np.float64)).sum(axis=-1)


def test_a_painted_iris_is_filled_with_the_white_beside_it_not_the_dark_corners() -> None:
    lm = _scaled_landmarks()
    image = _painted_eye(lm, 1.15)
    clean, irises = lift_irises(image, lm)
    assert irises[0] is not None and irises[1] is not None
    for _, centre, iris in _EYES:
        c, r = iris_geometry(lm, centre, iris)
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        hole = np.hypot(xs - c[0], ys - c[1]) <= 0.8 * r
        fill = clean[hole]
        # The hole reads as the white: nearer it than the corners' shade, and as light as it, near enough.
        assert np.median(_distance(fill, PALE)) < np.median(_distance(fill, CORNER))
        assert np.median(_distance(fill, PALE)) < 45


def test_the_white_beside_a_painted_iris_stays_white_when_the_iris_is_drawn_back() -> None:
    """At rest the drawn iris leaves the white beside it to the paint-out under it: filled from the dark corners,
    that white went brown and the iris read as a dark disc as wide as the opening."""
    lm = _scaled_landmarks()
    image = _painted_eye(lm, 1.15)
    clean, irises = lift_irises(image, lm)
    drawn = clean.copy()
    draw_irises(drawn, lm, irises)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    for ring, centre, iris in _EYES:
        c, r = iris_geometry(lm, centre, iris)
        opening = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        distance = np.hypot(xs - c[0], ys - c[1])
        white = (cv2.erode(opening, np.ones((5, 5), np.uint8)) > 0) & (distance > r + 0.5) & (distance < 1.15 * r)
        assert white.sum() > 10
        assert np.median(_distance(drawn[white], PALE)) < np.median(_distance(drawn[white], CORNER))
