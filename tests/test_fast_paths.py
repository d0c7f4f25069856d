"""The receiver's fast paths give what the plain definitions give (alpha upsampling, warping only the person)."""

from __future__ import annotations

import cv2
import numpy as np

from shared.alpha_codec import EDGE_GAIN, upsample
from shared.render.mesh import _warp_person
from shared.render.warp import remap
from tests.render_fixtures import astronaut


def test_upsample_is_bilinear_then_steepened() -> None:
    rng = np.random.default_rng(1)
    for shape, size in (((60, 80), (640, 480)), ((7, 9), (65, 50)), ((1, 1), (4, 3))):
        low = (rng.integers(0, 16, shape) / 15).astype(np.float32)
        want = np.clip((cv2.resize(low, size, interpolation=cv2.INTER_LINEAR) - 0.5) * EDGE_GAIN + 0.5, 0.0, 1.0)
        got = upsample(low, size)
        assert got.dtype == np.float32 and got.shape == (size[1], size[0])
        assert float(np.abs(got - want).max()) < 1e-5
        assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def _maps(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs * 0.95 + 6 + 3 * np.sin(ys / 17), ys * 1.03 - 4]).astype(np.float32)


def test_person_warp_matches_the_whole_frame_inside_the_matte() -> None:
    image = cv2.resize(astronaut(), (320, 240))
    maps = _maps(320, 240)
    alpha = np.zeros((240, 320), np.float32)
    cv2.ellipse(alpha, (150, 140), (60, 80), 0, 0, 360, 1.0, -1)
    got = _warp_person(image, maps, alpha)
    whole = remap(image, maps)
    inside = alpha > 0
    assert np.array_equal(got[inside], whole[inside])
    assert np.array_equal(got[:40], image[:40])  # above the person: the keyframe as it is
    assert np.array_equal(_warp_person(image, maps, np.ones_like(alpha)), whole)
    assert np.array_equal(_warp_person(image, maps, np.zeros_like(alpha)), image)
