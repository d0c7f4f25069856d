"""A late frame's stand-in: the face carried a little further along the way it was moving.

The receiver renders on its own clock. When the next frame is late, drawing the last one again freezes
the face mid-motion and then jumps; carrying the last motion on for a frame interval or two hides a
short delay. The carry is damped (the velocity decays with a time constant of half the horizon), so the
face eases to a stop instead of flying on, and it never goes beyond `max_ahead_s`: past that the
receiver repeats the picture, and a long gap fades (receiver/player.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from facewire.shared.types import FrameState

MAX_AHEAD_FRAMES = 2.0  # frame intervals of the stream a late frame may be extrapolated over


def reach_s(ahead_s: float, max_ahead_s: float) -> float:
    """How far (in seconds of the last velocity) the damped motion has carried on after `ahead_s`: grows
    like `ahead_s` at first and levels off below half the horizon, never going back."""
    if ahead_s <= 0.0 or max_ahead_s <= 0.0:
        return 0.0
    tau = max_ahead_s / 2.0
    return tau * (1.0 - math.exp(-min(ahead_s, max_ahead_s) / tau))


def extrapolate(previous: FrameState, last: FrameState, ahead_s: float, max_ahead_s: float) -> FrameState:
    """`last` carried `ahead_s` past its own time by the landmarks' motion from `previous` to it, damped
    and at most `max_ahead_s` ahead. Everything else (matte, layer, body) stays as `last` has it. Without
    a motion to go by (no face, a held face, frames out of order) it is `last` itself."""
    dt_s = (last.ts_us - previous.ts_us) / 1e6
    if (dt_s <= 0.0 or ahead_s <= 0.0 or last.face != "tracked" or previous.face != "tracked"
            or previous.landmarks is None or last.landmarks is None or previous.landmarks.shape != last.landmarks.shape):
        return last
    velocity = (last.landmarks.astype(np.float32) - previous.landmarks.astype(np.float32)) / np.float32(dt_s)
    landmarks = last.landmarks + velocity * np.float32(reach_s(ahead_s, max_ahead_s))
    return dataclasses.replace(last, ts_us=last.ts_us + round(min(ahead_s, max_ahead_s) * 1e6),
                               landmarks=landmarks.astype(last.landmarks.dtype))
