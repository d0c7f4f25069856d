"""De-lighting a portrait lit from one side: the shadowed socket's skin is lifted, the eye in it is not washed out."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.delight import DelightOptions, delight
from facewire.shared.types import Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks


def _shaded_side() -> tuple[npt.NDArray[np.uint8], Landmarks, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The astronaut, three times larger, with the image-right half of her face in a soft shadow (0.6 of the light)."""
    image = cv2.resize(astronaut(), None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)
    lm = astronaut_landmarks().astype(np.float32).copy()
    lm[:, :2] = (lm[:, :2] + 0.5) * 3.0 - 0.5
    lm[:, 2] *= 3.0
    h, w = image.shape[:2]
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    cols = np.arange(w, dtype=np.float32)[None, :]
    shade = 1.0 - 0.4 * np.clip((cols - float(lm[6, 0])) / (0.1 * width), 0.0, 1.0)
    image = np.clip(image * np.broadcast_to(shade, (h, w))[..., None], 0, 255).astype(np.uint8)
    eye = np.zeros((h, w), np.uint8)
    cv2.fillPoly(eye, [np.round(lm[topo.left_eye_ring(), :2]).astype(np.int32)], 255)
    eye = cv2.erode(eye, np.ones((3, 3), np.uint8))
    below = np.zeros((h, w), np.uint8)
    cv2.circle(below, tuple(int(v) for v in lm[330, :2]), int(0.03 * width), 255, -1)
    return np.ascontiguousarray(image), lm, eye > 0, below > 0


def _luma(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_a_shadowed_eye_keeps_its_own_contrast_while_its_socket_is_lifted() -> None:
    image, lm, eye, below = _shaded_side()
    out = delight(image, lm, DelightOptions())
    lifted = delight(image, lm, DelightOptions(eye_lift=1.0))
    # The skin under the shadowed eye is lifted either way.
    assert _luma(out)[below].mean() > 1.1 * _luma(image)[below].mean()
    # The eye itself: kept (within a few levels), where lifting it with the socket brightens it by a fifth.
    before = float(_luma(image)[eye].mean())
    assert abs(float(_luma(out)[eye].mean()) - before) < 0.05 * before
    assert float(_luma(lifted)[eye].mean()) > 1.15 * before
