"""Large faces take their shading statistics at an eighth of the size: the same light, half the work."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from facewire.shared.render.blend import BlendOptions, match_shading, shading_scale
from facewire.shared.render.mesh import _face_region
from tests.render_fixtures import astronaut


def _lit_scene(face: np.ndarray) -> np.ndarray:
    """The face under a light from the left and a warm cast: something for the fields to transfer."""
    h, w = face.shape[:2]
    ramp = np.linspace(0.6, 1.3, w, dtype=np.float32)[None, :, None]
    return np.clip(face.astype(np.float32) * ramp * np.array([0.85, 1.0, 1.15], np.float32), 0, 255).astype(np.uint8)


def test_the_scale_follows_the_face_width() -> None:
    options = BlendOptions()
    assert shading_scale(120.0, options) == 4 and shading_scale(250.0, options) == 8
    assert shading_scale(250.0, replace(options, eighth_scale_width=float("inf"))) == 4


def test_an_eighth_gives_the_quarters_light_within_a_few_grey_levels() -> None:
    face = cv2.resize(astronaut()[40:300, 140:350], (256, 320))  # her face, the size of a near webcam face
    scene = _lit_scene(cv2.GaussianBlur(face, (0, 0), 3))
    weight = np.zeros((320, 256), np.float32)
    cv2.ellipse(weight, (128, 160), (100, 130), 0, 0, 360, 1.0, -1)
    weight = cv2.GaussianBlur(weight, (0, 0), 8)
    midline = (np.array([128.0, 60.0], np.float32), np.array([128.0, 280.0], np.float32))
    options = BlendOptions()
    eighth = match_shading(face, scene, weight, 240.0, options, midline).astype(np.float64)
    quarter = match_shading(face, scene, weight, 240.0, replace(options, eighth_scale_width=float("inf")), midline).astype(np.float64)
    inside = weight > 0.5
    assert not np.array_equal(eighth, quarter)  # the eighth path did run
    # About a grey level here (a sharp synthetic light); rendered faces: under half a level (d6 x s42, d12 x s5).
    assert np.abs(eighth - quarter)[inside].mean() < 2.0
    assert np.percentile(np.abs(eighth - quarter)[inside], 99) <= 8
    # Off the eighth grid the quarter is used: the same result as asking for it.
    odd = (slice(0, 316), slice(0, 252))
    assert np.array_equal(
        match_shading(face[odd], scene[odd], weight[odd], 240.0, options, midline),
        match_shading(face[odd], scene[odd], weight[odd], 240.0, replace(options, eighth_scale_width=float("inf")), midline),
    )


def test_face_regions_sit_on_the_requested_grid() -> None:
    rng = np.random.default_rng(2)
    for _ in range(100):
        size = (8 * int(rng.integers(20, 90)), 8 * int(rng.integers(20, 70)))
        points = (rng.uniform(0.2, 0.8, 2) * size + rng.normal(0, 40, (60, 2))).astype(np.float32)
        for step, grid in ((1, 4), (2, 8), (1, 8)):
            region = _face_region(points, size, step, grid)
            assert region.x0 % grid == 0 and region.y0 % grid == 0 and region.width % grid == 0 and region.height % grid == 0
            assert region.x0 + region.width <= size[0] and region.y0 + region.height <= size[1]
