"""Self mode warps only the bands of rows the person can reach (MeshRenderer `_reach`): the alpha is the whole
frame's everywhere, and the picture is where the alpha is above 0 or the residual layer's fusion reads it, so the
player's person (layer and alpha fix included) and the composited picture are the whole frame's, byte for byte.
A large body motion, a person at the frame's edge and an alpha fix out beside it must not leave any of it out."""

from __future__ import annotations

import numpy as np
import pytest

from facewire.receiver.compositor import Compositor
from facewire.shared.codec.alpha_fix import LEVELS, TILE, TILE_PX, apply_fix
from facewire.shared.render import mesh
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.render.replica import LayerHold, draw
from facewire.shared.types import AlphaFix, FrameState, KeyframeState, Landmarks
from tests.render_fixtures import astronaut, astronaut_landmarks, open_mouth, transform


def _keyframe() -> KeyframeState:
    image = astronaut()
    alpha = np.zeros(image.shape[:2], np.float32)
    alpha[60:, 150:380] = 1.0  # a person narrower than the frame, down to its bottom edge
    alpha[60:, 140:150] = 0.3  # and a soft edge
    return KeyframeState(1, image, alpha, astronaut_landmarks().astype(np.float32))


def _fix(shape: tuple[int, int]) -> AlphaFix:
    rows, cols = -(-shape[0] // TILE_PX), -(-shape[1] // TILE_PX)
    held = np.zeros((rows, cols), bool)
    held[2, cols - 1] = True  # a corrected tile far outside the keyframe's person: the fix raises its alpha
    return AlphaFix(held, np.full((rows * TILE, cols * TILE), LEVELS - 1, np.uint8))


def _cases() -> list[tuple[str, Landmarks, np.ndarray | None, bool]]:
    lm = astronaut_landmarks().astype(np.float32)
    centre = (float(lm[:, 0].mean()), float(lm[:, 1].mean()))
    shifted = np.array([[1.0, 0.0, -90.0], [0.0, 1.0, -40.0]])  # frame to keyframe: the body moved 90 px right
    turned = np.array([[0.97, -0.2, 40.0], [0.2, 0.97, -30.0]])
    return [
        ("still", lm, None, False),
        ("large body motion", transform(lm, 5.0, (80.0, 30.0), centre), shifted, False),
        ("body turned, mouth open, alpha fix", open_mouth(transform(lm, -6.0, (-20.0, 10.0), centre), 10.0), turned, True),
        ("at the frame's edge", transform(lm, 0.0, (-float(lm[:, 0].min()) - 20.0, 0.0), centre), shifted, False),
    ]


@pytest.mark.parametrize("index", range(4))
def test_the_person_is_drawn_as_the_whole_frame_draws_it(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mesh, "_REACH_FROM", 0)  # the fixture's 512x512 frame is below the size the bands start at
    name, lm, body, fixed = _cases()[index]
    keyframe = _keyframe()
    shape = keyframe.image.shape[:2]
    rng = np.random.default_rng(index)
    layer = rng.integers(96, 160, (96, 96, 3), dtype=np.uint8)  # a strong correction: the fusion reads far
    frame = FrameState(seq=index, ts_us=0, face="tracked", landmarks=lm, alpha=None, layer=layer, body=body,
                       alpha_fix=_fix(shape) if fixed else None)
    people = []
    for room in (False, True):
        renderer = MeshRenderer()
        renderer.draw_room = room
        renderer.prepare_identity(None)
        renderer.prepare_keyframe(keyframe)
        person = draw(renderer, frame, keyframe, LayerHold())
        if frame.alpha_fix is not None:
            person = type(person)(person.image, apply_fix(person.alpha, frame.alpha_fix))
        people.append(person)
    banded, whole = people
    assert np.array_equal(banded.alpha, whole.alpha), f"{name}: the alpha differs"
    shown = whole.alpha > 0
    assert np.array_equal(banded.image[shown], whole.image[shown]), f"{name}: the person's picture differs"
    compositor = Compositor(None, (shape[1], shape[0]))
    assert np.array_equal(compositor.compose(banded), compositor.compose(whole)), f"{name}: the picture differs"
    # the bands left part of the frame out (else this proves nothing about them), and it is black there
    assert (banded.image.max(axis=2) == 0).mean() > 0.05, f"{name}: the bands covered the whole frame"


def test_too_narrow_a_reach_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: bands that ignore the layer's reach change the fused person at its edge."""
    monkeypatch.setattr(mesh, "layer_reach", lambda landmarks: 0)
    with pytest.raises(AssertionError, match="picture differs"):
        test_the_person_is_drawn_as_the_whole_frame_draws_it(1, monkeypatch)


def test_the_layer_transform_memo_answers_as_the_head_pose_does() -> None:
    from facewire.shared.codec.layer import face_box_transform
    from facewire.shared.face.pose import head_pose
    from facewire.shared.render.replica import LAYER_GEOMETRY, layer_transform

    lm = astronaut_landmarks().astype(np.float32)
    other = transform(lm, 9.0, (14.0, -3.0), (256.0, 256.0))
    for landmarks in (lm, other, other.copy(), lm):
        expected = face_box_transform(head_pose(landmarks.astype(np.float64)), LAYER_GEOMETRY)
        got = layer_transform(landmarks)
        assert got is not None and np.array_equal(got, expected)
        got[:] = 0.0  # the caller's to change: the memo keeps its own
    again = layer_transform(lm)
    assert again is not None and again.any()


def test_the_renderer_knows_the_alpha_fixs_tile() -> None:
    assert mesh.FIX_TILE_PX == TILE_PX
