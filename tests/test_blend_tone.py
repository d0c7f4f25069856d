"""The avatar's skin takes the scene's skin tone: a pale avatar on a tan sender is not a pale mask on a tan neck."""

from __future__ import annotations

import numpy as np

from facewire.shared.render.blend import BlendOptions, match_shading


def _shaded_mean(face_bgr: tuple[int, int, int], scene_bgr: tuple[int, int, int]) -> np.ndarray:
    face = np.full((96, 96, 3), face_bgr, np.uint8)
    scene = np.full((96, 96, 3), scene_bgr, np.uint8)
    out = match_shading(face, scene, np.ones((96, 96), np.float32), 80.0, BlendOptions()).astype(np.float64)
    return out[20:76, 20:76].reshape(-1, 3).mean(0)


def test_a_pale_avatar_on_a_tan_sender_takes_the_senders_tone() -> None:
    # w0 x people_0: the avatar's cheeks about (201, 165, 138) RGB through the old fractions, the sender's (188, 141, 110).
    scene = (110, 141, 188)
    mean = _shaded_mean((185, 205, 232), scene)
    off = np.log(mean + 8.0) - np.log(np.array(scene, np.float64) + 8.0)
    assert np.abs(off).max() < 0.04, (mean, off)


def test_a_tan_avatar_on_a_pale_bright_sender_is_not_clipped() -> None:
    # Taking the scene's brightness in full brightens a darker face a long way: the roll-off keeps every channel off white.
    mean = _shaded_mean((95, 140, 190), (228, 230, 245))
    assert mean.max() < 250, mean
    assert mean.min() > 150, mean


def test_a_pale_avatar_on_a_dim_dark_sender_comes_down_to_her_skin() -> None:
    # d3 x people_0: a near-white face on a sender lit dimly, about half her brightness: at a 1.5 bound both ways it
    # stayed a glowing peach mask; darkening clips nothing, so it goes all the way.
    scene = (70, 100, 140)
    mean = _shaded_mean((190, 210, 235), scene)
    off = np.log(mean + 8.0) - np.log(np.array(scene, np.float64) + 8.0)
    assert np.abs(off).max() < 0.09, (mean, off)  # what is left is the tint kept (max_kept_tint)
