"""occluder_mask's disc morphology: a union of rectangles' filters, the same values as OpenCV's elliptical element's."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.render.occlusion import _disc_morphology, _disc_rectangles


def test_disc_morphology_is_opencvs_elliptical_erode_dilate_and_blackhat() -> None:
    """Binary masks (sparse and dense), grey uint8 and float32 pictures, radii 1-40 on pictures smaller and larger
    than the disc: dilate, erode and the black-hat built from them equal cv2's with MORPH_ELLIPSE, borders included."""
    rng = np.random.default_rng(11)
    for trial in range(150):
        radius = int(rng.integers(1, 41))
        shape = (int(rng.integers(1, 140)), int(rng.integers(1, 140)))
        kind = trial % 3
        if kind == 0:
            image = ((rng.uniform(size=shape) < rng.uniform(0.001, 0.6)) * 255).astype(np.uint8)
        elif kind == 1:
            image = rng.integers(0, 256, shape).astype(np.uint8)
        else:
            image = rng.uniform(0.0, 255.0, shape).astype(np.float32)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        dilated, eroded = _disc_morphology(True, image, radius), _disc_morphology(False, image, radius)
        assert dilated.dtype == image.dtype and np.array_equal(dilated, cv2.dilate(image, disc)), (trial, radius, shape)
        assert eroded.dtype == image.dtype and np.array_equal(eroded, cv2.erode(image, disc)), (trial, radius, shape)
        blackhat = cv2.subtract(_disc_morphology(False, dilated, radius), image)
        assert np.array_equal(blackhat, cv2.morphologyEx(image, cv2.MORPH_BLACKHAT, disc)), (trial, radius, shape)


def test_disc_rectangles_cover_the_disc_exactly() -> None:
    for radius in range(1, 60):
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        union = np.zeros_like(disc)
        for w, h in _disc_rectangles(radius):
            union[radius - h : radius + h + 1, radius - w : radius + w + 1] = 1
        assert np.array_equal(union, disc), radius
        assert len(_disc_rectangles(radius)) <= radius + 1
