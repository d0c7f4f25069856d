"""Rigid irises: lifted from an avatar once, drawn where the landmarks put them, clipped by the lids."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render.iris import draw_irises, iris_geometry, lift_irises
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes

SKIN = (120, 150, 200)
WHITE = (225, 230, 235)
IRIS = (160, 90, 40)  # blue-grey, BGR
PUPIL = (20, 20, 20)


def _scaled_landmarks(scale: float = 3.0) -> Landmarks:
    """The astronaut's mesh made three times larger, so the eyes are a useful size."""
    lm = astronaut_landmarks().astype(np.float64)
    return (lm * scale).astype(np.float32)


def _painted_eyes(lm: Landmarks, iris_scale: float = 1.0) -> Image:
    """Skin, a white eye opening along each eye ring, an iris of `iris_scale` times the landmarks' radius."""
    h, w = int(lm[:, 1].max()) + 40, int(lm[:, 0].max()) + 40
    image = np.full((h, w, 3), SKIN, np.uint8)
    for ring, centre, iris in (
        (topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
        (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
    ):
        opening = np.zeros((h, w), np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        eye = np.full_like(image, WHITE)
        c, r = iris_geometry(lm, centre, iris)
        cv2.circle(eye, (int(round(c[0])), int(round(c[1]))), int(round(r * iris_scale)), IRIS, -1)
        cv2.circle(eye, (int(round(c[0])), int(round(c[1]))), int(round(0.4 * r)), PUPIL, -1)
        image[opening > 0] = eye[opening > 0]
    return image


def _inside(lm: Landmarks, ring: np.ndarray, shape: tuple[int, ...], erode: int) -> np.ndarray:
    """The eye opening shrunk by `erode` pixels (grown when negative)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(lm[ring, :2]).astype(np.int32)], 255)
    kernel = np.ones((2 * abs(erode) + 1, 2 * abs(erode) + 1), np.uint8)
    return (cv2.erode(mask, kernel) if erode >= 0 else cv2.dilate(mask, kernel)) > 0


def _distance(image: Image, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(image.astype(np.float64) - np.array(colour, np.float64)).sum(axis=-1)


def test_lifting_paints_the_iris_out_with_the_white_and_keeps_the_iris() -> None:
    lm = _scaled_landmarks()
    image = _painted_eyes(lm)
    clean, irises = lift_irises(image, lm)
    assert irises[0] is not None and irises[1] is not None
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        opening = _inside(lm, ring, image.shape, 2)
        assert (_distance(image, IRIS)[opening] < 30).mean() > 0.1  # there was an iris
        assert np.median(_distance(clean, WHITE)[opening]) < 20  # now the white
        assert (_distance(clean, IRIS)[opening] < 30).mean() < 0.02
    outside = ~(_inside(lm, topo.right_eye_ring(), image.shape, -3) | _inside(lm, topo.left_eye_ring(), image.shape, -3))
    assert np.array_equal(clean[outside], image[outside])  # lids and skin untouched
    iris = irises[0]
    cx, cy = (int(round(v)) for v in iris.centre)
    assert _distance(iris.patch[cy : cy + 1, cx + int(0.7 * iris.radius) : cx + int(0.7 * iris.radius) + 1], IRIS).max() < 40


def test_a_drawn_iris_moves_whole_and_stays_inside_the_lids() -> None:
    lm = _scaled_landmarks()
    image = _painted_eyes(lm)
    clean, irises = lift_irises(image, lm)
    looking = lm.copy()
    shift = np.float32(0.45) * (lm[topo.RIGHT_EYE_CORNERS[1], :2] - lm[topo.RIGHT_IRIS_CENTER, :2])
    for idx in (topo.RIGHT_IRIS_CENTER, *topo.RIGHT_IRIS):
        looking[idx, :2] += shift
    out = clean.copy()
    draw_irises(out, looking, irises)
    c, r = iris_geometry(looking, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS)
    # The iris at its new place, round and the same size: its ring of colour at 0.7 r on either side.
    for dx in (-0.7 * r, 0.7 * r):
        x, y = int(round(c[0] + dx)), int(round(c[1]))
        assert _distance(out[y : y + 1, x : x + 1], IRIS).max() < 45, (dx, out[y, x])
    old, _ = iris_geometry(lm, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS)
    x_old = int(round(old[0] - 0.8 * r))
    assert _distance(out[int(round(old[1])) : int(round(old[1])) + 1, x_old : x_old + 1], WHITE).max() < 30
    outside = ~_inside(looking, topo.right_eye_ring(), image.shape, -2) & ~_inside(lm, topo.left_eye_ring(), image.shape, -3)
    assert np.array_equal(out[outside], clean[outside])  # nothing drawn over the lids


def test_an_iris_larger_than_the_landmarks_say_is_left_to_the_warp() -> None:
    """A cartoon's iris much larger than MediaPipe's ring: lifting it at either size would tear it."""
    lm = _scaled_landmarks()
    image = _painted_eyes(lm, iris_scale=1.6)
    clean, irises = lift_irises(image, lm)
    assert irises == (None, None)
    assert np.array_equal(clean, image)


def test_a_closed_eye_has_no_iris_to_lift() -> None:
    lm = close_eyes(_scaled_landmarks())
    image = _painted_eyes(lm)
    clean, irises = lift_irises(image, lm)
    assert irises == (None, None)
    assert np.array_equal(clean, image)


def test_a_drawn_iris_keeps_the_avatars_size_when_the_tracked_iris_shrinks() -> None:
    """The tracker shrinks an iris turned up or aside (d12: by a third); the avatar's iris is a fixed size, scaled
    only with the face, or a small iris stares out of a wide white."""
    lm = _scaled_landmarks()
    image = _painted_eyes(lm)
    clean, irises = lift_irises(image, lm)
    c, r = iris_geometry(lm, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS)
    shrunk = lm.copy()
    for idx in topo.RIGHT_IRIS:
        shrunk[idx, :2] = (c + 0.6 * (lm[idx, :2] - c)).astype(np.float32)
    out = clean.copy()
    draw_irises(out, shrunk, irises)
    # The iris's colour at 0.8 of its own radius either side, where a disc of the tracked radius ends at 0.6.
    for dx in (-0.8 * r, 0.8 * r):
        x, y = int(round(c[0] + dx)), int(round(c[1]))
        assert _distance(out[y : y + 1, x : x + 1], IRIS).max() < 45, (dx, out[y, x])
    # A face drawn larger has a larger iris: the size follows the distance between the eyes.
    big = (lm * np.float32(1.5)).astype(np.float32)
    canvas = cv2.resize(clean, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR)
    draw_irises(canvas, big, irises)
    cb, _ = iris_geometry(big, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS)
    x, y = int(round(cb[0] + 0.8 * 1.5 * r)), int(round(cb[1]))
    assert _distance(canvas[y : y + 1, x : x + 1], IRIS).max() < 45
