"""The frequency-split de-lighting: an avatar's painted relief comes out of its texture, its facial hair does not."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import DelightOptions, delight
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)

# The de-lighting before the split: one band, everything coarser than 0.055 face widths by 0.7, gains to 1.5x.
SINGLE_BAND = DelightOptions(broad_scale=None, scale=0.055, strength=0.7, max_gain=1.5)


def _luma(image: Image) -> npt.NDArray[np.float32]:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _width(lm: Landmarks) -> float:
    return float(np.ptp(lm[topo.face_oval_ring(), 0]))


def _disc(shape: tuple[int, ...], centre: npt.NDArray[np.float32], radius: float) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.circle(mask, (int(round(centre[0])), int(round(centre[1]))), max(1, int(radius)), 255, -1)
    return mask > 0


def _shaded(image: Image, centre: npt.NDArray[np.float32], sigma: float, depth: float) -> Image:
    """`image` under a soft round shadow (Gaussian, `sigma` px) that takes `depth` of the light at its centre."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    return np.clip(image * (1.0 - depth * blob)[..., None], 0, 255).astype(np.uint8)


def _patch(image: Image, centre: npt.NDArray[np.float32], axes: tuple[float, float], level: float) -> tuple[Image, npt.NDArray[np.bool_]]:
    """`image` with a flat dark ellipse (its pixels times `level`), e.g. a moustache; and the ellipse's inner half."""
    mask = np.zeros(image.shape[:2], np.uint8)
    c = (int(round(centre[0])), int(round(centre[1])))
    cv2.ellipse(mask, c, (int(axes[0]), int(axes[1])), 0, 0, 360, 255, -1)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.5)
    out = np.clip(image * (1.0 - (1.0 - level) * soft)[..., None], 0, 255).astype(np.uint8)
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(inner, c, (int(axes[0] / 2), int(axes[1] / 2)), 0, 0, 360, 255, -1)
    return out, inner > 0


def test_a_painted_shadow_beside_the_nose_is_lifted_where_one_band_left_most_of_it() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    # A socket-sized shadow on the cheek beside the nose, half the light deep: the painted relief.
    centre = lm[50, :2]
    shaded = _shaded(image, centre, 0.07 * width, 0.5)
    spot = _disc(image.shape, centre, 0.03 * width)
    before = float((_luma(image)[spot] - _luma(shaded)[spot]).mean())
    after = float((_luma(delight(image, lm))[spot] - _luma(delight(shaded, lm))[spot]).mean())
    old = float((_luma(delight(image, lm, SINGLE_BAND))[spot] - _luma(delight(shaded, lm, SINGLE_BAND))[spot]).mean())
    # What the shadow still takes off the de-lit picture, against the de-lit picture without it.
    # (Not all of it: a highlight in the shadow is not lifted, and the local light's blur sees a
    # shadow this size at part of its depth.)
    assert after < 0.45 * before, (before, after)
    assert old > 0.55 * before, (before, old)  # the single band kept most of it: this is what the split changes


def test_a_moustache_stays_dark_while_a_dark_patch_as_large_above_the_nose_is_shade() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    axes = (0.14 * width, 0.035 * width)
    under_nose = 0.5 * (lm[topo.SUBNASALE, :2] + lm[0, :2])  # between the nose's base and the upper lip's top
    moustache, in_moustache = _patch(image, under_nose, axes, 0.3)
    cheek = np.array([lm[50, 0], 0.5 * (lm[topo.NOSE_BRIDGE, 1] + lm[topo.SUBNASALE, 1])], np.float32)
    shadow, in_shadow = _patch(image, cheek, (0.1 * width, 0.07 * width), 0.45)
    kept = _luma(delight(moustache, lm))[in_moustache].mean() / _luma(moustache)[in_moustache].mean()
    lifted = _luma(delight(shadow, lm))[in_shadow].mean() / _luma(shadow)[in_shadow].mean()
    assert kept < 1.25, kept
    assert lifted > 1.5, lifted


def test_an_evenly_lit_photo_keeps_its_brightness_and_its_features() -> None:
    image, lm = big_astronaut()
    out = delight(image, lm)
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(lm[topo.face_oval_ring(), :2]).astype(np.int32)], 255)
    assert abs(float(_luma(out)[face > 0].mean() - _luma(image)[face > 0].mean())) < 8.0
    width = _width(lm)
    iris = _disc(image.shape, lm[topo.LEFT_IRIS_CENTER, :2], 0.015 * width)
    below_eye = _disc(image.shape, lm[330, :2], 0.02 * width)
    before = _luma(image)[below_eye].mean() - _luma(image)[iris].mean()
    after = _luma(out)[below_eye].mean() - _luma(out)[iris].mean()
    assert after > 0.75 * before, (before, after)
