"""A late frame's stand-in: the last motion carried on, damped and bounded, then a repeat, then the fade."""

from __future__ import annotations

import numpy as np
import pytest

from facewire.receiver.extrapolate import extrapolate, reach_s
from facewire.receiver.player import MAX_AHEAD_S, Player
from facewire.receiver.session import RenderJob
from facewire.receiver.sinks import NullSink
from facewire.receiver.stats import StatsMeter
from facewire.shared.types import FrameState, KeyframeState, RenderedPerson
from tests.wire_fixtures import KeyframeRenderer

INTERVAL_US = 33_333


def _frame(seq: int, x: float, face: str = "tracked") -> FrameState:
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:, 0] = x
    return FrameState(seq=seq, ts_us=seq * INTERVAL_US, face=face, landmarks=landmarks, alpha=None)  # type: ignore[arg-type]


def test_the_face_carries_on_its_way_eases_to_a_stop_and_never_past_the_horizon() -> None:
    previous, last = _frame(1, 100.0), _frame(2, 103.0)  # 3 px a frame
    horizon = 2 * INTERVAL_US / 1e6
    xs = [float(extrapolate(previous, last, step * horizon / 8, horizon).landmarks[0, 0])  # type: ignore[index]
          for step in range(1, 13)]
    assert all(b >= a for a, b in zip(xs, xs[1:], strict=False))  # forward only
    assert 103.0 < xs[0] < 103.0 + 3.0 / 8 * 2 + 1e-3  # at first about as fast as it moved
    assert xs[7] == xs[-1]  # nothing more past the horizon
    assert xs[-1] < 103.0 + 3.0  # less than a frame's motion over two intervals: damped
    moved = extrapolate(previous, last, horizon, horizon)
    assert moved.ts_us == last.ts_us + round(horizon * 1e6) and moved.seq == last.seq


@pytest.mark.parametrize("case", ["lost", "held", "not later", "no time"])
def test_without_a_motion_to_go_by_the_last_frame_stands(case: str) -> None:
    previous, last = _frame(1, 100.0), _frame(2, 103.0, face={"lost": "lost", "held": "held"}.get(case, "tracked"))
    if case == "not later":
        previous, last = last, previous
    ahead = 0.0 if case == "no time" else 0.03
    assert extrapolate(previous, last, ahead, 0.066) is last


def test_reach_grows_then_levels_below_half_the_horizon() -> None:
    assert reach_s(0.0, 0.066) == 0.0 and reach_s(-1.0, 0.066) == 0.0
    values = [reach_s(t, 0.066) for t in np.linspace(0.001, 0.2, 50)]
    assert values == sorted(values) and max(values) < 0.033


class _Noting(KeyframeRenderer):
    def __init__(self) -> None:
        super().__init__()
        self.drawn: list[float] = []

    def render(self, frame: FrameState) -> RenderedPerson:
        assert frame.landmarks is not None
        self.drawn.append(float(frame.landmarks[0, 0]))
        return super().render(frame)


def test_a_late_frame_is_extrapolated_then_repeated_and_faded() -> None:
    renderer = _Noting()
    player = Player(renderer, NullSink(), StatsMeter())
    keyframe = KeyframeState(kf=1, image=np.zeros((32, 32, 3), np.uint8), alpha=None, landmarks=None)
    for seq, x in ((1, 100.0), (2, 103.0)):
        player.show(RenderJob(None, keyframe, _frame(seq, x)), INTERVAL_US / 1e6)
    assert renderer.drawn == [100.0, 103.0]
    level = player.fader.level
    player.repeat(0.045)  # late by a frame and a half: drawn a little further on, not faded
    assert len(renderer.drawn) == 3 and 103.0 < renderer.drawn[-1] < 106.0 and player.fader.level == level
    player.repeat(MAX_AHEAD_S)  # past the horizon: the last picture again, fading
    assert len(renderer.drawn) == 3 and player.fader.level < level
    player.show(RenderJob(None, keyframe, _frame(3, 106.0)), INTERVAL_US / 1e6)
    player.repeat(0.02)  # a new frame starts the count again
    assert len(renderer.drawn) == 5
