"""The avatar's own tint under the scene's light: a far-off tint (a varnished painting's ochre) is not kept in proportion."""

from __future__ import annotations

import numpy as np

from facewire.shared.render.blend import _colour_balance
from facewire.shared.render.colour import LUMA_BGR


def _kept(tint_bgr: tuple[float, float, float], max_kept: float) -> np.ndarray:
    """Log colour of the balanced avatar against the scene's skin, per channel, relative to luminance (0: matched)."""
    tint = np.broadcast_to(np.array(tint_bgr, np.float32), (8, 8, 3)).copy()
    gains = _colour_balance(tint, np.ones((8, 8), np.float32), 0.65, max_kept)[0, 0]
    # `tint` is the scene's log colour minus the avatar's; the balanced avatar is off the scene's by tint - log(gains).
    off = np.array(tint_bgr) - np.log(gains)
    return off - off @ LUMA_BGR


def test_a_far_off_tint_is_kept_only_up_to_the_bound() -> None:
    # A yellow painting on a pink-skinned sender: far less blue, a little less red than the scene's skin.
    far = (0.45, -0.05, -0.12)
    proportional = np.abs(_kept(far, np.inf)).max()
    bounded = np.abs(_kept(far, 0.08)).max()
    assert proportional > 0.14, proportional  # 0.35 of the difference stays: a face that does not match its neck
    assert bounded < 0.11, bounded


def test_a_near_tint_keeps_its_share() -> None:
    near = (0.1, 0.0, -0.05)
    assert np.allclose(_kept(near, 0.08), _kept(near, np.inf), atol=1e-4)


def test_a_varnished_painting_takes_the_scene_skin() -> None:
    # A yellow-varnished painting on a cool-lit sender: the scene's skin has ~2.3x the painting's blue.
    varnish = (0.83, 0.09, -0.26)
    tint = np.broadcast_to(np.array(varnish, np.float32), (8, 8, 3)).copy()
    for max_cast, within in ((1.6, False), (2.4, True)):
        gains = _colour_balance(tint, np.ones((8, 8), np.float32), 1.0, 0.08, max_cast)[0, 0]
        off = np.array(varnish) - np.log(gains)
        off -= off @ LUMA_BGR
        assert bool(np.abs(off).max() < 0.02) == within, (max_cast, off)
