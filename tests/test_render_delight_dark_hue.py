"""De-lighting: the smooth colour shift that evens the skin's colour leaves the hue of what is far darker than the
skin round it (a moustache under a red nose, nostrils) as painted."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import delight
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)


def _blushed_with_a_moustache() -> tuple[Image, Landmarks, npt.NDArray[np.bool_]]:
    """The face with a broad red blush round the upper lip and a dark, neutral moustache on it."""
    image, lm = big_astronaut()
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    lip = (lm[topo.SUBNASALE, :2] + lm[0, :2]) / 2.0  # between the nose and the upper lip's middle
    dist2 = ((cols - lip[0]) ** 2 + (rows - lip[1]) ** 2) / np.float32((0.2 * width) ** 2)
    blush = np.exp(-dist2)[..., None]
    out = image.astype(np.float32) * (1.0 - 0.35 * blush) + np.array([60, 70, 255], np.float32) * 0.35 * blush
    moustache = (np.abs(cols - lip[0]) < 0.18 * width) & (np.abs(rows - lip[1]) < 0.025 * width)
    out[moustache] = (34, 36, 40)
    return np.asarray(np.clip(out + 0.5, 0, 255), np.uint8), lm, moustache


def _chroma(image: Image, where: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)[where][:, 1:].astype(np.float32).mean(axis=0), np.float32)


def test_a_dark_moustache_under_a_blush_keeps_its_hue() -> None:
    """Shifted with the blush's skin towards the face's mean colour, a neutral moustache went teal (its Cr pulled
    well below neutral): a fixed shift is a strong colour on a dark pixel."""
    image, lm, moustache = _blushed_with_a_moustache()
    core = cv2.erode(moustache.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    before = _chroma(image, core)
    after = _chroma(delight(image, lm), core)
    assert float(np.abs(after - before).max()) < 3.0, (before, after)
