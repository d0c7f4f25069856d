"""Hair over an avatar's face: strands hanging in at the sides are cover, the cheek's shading is not."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.frontal import fill_cover
from facewire.shared.render.occlusion import avatar_cover
from facewire.shared.types import Landmarks
from tests.render_fixtures import big_astronaut


def _luma(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _sides() -> tuple[npt.NDArray[np.uint8], Landmarks, npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Even skin; a brown strand hanging in along one side from the eyes to the nose, the other side shaded smoothly."""
    image, lm = big_astronaut()
    h, w = image.shape[:2]
    oval = lm[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    face = np.zeros((h, w), np.uint8)
    cv2.fillPoly(face, [np.round(oval).astype(np.int32)], 255)
    cheek = image[int(lm[50, 1]) - 3 : int(lm[50, 1]) + 4, int(lm[50, 0]) - 3 : int(lm[50, 0]) + 4].reshape(-1, 3).mean(axis=0)
    rng = np.random.default_rng(0)
    eyes = np.zeros((h, w), np.uint8)
    for ring in (topo.right_eye_ring(), topo.left_eye_ring(), topo.outer_lip_ring()):
        cv2.fillPoly(eyes, [np.round(lm[ring, :2]).astype(np.int32)], 255)
    eyes = cv2.dilate(eyes, np.ones((15, 15), np.uint8))
    bare = (face > 0) & (eyes == 0)
    image[bare] = np.clip(cheek + rng.normal(0, 3, (int(bare.sum()), 3)), 0, 255).astype(np.uint8)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    top = float(lm[[33, 133, 263, 362], 1].mean())
    bottom = float(lm[2, 1])
    # The outline's distance from the face's centre line, row by row (the outline is convex).
    centre = float(lm[4, 0])
    right_edge = np.zeros(h, np.float32)
    left_edge = np.zeros(h, np.float32)
    for y in range(h):
        xs = np.nonzero(face[y])[0]
        if len(xs):
            left_edge[y], right_edge[y] = xs.min(), xs.max()
    in_rows = (rows > top + 4) & (rows < bottom - 4)
    strand = (face > 0) & in_rows & (cols > right_edge[:, None] - 0.07 * width)
    image[strand] = (40, 60, 95)
    # The other cheek darkens smoothly towards the outline, to 0.7 of the skin at its edge: shading, not hair.
    depth = np.clip((left_edge[:, None] + 0.15 * width - cols) / (0.15 * width), 0.0, 1.0)
    shaded = (face > 0) & in_rows & (cols < centre) & (depth > 0)
    image[shaded] = np.clip(image[shaded] * (1.0 - 0.3 * depth[shaded])[:, None], 0, 255).astype(np.uint8)
    return image, lm, strand, shaded, bare


def test_a_strand_hanging_in_beside_the_cheek_is_cover_the_shaded_cheek_is_not() -> None:
    image, lm, strand, shaded, _ = _sides()
    cover = avatar_cover(image, lm)
    assert cover[strand].mean() > 0.8, cover[strand].mean()
    assert cover[shaded].mean() < 0.05, cover[shaded].mean()


def test_a_side_strand_is_painted_over_with_skin() -> None:
    image, lm, strand, _, bare = _sides()
    skin = float(np.median(_luma(image)[bare & ~strand]))
    out = fill_cover(image, lm)
    assert float(np.median(_luma(out)[strand])) > 0.9 * skin > float(np.median(_luma(image)[strand]))


def test_a_stubbled_cheek_is_not_a_strand() -> None:
    """Dark specks scattered over a cheek (stubble) are each too small to be a strand's core."""
    image, lm, strand, _, bare = _sides()
    image[strand] = image[bare & ~strand][: int(strand.sum())]
    rng = np.random.default_rng(1)
    specks = strand & (rng.random(strand.shape) < 0.25)
    image[specks] = (40, 50, 70)
    assert avatar_cover(image, lm)[strand].mean() < 0.1


def test_a_strand_is_filled_with_the_skin_beside_it_at_its_height() -> None:
    """A blush across the cheeks (redder skin over the upper 0.6 from the eyes to the nose, plain skin below):
    a strand hanging over the side from the eyes to the mouth is filled, row by row, with the colour of the
    skin beside it at that height, not a colour fitted to the whole face (which smears the blush up and down
    and runs off at the side)."""
    image, lm, strand, shaded, bare = _sides()
    h, w = image.shape[:2]
    rows = np.mgrid[0:h, 0:w][0]
    eyes, nose = float(lm[[33, 263], 1].mean()), float(lm[2, 1])
    blush_top, blush_bottom = eyes + 8, eyes + 0.6 * (nose - eyes)
    margin = 0.04 * float(np.ptp(lm[:468, 0]))
    blush = bare & (rows > blush_top) & (rows < blush_bottom)
    image[blush] = np.clip(image[blush].astype(np.float32) * np.float32([0.8, 0.85, 1.1]), 0, 255).astype(np.uint8)
    assert avatar_cover(image, lm)[strand].mean() > 0.8
    out = fill_cover(image, lm)
    ycc_in = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    ycc_out = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    beside = bare & ~strand & ~shaded & ~cv2.dilate(strand.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    for band in ((rows > blush_top + margin) & (rows < blush_bottom - margin), rows > blush_bottom + margin):
        want = ycc_in[beside & band].mean(axis=0)
        got = ycc_out[strand & band].mean(axis=0)
        assert np.abs(got - want).max() < 4.0, (got, want)
