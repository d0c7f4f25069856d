"""Irises left to the warp are held near the avatar's own place: a far gaze does not smear a small painted eye."""

from __future__ import annotations

import numpy as np

from facewire.shared.face import topology as topo
from facewire.shared.render.eyes_mouth import hold_irises, limit_glance
from tests.render_fixtures import astronaut_landmarks

RIGHT = (topo.RIGHT_IRIS_CENTER, *topo.RIGHT_IRIS)
LEFT = (topo.LEFT_IRIS_CENTER, *topo.LEFT_IRIS)


def _eye_width(lm: np.ndarray, corners: tuple[int, int]) -> float:
    return float(np.linalg.norm(lm[corners[0], :2] - lm[corners[1], :2]))


def _gazing(lm: np.ndarray, amount: float) -> np.ndarray:
    """Both irises moved `amount` eye widths towards the subject's left (image right), the rest of the face kept."""
    out = lm.copy()
    for idx, corners in ((RIGHT, topo.RIGHT_EYE_CORNERS), (LEFT, topo.LEFT_EYE_CORNERS)):
        out[list(idx), 0] += np.float32(amount * _eye_width(lm, corners))
    return out


def _assert_moved_whole(out: np.ndarray, shape_of: np.ndarray, idx: tuple[int, ...], atol: float) -> None:
    """The iris `idx` in `out` has the ring round its centre that `shape_of` has: moved as one piece."""
    ring = out[list(idx), :2] - out[idx[0], :2]
    assert np.allclose(ring, shape_of[list(idx), :2] - shape_of[idx[0], :2], atol=atol)


def _assert_only_irises_moved(out: np.ndarray, before: np.ndarray) -> None:
    others = np.setdiff1d(np.arange(len(before)), RIGHT + LEFT)
    assert np.array_equal(out[others], before[others])


def test_a_far_gaze_is_held_within_the_travel_and_the_iris_keeps_its_shape() -> None:
    neutral = astronaut_landmarks()
    target = _gazing(neutral, 0.3)
    held = hold_irises(target, neutral, (True, True), 0.08)
    for idx, corners in ((RIGHT, topo.RIGHT_EYE_CORNERS), (LEFT, topo.LEFT_EYE_CORNERS)):
        travel = np.linalg.norm(held[idx[0], :2] - neutral[idx[0], :2]) / _eye_width(neutral, corners)
        assert 0.05 < travel <= 0.081, travel  # most of the allowed travel, never more
        _assert_moved_whole(held, target, idx, 1e-4)
    _assert_only_irises_moved(held, target)


def test_small_glances_pass_and_eyes_not_held_are_untouched() -> None:
    neutral = astronaut_landmarks()
    glance = _gazing(neutral, 0.01)
    held = hold_irises(glance, neutral, (True, True), 0.08)
    assert np.abs(held - glance).max() < 0.01 * _eye_width(neutral, topo.RIGHT_EYE_CORNERS)
    far = _gazing(neutral, 0.3)
    one = hold_irises(far, neutral, (False, True), 0.08)
    assert np.array_equal(one[list(RIGHT)], far[list(RIGHT)])
    assert not np.array_equal(one[list(LEFT)], far[list(LEFT)])


def test_the_hold_follows_the_eye_when_the_head_moves() -> None:
    neutral = astronaut_landmarks()
    moved = neutral.copy()
    moved[:, :2] = neutral[:, :2] * np.float32(1.5) + np.float32(20.0)  # larger and shifted: no gaze change
    assert np.allclose(hold_irises(moved, neutral, (True, True), 0.08), moved, atol=1e-3)


def test_a_held_iris_keeps_the_avatars_size_when_the_tracked_iris_shrinks() -> None:
    """The tracker shrinks an iris raised or turned (d12: by a third); the warp would shrink the avatar's with it."""
    neutral = astronaut_landmarks()
    shrunk = neutral.copy()
    for idx in (RIGHT, LEFT):
        shrunk[list(idx[1:]), :2] = neutral[idx[0], :2] + np.float32(0.6) * (neutral[list(idx[1:]), :2] - neutral[idx[0], :2])
    held = hold_irises(shrunk, neutral, (True, False), 0.08)
    assert np.allclose(held[list(RIGHT)], neutral[list(RIGHT)], atol=1e-3)
    assert np.array_equal(held[list(LEFT)], shrunk[list(LEFT)])  # not held: the lifted iris is drawn at its size


def _along(lm: np.ndarray, idx: tuple[int, ...], corners: tuple[int, int]) -> float:
    """The iris centre's place along its eye: -0.5 at corner 0 (outer), 0.5 at corner 1."""
    a, b = lm[corners[0], :2].astype(np.float64), lm[corners[1], :2].astype(np.float64)
    return float((lm[idx[0], :2] - (a + b) / 2) @ (b - a) / ((b - a) @ (b - a)))


def _iris_share(lm: np.ndarray, idx: tuple[int, ...], corners: tuple[int, int]) -> float:
    radius = float(np.linalg.norm(lm[list(idx[1:]), :2] - lm[idx[0], :2], axis=1).mean())
    return radius / _eye_width(lm, corners)


def test_a_glance_into_the_corner_stops_where_the_avatars_iris_still_shows() -> None:
    """d12 rolls his eyes aside (0.34 of the eye's width): an avatar's round iris pushed as far sits flush with
    its corner; limited, its edge stays inside the eye, and the glance keeps its direction and most of its size."""
    neutral = astronaut_landmarks()
    far = limit_glance(_gazing(neutral, 0.34), neutral, (True, True), 0.8)
    for idx, corners, sign in ((RIGHT, topo.RIGHT_EYE_CORNERS, 1.0), (LEFT, topo.LEFT_EYE_CORNERS, -1.0)):
        rest, now = _along(neutral, idx, corners), _along(far, idx, corners)
        edge = abs(now) + _iris_share(neutral, idx, corners)
        assert edge < 0.5 - 0.2 * (0.5 - abs(rest) - _iris_share(neutral, idx, corners)) + 1e-6, edge
        assert sign * (now - rest) > 0.15  # the glance is still there, the same way
        _assert_moved_whole(far, neutral, idx, 1e-3)
    _assert_only_irises_moved(far, neutral)


def test_an_ordinary_glance_passes_and_eyes_not_limited_are_untouched() -> None:
    neutral = astronaut_landmarks()
    glance = _gazing(neutral, 0.06)
    assert np.allclose(limit_glance(glance, neutral, (True, True), 0.8), glance, atol=1e-4)
    far = _gazing(neutral, 0.34)
    one = limit_glance(far, neutral, (False, True), 0.8)
    assert np.array_equal(one[list(RIGHT)], far[list(RIGHT)])
    assert not np.array_equal(one[list(LEFT)], far[list(LEFT)])
    moved = neutral.copy()
    moved[:, :2] = neutral[:, :2] * np.float32(1.5) + np.float32(20.0)  # the head moved, the eyes did not
    assert np.allclose(limit_glance(moved, neutral, (True, True), 0.8), moved, atol=1e-3)


def test_a_held_iris_moves_with_its_eyes_opening_when_the_opening_slides_between_the_corners() -> None:
    """A turned head slides an eye's opening along the eye between its corners (the lids' middle lies in front of the
    corners): the held iris goes with the lids it is warped with, or the fan between them shears (happy1 on w1)."""
    neutral = astronaut_landmarks()
    slid = neutral.copy()
    for idx, corners, ring in ((RIGHT, topo.RIGHT_EYE_CORNERS, topo.right_eye_ring()),
                               (LEFT, topo.LEFT_EYE_CORNERS, topo.left_eye_ring())):
        inside = [int(i) for i in ring if int(i) not in corners]
        slide = np.float32(0.12 * _eye_width(neutral, corners))
        slid[inside + list(idx), 0] += slide
    held = hold_irises(slid, neutral, (True, True), 0.08)
    assert np.allclose(held, slid, atol=0.02)  # pixels, of eyes ~30 wide: held to the corners it lagged 1.4
