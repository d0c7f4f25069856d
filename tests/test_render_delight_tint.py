"""De-lighting: colour that follows brightness far more than skin's does under light (a varnished painting's brown
shadows) taken out; a photograph's colour kept."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import DelightOptions, delight, feature_mask
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)


def _skin(lm: Landmarks, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    face = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    face = cv2.erode(face, np.ones((int(0.1 * width),) * 2, np.uint8))
    return (face > 0) & (feature_mask(shape[:2], lm, width) == 0)


def _blue_slope(image: Image, skin: npt.NDArray[np.bool_]) -> float:
    """The slope of log(B / luma) on log luma over the skin."""
    bgr = image.astype(np.float32)[skin] + 8.0
    log_y = np.log(bgr @ _LUMA)
    return float(np.polyfit(log_y, np.log(bgr[:, 0]) - log_y, 1)[0])


def _varnished(image: Image, skin: npt.NDArray[np.bool_], slope: float) -> Image:
    """`image` with blue taken out of its darks: log(B / luma) steeper on log luma by `slope` (luma about kept)."""
    bgr = image.astype(np.float32) + 8.0
    log_y = np.log(bgr @ _LUMA)
    mean = float(log_y[skin].mean())
    out = bgr.copy()
    out[..., 0] = bgr[..., 0] * np.exp(slope * (log_y - mean))
    return np.asarray(np.clip(out - 8.0 + 0.5, 0, 255), np.uint8)


def test_brown_shadows_of_a_varnished_painting_are_evened() -> None:
    image, lm = big_astronaut()
    skin = _skin(lm, image.shape)
    painted = _varnished(image, skin, 1.2)
    untouched = _blue_slope(delight(painted, lm, DelightOptions(tint_slope=None)), skin)
    assert untouched > 1.0, untouched
    assert _blue_slope(delight(painted, lm), skin) < 0.7


def test_a_photographs_colour_is_kept() -> None:
    image, lm = big_astronaut()
    with_rule = delight(image, lm).astype(np.int16)
    without = delight(image, lm, DelightOptions(tint_slope=None)).astype(np.int16)
    # The astronaut's blue is a little steeper than the bound: a few pixels move by a few levels, no more.
    changed = np.abs(with_rule - without)
    assert float((changed > 0).mean()) < 0.02 and int(changed.max()) <= 8
