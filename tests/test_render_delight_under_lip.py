"""De-lighting: the lower lip's cast shade painted near black made shallower than a hole; a tuft there, the lips kept."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import DelightOptions, delight
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)

# The rule for holes everywhere, under the lip too (as before the lip's shade had a rule of its own).
AS_A_HOLE = DelightOptions(under_lip_knee=DelightOptions().deep_knee, under_lip_keep=DelightOptions().deep_keep)


def _width(lm: Landmarks) -> float:
    return float(np.ptp(lm[topo.face_oval_ring(), 0]))


def _log_luma(image: Image) -> npt.NDArray[np.float32]:
    return np.log(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) + 8.0)


def _under_lip(lm: Landmarks, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """0..1: a crescent 0.04 face widths tall hugging the lower lip's outline from below, between its corners."""
    width = _width(lm)
    lower = lm[list(topo.MOUTH_OUTER[:11]), :2]
    inner = lower[2:-2]  # not out to the corners: the shade is under the lip's fullness
    band = np.zeros(shape[:2], np.uint8)
    polygon = np.vstack([inner, (inner + np.array([0.0, 0.04 * width], np.float32))[::-1]])
    cv2.fillPoly(band, [np.round(polygon).astype(np.int32)], 255)
    lips = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(lm[topo.outer_lip_ring(), :2]).astype(np.int32)], 255)
    band[lips > 0] = 0
    return np.asarray(cv2.GaussianBlur(band.astype(np.float32) / 255.0, (0, 0), 0.003 * width), np.float32)


def _darkened(image: Image, where: npt.NDArray[np.float32], factor: float) -> Image:
    return np.clip(image * (1.0 - (1.0 - factor) * where)[..., None] + 0.5, 0, 255).astype(np.uint8)


def _depth(image: Image, marked: Image, lm: Landmarks, core: npt.NDArray[np.bool_], opts: DelightOptions | None = None) -> float:
    """How much darker (log) the marked pixels are than the same pixels unmarked, both de-lit the same way."""
    return float((_log_luma(delight(image, lm, opts)) - _log_luma(delight(marked, lm, opts)))[core].mean())


def test_a_smooth_black_shade_under_the_lower_lip_is_lifted_past_a_holes() -> None:
    # A painting's shade under the lower lip at 6 % of the skin (2.5 log): the rule for holes leaves it past 1 log,
    # a dark band that moves with the mouth like a second mouth; a photograph's is rarely past 0.9 log.
    image, lm = big_astronaut()
    band = _under_lip(lm, image.shape)
    shaded = _darkened(image, band, 0.06)
    core = band > 0.9
    as_hole = _depth(image, shaded, lm, core, AS_A_HOLE)
    lifted = _depth(image, shaded, lm, core)
    assert as_hole > 1.0, as_hole
    assert lifted < 0.75 * as_hole and lifted < 0.9, (lifted, as_hole)


def test_a_tuft_under_the_lower_lip_is_kept_as_a_hole_is() -> None:
    # Hair as dark as the shade and in the same place (a soul patch, stubble): strokes a pixel or two wide, rough
    # where a shade is smooth, so only the rule for holes applies to it.
    image, lm = big_astronaut()
    band = _under_lip(lm, image.shape)
    rng = np.random.default_rng(3)
    strands = np.zeros(image.shape[:2], np.float32)
    for x in range(0, image.shape[1], 3):
        strands[:, x : x + int(rng.integers(1, 3))] = 1.0
    strands = np.clip(strands + (rng.random(image.shape[:2]) < 0.2), 0.0, 1.0).astype(np.float32)
    tuft = _darkened(image, band * strands, 0.06)
    core = (band > 0.9) & (strands > 0.5)
    as_hole, kept = _depth(image, tuft, lm, core, AS_A_HOLE), _depth(image, tuft, lm, core)
    assert abs(kept - as_hole) < 0.1, (kept, as_hole)
    assert as_hole > 1.0, as_hole


def test_the_lips_and_a_photographs_chin_are_unchanged() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    # Under a black shade, the lips themselves (and the opening between them) are not lifted.
    shaded = _darkened(image, _under_lip(lm, image.shape), 0.06)
    lips = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(lm[topo.outer_lip_ring(), :2]).astype(np.int32)], 255)
    grow = int(round(0.02 * width))
    lips = cv2.erode(lips, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    change = np.abs(_log_luma(delight(shaded, lm)) - _log_luma(delight(shaded, lm, AS_A_HOLE)))[lips > 0]
    assert float(change.max()) < 0.02, float(change.max())
    # The photograph's own shade under its lip and its chin: as with the rule for holes.
    chin = np.zeros(image.shape[:2], np.uint8)
    top = lm[topo.LOWER_LIP_INNER_MID, :2]
    cv2.rectangle(chin, (int(top[0] - 0.2 * width), int(top[1])), (int(top[0] + 0.2 * width), int(lm[topo.CHIN, 1])), 255, -1)
    change = np.abs(_log_luma(delight(image, lm)) - _log_luma(delight(image, lm, AS_A_HOLE)))[chin > 0]
    assert float(change.mean()) < 0.01 and float(np.percentile(change, 99)) < 0.1
