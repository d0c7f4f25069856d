"""An avatar's eyes keep their detail: the lash line of a narrowed eye, an iris's colour, no ghost of a lifted iris."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render.frontal import prepare_texture
from facewire.shared.render.iris import iris_geometry, lift_irises
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes
from tests.test_render_iris import IRIS, WHITE, _painted_eyes


def _big() -> Landmarks:
    return (astronaut_landmarks().astype(np.float64) * 3.0).astype(np.float32)


def _upper(ring: np.ndarray) -> np.ndarray:
    return ring[1 : len(ring) // 2]


def test_a_narrowed_eye_samples_its_lid_margin_where_it_is_a_shut_one_from_the_lid_above() -> None:
    neutral = _big()
    vertices = em.extended_vertices(neutral)
    ring = topo.right_eye_ring()
    shut = close_eyes(neutral)
    # A smile's narrowing: the upper lid a quarter of the way down.
    narrowed = neutral + np.float32(0.25) * (shut - neutral)
    assert 0.15 < em.lid_closing(narrowed, neutral, ring) < 0.33
    moved = em.lid_source_vertices(vertices, neutral, narrowed)
    # The margin is still sampled at the lash line (the pull from the first closing moved it 15% of the way to the crease).
    assert np.allclose(moved[_upper(ring)], vertices[_upper(ring)], atol=1e-3)
    closed = em.lid_source_vertices(vertices, neutral, shut)
    crease = neutral[list(em.RIGHT_LID_ABOVE), :2]
    travel = np.linalg.norm(closed[_upper(ring)] - vertices[_upper(ring)], axis=1) / np.linalg.norm(crease - vertices[_upper(ring)], axis=1)
    assert (travel > 0.5).all()  # shut: the lid skin above the lashes


def _luma_cb(image: Image) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float64)


def test_a_blue_iris_keeps_its_colour_in_the_texture() -> None:
    lm = _big()
    image = _painted_eyes(lm)
    texture = prepare_texture(image, lm, mirror_fill=False, fine_chroma=0.2, rigid_irises=False)
    for centre, iris in ((topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS), (topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS)):
        c, r = iris_geometry(texture.landmarks, centre, iris)
        # The iris between the pupil (0.4 r) and its edge, in the texture and as painted.
        ys, xs = np.mgrid[0 : texture.image.shape[0], 0 : texture.image.shape[1]]
        d = np.hypot(xs - c[0], ys - c[1])
        band = (d > 0.55 * r) & (d < 0.85 * r)
        cb = float(np.median(_luma_cb(texture.image)[band][:, 2]))
        painted = float(_luma_cb(np.full((1, 1, 3), IRIS, np.uint8))[0, 0, 2])
        # Blue (Cb) as painted within a few levels; softened like a crease's colour it lost ~10.
        assert abs(cb - painted) < 4.0, (cb, painted)


def test_a_lifted_iris_leaves_no_ring_of_its_edge_in_the_white() -> None:
    lm = _big()
    image = _painted_eyes(lm)
    h, w = image.shape[:2]
    # A soft edge round each iris (its limbal ring blurred into the white), two pixels wide, lighter than the
    # iris finder's threshold (0.6 of the way to the white): outside the iris it finds.
    edge = (0.3 * np.array(IRIS, np.float64) + 0.7 * np.array(WHITE, np.float64)).astype(np.uint8)
    for ring, centre, iris in ((topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
                               (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS)):
        c, r = iris_geometry(lm, centre, iris)
        opening = np.zeros((h, w), np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        ys, xs = np.mgrid[0:h, 0:w]
        d = np.hypot(xs - round(float(c[0])), ys - round(float(c[1])))
        annulus = (d > round(r) + 0.5) & (d <= round(r) + 2.5) & (opening > 0)
        image[annulus] = edge
    clean, irises = lift_irises(image, lm)
    assert irises[0] is not None and irises[1] is not None
    for ring, centre, iris in ((topo.right_eye_ring(), topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
                               (topo.left_eye_ring(), topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS)):
        c, r = iris_geometry(lm, centre, iris)
        opening = np.zeros((h, w), np.uint8)
        cv2.fillPoly(opening, [np.round(lm[ring, :2]).astype(np.int32)], 255)
        inner = cv2.erode(opening, np.ones((5, 5), np.uint8)) > 0
        ys, xs = np.mgrid[0:h, 0:w]
        d = np.hypot(xs - round(float(c[0])), ys - round(float(c[1])))
        ghost = (d > round(r) + 1.5) & (d <= round(r) + 2.5) & inner
        assert ghost.any()
        off = np.abs(clean[ghost].astype(np.float64) - np.array(WHITE, np.float64)).sum(axis=1)
        # The painted-out eye is white where the iris's edge was (left, its edge is ~120 levels off, over three channels).
        assert float(np.median(off)) < 12.0, float(np.median(off))

