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
