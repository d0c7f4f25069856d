"""A closed lower lid samples the skin below the ring under it: a drawn eye larger than the mesh's opening leaves no crescent."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from tests.render_fixtures import astronaut_landmarks, close_eyes


def test_closed_lower_lid_samples_from_the_ring_below_open_one_from_itself() -> None:
    neutral = astronaut_landmarks() * np.float32(3.0)
    vertices = em.extended_vertices(neutral)
    ring = topo.right_eye_ring()
    lower = ring[len(ring) // 2 + 1 :]
    below, further = np.array(em.RIGHT_LID_BELOW), np.array(em.RIGHT_LID_BELOW_2)
    opened = em.lid_source_vertices(vertices, neutral, neutral)
    assert np.array_equal(opened, vertices)
    closed = em.lid_source_vertices(vertices, neutral, close_eyes(neutral))
    # The margin samples where the ring below was (a drawn eye's lower rim lies about there) ...
    assert np.allclose(closed[lower], neutral[below, :2], atol=0.5)
    # ... and that ring half way to the next, so the band between samples skin beyond the rim.
    assert np.allclose(closed[below], 0.5 * (neutral[below, :2] + neutral[further, :2]), atol=0.5)


def test_the_rings_below_lie_below_the_lower_lid_in_order() -> None:
    lm = astronaut_landmarks()
    ring = topo.right_eye_ring()
    lower = lm[ring[len(ring) // 2 + 1 :], :2]
    below = lm[list(em.RIGHT_LID_BELOW), :2]
    further = lm[list(em.RIGHT_LID_BELOW_2), :2]
    assert (below[:, 1] > lower[:, 1]).all() and (further[:, 1] > below[:, 1]).all()
    # Point by point beneath each other: inner corner first in all three.
    assert (np.abs(below[:, 0] - lower[:, 0]) < 0.5 * np.ptp(lower[:, 0])).all()


def test_closed_outer_corner_samples_from_beyond_it() -> None:
    neutral = astronaut_landmarks() * np.float32(3.0)
    vertices = em.extended_vertices(neutral)
    closed = em.lid_source_vertices(vertices, neutral, close_eyes(neutral))
    corner, beyond, far = em.RIGHT_OUTER_CORNER
    assert corner == topo.right_eye_ring()[0]
    assert np.allclose(closed[corner], neutral[beyond, :2], atol=0.5)
    assert np.allclose(closed[beyond], 0.5 * (neutral[beyond, :2] + neutral[far, :2]), atol=0.5)
    # Away from the eye, outwards: the far point lies further from the eye's centre than the corner.
    centre = neutral[topo.right_eye_ring(), :2].mean(axis=0)
    reach = [float(np.linalg.norm(neutral[i, :2] - centre)) for i in (corner, beyond, far)]
    assert reach[0] < reach[1] < reach[2]


def test_a_nearly_shut_slit_is_covered_with_the_lid_above_it() -> None:
    from facewire.shared.render.lids import close_lids

    neutral = astronaut_landmarks() * np.float32(3.0)
    ring = topo.right_eye_ring()
    # Nearly shut: the upper lid 80 % of the way down (a retargeted blink rarely closes further).
    target = neutral + np.float32(0.8) * (close_eyes(neutral) - neutral)
    assert 0.72 < em.lid_closing(target, neutral, ring) < 0.9
    size = (int(neutral[:, 1].max()) + 20, int(neutral[:, 0].max()) + 20, 3)
    image = np.full(size, (120, 150, 200), np.uint8)  # lid skin
    slit = np.zeros(size[:2], np.uint8)
    cv2.fillPoly(slit, [np.round(target[ring, :2]).astype(np.int32)], 255)
    inside = cv2.erode(slit, np.ones((3, 3), np.uint8)) > 0
    assert inside.sum() > 20
    image[slit > 0] = (235, 240, 245)  # a drawn eye's white showing through the slit
    out = image.copy()
    close_lids(out, target, neutral)
    # Lid-coloured (the lash line drawn along the lids' meeting darkens part of it), no longer white.
    whiteness = np.abs(out[inside].astype(float) - (235, 240, 245)).sum(axis=-1)
    assert (whiteness > 120).mean() > 0.95, np.percentile(whiteness, [5, 50])
    # Further open (a third closed, across the eye: eyes_mouth.lid_openness), the slit shows what is there.
    half = neutral + np.float32(0.3) * (close_eyes(neutral) - neutral)
    out = image.copy()
    close_lids(out, half, neutral)
    assert np.array_equal(out[inside], image[inside])
