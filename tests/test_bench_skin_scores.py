"""bench/swap.py's skin measures: pale rings round the eyes are seen where the blotch measure leaves them out."""

from __future__ import annotations

import cv2
import numpy as np

from bench.swap import skin_scores
from facewire.shared.face import topology as topo
from facewire.shared.render.delight import eye_openings
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)


def _width(lm: np.ndarray) -> float:
    return float(np.ptp(lm[topo.face_oval_ring(), 0]))


def test_a_pale_ring_round_the_eyes_counts_as_rings_not_as_blotch() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    # Pale lids and under-eyes: a band from the lash line out to 0.035 face widths round each opening.
    band = (eye_openings(image.shape, lm, int(0.035 * width)) > 0) & (eye_openings(image.shape, lm, int(0.015 * width)) == 0)
    ringed = image.copy()
    ringed[band] = np.clip(ringed[band].astype(np.float32) * 1.5 + 30, 0, 255).astype(np.uint8)
    scores = skin_scores(image, ringed, lm, None)
    assert scores.rings > 3.0, scores
    assert abs(scores.blotch) < 1.0, scores
    assert abs(skin_scores(image, image, lm, None).rings) < 1e-6


def test_a_colour_cast_counts_as_cast_and_a_brightness_change_does_not() -> None:
    image, lm = big_astronaut()
    # An ochre varnish: red up, blue down, over the whole picture (the brightness about the same).
    varnished = np.clip(image.astype(np.float32) * np.array([0.8, 1.0, 1.15], np.float32), 0, 255).astype(np.uint8)
    assert skin_scores(image, varnished, lm, None).cast > 10.0
    for gain in (0.8, 1.1):  # another light's brightness (short of clipping the skin, which does turn it paler)
        relit = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        assert skin_scores(image, relit, lm, None).cast < 2.0
    assert skin_scores(image, image, lm, None).cast < 1e-6
    # blotch is brightness only: blind to the cast.
    assert abs(skin_scores(image, varnished, lm, None).blotch) < 1.0


def test_a_pale_greyed_face_counts_as_tone_and_its_own_features_do_not() -> None:
    image, lm = big_astronaut()
    # A paler, greyer skin than the sender's (w0 x people_0: brighter, red raised least), as a face on a tan neck.
    pale = np.clip(image.astype(np.float32) * np.array([1.25, 1.17, 1.07], np.float32), 0, 255).astype(np.uint8)
    assert skin_scores(image, pale, lm, None).tone > 10.0
    # Detail of its own at zero mean (another face's pores and marks) moves no mean.
    rng = np.random.default_rng(0)
    speckled = np.clip(image.astype(np.float32) + rng.normal(0.0, 12.0, image.shape[:2])[..., None], 0, 255).astype(np.uint8)
    assert skin_scores(image, speckled, lm, None).tone < 2.0
    assert abs(skin_scores(image, image, lm, None).tone) < 1e-6


def test_a_flattened_face_counts_as_negative_form_and_a_brighter_one_does_not() -> None:
    image, lm = big_astronaut()
    width = _width(lm)
    # The face's form taken out: log luminance between the form scales replaced by the coarse blur.
    y = np.log(image.astype(np.float32) + 8.0)
    coarse = cv2.GaussianBlur(y, (0, 0), 0.2 * width)
    fine = cv2.GaussianBlur(y, (0, 0), 0.04 * width)
    flat = np.clip(np.exp(y - fine + coarse) - 8.0, 0, 255).astype(np.uint8)
    assert skin_scores(image, flat, lm, None).form < -2.0
    brighter = np.clip(image.astype(np.float32) * 1.1, 0, 255).astype(np.uint8)
    assert abs(skin_scores(image, brighter, lm, None).form) < 1.0
