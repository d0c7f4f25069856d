"""De-lighting: features painted near black (nostrils, the shade under the lower lip) made shallower; a photograph's kept."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import DelightOptions, delight
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)


def _width(lm: Landmarks) -> float:
    return float(np.ptp(lm[topo.face_oval_ring(), 0]))


def _log_luma(image: Image) -> npt.NDArray[np.float32]:
    return np.log(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) + 8.0)


def _nostrils(lm: Landmarks, shape: tuple[int, ...], radius: float) -> npt.NDArray[np.float32]:
    """0..1: two discs `radius` face widths across at the nostrils' landmarks, soft-edged."""
    width = _width(lm)
    mask = np.zeros(shape[:2], np.float32)
    for i in (98, 327):  # the nostrils' outer wings; their openings sit just inside
        centre = 0.6 * lm[i, :2] + 0.4 * lm[topo.SUBNASALE, :2]
        cv2.circle(mask, (int(round(centre[0])), int(round(centre[1]))), max(2, int(round(radius * width))), 1.0, -1)
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), 0.004 * width), np.float32)


def _depth(image: Image, marked: Image, lm: Landmarks, where: npt.NDArray[np.float32], opts: DelightOptions) -> float:
    """How much darker (log) the marked pixels are than the same pixels unmarked, both de-lit the same way."""
    core = where > 0.9
    return float((_log_luma(delight(image, lm, opts)) - _log_luma(delight(marked, lm, opts)))[core].mean())


def test_nostrils_painted_black_are_made_shallower() -> None:
    # Digital art paints nostrils near black (1.5-3 log below the skin round them; a photograph's: 0.2-0.9). Under
    # the scene's light, which lifts the skin round them but cannot lift black, they read as holes in the face.
    image, lm = big_astronaut()
    holes = _nostrils(lm, image.shape, 0.02)
    black = np.clip(image * (1.0 - 0.92 * holes)[..., None] + 0.5, 0, 255).astype(np.uint8)
    painted = _depth(image, black, lm, holes, DelightOptions(deep_keep=1.0))
    assert painted > 1.5, painted
    assert _depth(image, black, lm, holes, DelightOptions()) < 0.6 * painted


def test_a_photographs_dark_features_and_a_broad_dark_patch_are_kept() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    kept = DelightOptions(deep_keep=1.0)
    # The photograph's own nostrils and mouth corners: as without the rule.
    nose = np.zeros(image.shape[:2], np.float32)
    cv2.circle(nose, tuple(int(v) for v in lm[topo.SUBNASALE, :2]), int(0.15 * width), 1.0, -1)
    change = np.abs(_log_luma(delight(image, lm)) - _log_luma(delight(image, lm, kept)))[nose > 0]
    assert float(change.mean()) < 0.01 and float(np.percentile(change, 99)) < 0.1
    # A spot on the cheek as dark as a photograph's nostril (0.6 log) is kept.
    spot = np.zeros(image.shape[:2], np.float32)
    cheek = 0.5 * (lm[topo.SUBNASALE, :2] + lm[234, :2])
    cv2.circle(spot, (int(cheek[0]), int(cheek[1])), int(0.02 * width), 1.0, -1)
    spot = cv2.GaussianBlur(spot, (0, 0), 0.004 * width)
    mole = np.clip(image * (1.0 - 0.45 * spot)[..., None] + 0.5, 0, 255).astype(np.uint8)
    assert abs(_depth(image, mole, lm, spot, DelightOptions()) - _depth(image, mole, lm, spot, kept)) < 0.05
    # A dark patch broader than a feature (a beard's width) is its own surface, however dark.
    patch = np.zeros(image.shape[:2], np.float32)
    chin = lm[topo.CHIN, :2] - np.array([0.0, 0.12 * width], np.float32)
    cv2.circle(patch, (int(chin[0]), int(chin[1])), int(0.12 * width), 1.0, -1)
    patch = cv2.GaussianBlur(patch, (0, 0), 0.004 * width)
    beard = np.clip(image * (1.0 - 0.85 * patch)[..., None] + 0.5, 0, 255).astype(np.uint8)
    assert abs(_depth(image, beard, lm, patch, DelightOptions()) - _depth(image, beard, lm, patch, kept)) < 0.05
