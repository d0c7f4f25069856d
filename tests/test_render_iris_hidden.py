"""The part of an iris the avatar's lids hide is completed from the iris, not from the white beside it.

An iris is lifted with its soft edge (its reach, past the disc found). The lids hide its top and bottom; those
were completed with the median colour, at each radius, of what the picture shows, and past the dark core that
is the white beside the iris. Wherever the rendered lids open wider than the picture's, the drawn iris then
showed a pale ring round a dark disc: on a made-up or painted eye, whose "white" is the grey-brown beside the
iris, a grey ring (happy, sad, s5 on the contact sheet); on a photograph, white above the iris (a stare).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewire.shared.face import topology as topo
from facewire.shared.render.iris import Iris, iris_geometry, lift_irises
from facewire.shared.types import Image, Landmarks
from tests.test_render_iris import IRIS, SKIN, WHITE, _scaled_landmarks

SMOKY = (105, 112, 128)  # BGR: the grey-brown beside the iris of a made-up or painted eye with no white to speak of
DARK_IRIS = (45, 40, 38)


def _narrowed(lm: Landmarks, factor: float) -> Landmarks:
    """Each eye opening squeezed towards its iris centre's row: the lids hide the iris's top and bottom."""
    out = lm.copy()
    for ring, centre in ((topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER), (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER)):
        cy = lm[centre, 1]
        out[ring, 1] = cy + np.float32(factor) * (lm[ring, 1] - cy)
    return out


_EYES = ((topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS), (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS))


def _lifted_eyes(lm: Landmarks, image: Image) -> list[tuple[Iris, float, np.ndarray, np.ndarray]]:
    """Per lifted iris: the iris, the landmarks' iris radius, and over its patch the picture's opening (255 inside)
    and each pixel's distance from the iris centre."""
    _, irises = lift_irises(image, lm)
    out = []
    for lifted, (ring, centre, ring_iris) in zip(irises, _EYES, strict=True):
        assert lifted is not None
        c, r = iris_geometry(lm, centre, ring_iris)
        origin = c - np.array(lifted.centre)
        opening = np.zeros(lifted.alpha.shape, np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2] - origin).astype(np.int32)], 255)
        ys, xs = np.mgrid[0 : opening.shape[0], 0 : opening.shape[1]]
        out.append((lifted, r, opening, np.hypot(xs - lifted.centre[0], ys - lifted.centre[1])))
    return out


def _eye_picture(
    lm: Landmarks, side: tuple[int, int, int], iris: tuple[int, int, int], white: tuple[tuple[int, int, int], float] | None = None
) -> Image:
    """Skin; each eye opening filled with `side`, an iris of the landmarks' radius in it, cut by the lids; `white`:
    a ring of that colour round the iris out to that many iris radii."""
    h, w = int(lm[:, 1].max()) + 40, int(lm[:, 0].max()) + 40
    image = np.full((h, w, 3), SKIN, np.uint8)
    for ring, centre, ring_iris in _EYES:
        opening = np.zeros((h, w), np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        eye = np.full_like(image, side)
        c, r = iris_geometry(lm, centre, ring_iris)
        at = (int(round(c[0])), int(round(c[1])))
        if white is not None:
            cv2.circle(eye, at, int(round(white[1] * r)), white[0], -1, cv2.LINE_AA)
        cv2.circle(eye, at, int(round(r)), iris, -1, cv2.LINE_AA)
        image[opening > 0] = eye[opening > 0]
    return image


def _hidden_drawn(lm: Landmarks, image: Image) -> list[np.ndarray]:
    """Per lifted iris, the colours of its patch where the picture's lids hid it and the iris is drawn."""
    out = []
    for iris, _, opening, _ in _lifted_eyes(lm, image):
        # Two pixels clear of the lid line, where the drawing is plainly the iris's own top or bottom.
        hidden = cv2.dilate(opening, np.ones((5, 5), np.uint8)) == 0
        out.append(iris.patch[hidden & (iris.alpha > 0.5)].astype(np.float64))
    return out


def _distance(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(pixels - np.array(colour, np.float64)).sum(axis=-1)


@pytest.mark.parametrize(("side", "iris"), [(SMOKY, DARK_IRIS), (WHITE, IRIS)], ids=["no white", "white"])
def test_the_hidden_top_and_bottom_of_an_iris_are_drawn_as_iris(side: tuple[int, int, int], iris: tuple[int, int, int]) -> None:
    lm = _narrowed(_scaled_landmarks(), 0.7)
    for pixels in _hidden_drawn(lm, _eye_picture(lm, side, iris)):
        assert pixels.shape[0] > 20  # the lids do hide part of what is drawn
        # No ring of the side colour: every hidden pixel drawn is nearer the iris than the colour beside it.
        nearer_side = _distance(pixels, side) < _distance(pixels, iris)
        assert nearer_side.mean() < 0.02, f"{nearer_side.mean():.2f} of the hidden rim drawn in the side colour"


@pytest.mark.parametrize(("side", "iris"), [(SMOKY, DARK_IRIS), (WHITE, IRIS)], ids=["no white", "white"])
def test_the_white_beside_an_iris_is_not_drawn_with_it(side: tuple[int, int, int], iris: tuple[int, int, int]) -> None:
    """The white inside the iris's drawn reach is left to the paint-out: carried with the iris, it drew a pale
    crescent round it wherever the rendered eye opens differently from the picture's (s5's pinkish white)."""
    lm = _narrowed(_scaled_landmarks(), 0.7)
    for lifted, r, opening, distance in _lifted_eyes(lm, _eye_picture(lm, side, iris)):
        # Two pixels and more past the painted iris, well inside the opening: the white.
        beside = (cv2.erode(opening, np.ones((5, 5), np.uint8)) > 0) & (distance > r + 2.0)
        drawn = beside & (lifted.alpha > 0.0)
        assert drawn.sum() > 5  # the drawn reach does take in some of the white
        assert float(lifted.alpha[drawn].max()) < 0.3
        # The iris itself is drawn whole.
        assert float(lifted.alpha[distance <= r - 3.0].min()) > 0.99


def test_an_iris_with_a_dark_ring_round_it_is_completed_under_the_lids_only_to_the_landmarks_radius() -> None:
    """A dark limbal ring or a shadow beside the iris is taken into the disc found (s5: 1.1-1.2 of the landmarks'
    radius). Under the lids that is no evidence the iris goes on: drawn there in its edge colour, it showed as
    a dark crescent under an iris whose picture shows white below it (art_0)."""
    lm = _narrowed(_scaled_landmarks(), 0.7)
    image = _eye_picture(lm, WHITE, IRIS)
    rings = np.zeros(image.shape[:2], np.uint8)
    for ring, centre, ring_iris in _EYES:
        c, r = iris_geometry(lm, centre, ring_iris)
        opening = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        band = np.zeros_like(opening)
        cv2.circle(band, (int(round(c[0])), int(round(c[1]))), int(round(1.15 * r)), 255, -1)
        cv2.circle(band, (int(round(c[0])), int(round(c[1]))), int(round(r)), 0, -1)
        rings |= band & opening
    image[rings > 0] = (70, 60, 55)  # a dark ring round each iris, as dark as a shadow
    for lifted, r, opening, distance in _lifted_eyes(lm, image):
        hidden = cv2.dilate(opening, np.ones((3, 3), np.uint8)) == 0
        assert float(lifted.alpha[hidden & (distance > r + 1.5)].max(initial=0.0)) == 0.0
        assert float(lifted.alpha[hidden & (distance < r - 1.0)].min()) > 0.99  # the iris itself is completed
