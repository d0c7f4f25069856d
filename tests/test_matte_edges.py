"""The room taken out of a matte's soft edge before a keyframe leaves the sender."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from facewire.sender.matte.edges import decontaminate
from facewire.sender.matte.learned import LearnedMatter
from facewire.shared.types import CapturedFrame

ORANGE = np.array([40, 120, 240], np.float32)
WALL = np.array([250, 250, 250], np.float32)


def _filmed_disc() -> tuple[np.ndarray, np.ndarray]:
    """An orange disc with a soft edge in front of a white wall, as the camera sees it."""
    alpha = np.zeros((240, 320), np.float32)
    cv2.circle(alpha, (160, 120), 80, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3.0)
    seen = alpha[..., None] * ORANGE + (1.0 - alpha[..., None]) * WALL
    return np.clip(seen + 0.5, 0, 255).astype(np.uint8), alpha


def test_the_soft_edge_takes_the_persons_colour_not_the_wall() -> None:
    image, alpha = _filmed_disc()
    out = decontaminate(image, alpha).astype(np.float32)
    edge = (alpha > 0.2) & (alpha < 0.7)
    before = np.abs(image[edge].astype(np.float32) - ORANGE).mean()
    after = np.abs(out[edge] - ORANGE).mean()
    assert before > 60 and after < 0.2 * before, (before, after)
    solid, room = alpha > 0.995, alpha < 0.005
    assert np.array_equal(out[solid], image[solid]) and np.array_equal(out[room], image[room])


def test_a_soft_patch_far_from_the_person_keeps_its_colour() -> None:
    """A faint veil with nothing solid near it (a segmentation's haze on a poster) is left alone."""
    image = np.full((96, 128, 3), 200, np.uint8)
    alpha = np.zeros((96, 128), np.float32)
    alpha[10:20, 10:20] = 0.3
    assert np.array_equal(decontaminate(image, alpha), image)


def test_sizes_must_match() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        decontaminate(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12), np.float32))


def test_the_learned_matter_offers_a_decontaminated_foreground() -> None:
    matter = LearnedMatter()
    assert matter.foreground() is None
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    alpha = matter.matte(CapturedFrame(0, 0, image))
    foreground = matter.foreground()
    assert foreground is not None and foreground.shape == image.shape
    soft = (alpha > 0.05) & (alpha < 0.9)
    assert soft.any() and np.abs(foreground[soft].astype(int) - image[soft]).mean() > 2
    assert np.array_equal(foreground[alpha >= 1.0], image[alpha >= 1.0])
    matter.close()
