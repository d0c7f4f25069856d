"""Self mode drawing a face away from its keyframe's: a mouth closing from an open keyframe, a gaze turned from its."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewire.shared.face import topology as topo
from facewire.shared.render import eyes_mouth as em
from facewire.shared.render import mesh
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.render.sclera import eye_whites
from facewire.shared.types import FrameState, Image, KeyframeState, Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks, big_astronaut, draw, open_mouth

cv2.setNumThreads(1)


def _render(image: Image, keyframe: Landmarks, frame: Landmarks) -> Image:
    return draw(MeshRenderer(), None, KeyframeState(kf=0, image=image, alpha=None, landmarks=keyframe),
                FrameState(seq=1, ts_us=0, face="tracked", landmarks=frame, alpha=None)).image


def _lips_meet(landmarks: Landmarks, shape: tuple[int, ...]) -> np.ndarray:
    """Where the lips meet: the inner lip ring's polygon grown by a pixel."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[topo.inner_lip_ring(), :2]).astype(np.int32)], 255)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0


def test_a_mouth_closing_from_an_open_keyframe_shows_no_teeth_between_the_lips(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = astronaut_landmarks()  # she smiles with her upper teeth showing (opening ~0.17 of the mouth's width)
    assert em.MouthFrame.of(lm).ratio > 0.12
    closed = open_mouth(lm, -5.5)  # the lower lip brought up to ~0.03
    assert em.MouthFrame.of(closed).ratio < 0.05
    where = _lips_meet(closed, astronaut().shape)
    shaded = cv2.cvtColor(_render(astronaut(), lm, closed), cv2.COLOR_BGR2GRAY)[where].astype(np.float32)
    monkeypatch.setattr(mesh.em, "shade_narrowed", lambda *args: None)
    squeezed = cv2.cvtColor(_render(astronaut(), lm, closed), cv2.COLOR_BGR2GRAY)[where].astype(np.float32)
    # Squeezed, the keyframe's teeth are a white line where the lips meet; shaded, the line is the mouth's dark.
    assert squeezed.max() > 235, squeezed.max()
    assert shaded.max() < squeezed.max() - 25 and shaded.mean() < squeezed.mean() - 20, (shaded.max(), shaded.mean(), squeezed.mean())


def test_a_mouth_as_open_as_its_keyframe_is_drawn_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = astronaut_landmarks()
    half = open_mouth(lm, -2.0)  # a little less open than the keyframe: its own interior, squeezed a little
    assert em.MouthFrame.of(half).ratio > 0.6 * em.MouthFrame.of(lm).ratio
    shaded = _render(astronaut(), lm, half)
    monkeypatch.setattr(mesh.em, "shade_narrowed", lambda *args: None)
    assert np.array_equal(shaded, _render(astronaut(), lm, half))


def _look_aside(landmarks: Landmarks, eye_widths: float) -> Landmarks:
    out = landmarks.copy()
    for corners, iris in ((topo.RIGHT_EYE_CORNERS, range(468, 473)), (topo.LEFT_EYE_CORNERS, range(473, 478))):
        width = float(np.linalg.norm(landmarks[corners[0], :2] - landmarks[corners[1], :2]))
        out[list(iris), 0] += eye_widths * width
    return out


def test_a_gaze_turned_from_the_keyframes_shows_the_white_where_the_iris_was(monkeypatch: pytest.MonkeyPatch) -> None:
    image, lm = big_astronaut()  # eyes ~55 px wide: white shows either side of each iris
    whites = eye_whites(image, lm)
    look = _look_aside(lm, 0.2)
    revealed = _render(image, lm, look).astype(np.float32)
    monkeypatch.setattr(mesh, "reveal_whites", lambda *args: None)
    stretched = _render(image, lm, look).astype(np.float32)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    for white, centre, ring in zip(whites, (topo.RIGHT_IRIS_CENTER, topo.LEFT_IRIS_CENTER),
                                   (topo.right_eye_ring(), topo.left_eye_ring()), strict=True):
        assert white is not None
        radius = float(np.linalg.norm(lm[centre + 1 : centre + 5, :2] - lm[centre, :2], axis=1).mean())
        opening = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.round(look[ring, :2]).astype(np.int32)], 255)
        opening = cv2.erode(opening, np.ones((5, 5), np.uint8))
        # Where the iris was and no longer is: the white of the eye, not the iris stretched after it.
        left = (opening > 0) & (np.hypot(xs - lm[centre, 0], ys - lm[centre, 1]) < radius) \
            & (np.hypot(xs - look[centre, 0], ys - look[centre, 1]) > radius + 2)
        assert left.sum() > 50
        colour = np.array(white.colour, np.float32)
        near = float(np.linalg.norm(revealed[left] - colour, axis=1).mean())
        far = float(np.linalg.norm(stretched[left] - colour, axis=1).mean())
        assert near < 0.6 * far, (near, far)


def test_a_gaze_near_the_keyframes_is_drawn_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    image, lm = big_astronaut()
    slight = _look_aside(lm, 0.1)
    drawn = [_render(image, lm, target) for target in (lm, slight)]
    monkeypatch.setattr(mesh, "reveal_whites", lambda *args: None)
    assert all(np.array_equal(a, _render(image, lm, target)) for a, target in zip(drawn, (lm, slight), strict=True))
