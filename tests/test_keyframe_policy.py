"""The sender's keyframe policy: first, on request, when a face shows, periodically — but not mid-blink."""

from __future__ import annotations

import numpy as np

from facewire.sender.stream import KeyframePolicy
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis, HeadPose, Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes

FRAME = np.zeros((8, 8, 3), np.uint8)


def _analysis(t_s: float, landmarks: Landmarks | None) -> FrameAnalysis:
    face = None if landmarks is None else FaceObservation(landmarks, HeadPose(0.0, 0.0, 0.0, 0.0, 0.0, 1.0), 1.0)
    return FrameAnalysis(CapturedFrame(0, int(t_s * 1e6), FRAME), face, None)


def test_a_periodic_keyframe_waits_for_open_eyes_but_not_for_ever() -> None:
    open_eyes, shut = astronaut_landmarks(), close_eyes(astronaut_landmarks())
    policy = KeyframePolicy(interval_s=10.0, max_wait_s=1.0)
    assert policy.due(_analysis(0.0, open_eyes))
    policy.sent(_analysis(0.0, open_eyes))
    assert not policy.due(_analysis(5.0, open_eyes))
    assert not policy.due(_analysis(10.2, shut))  # due, but the eyes are shut: wait
    assert policy.due(_analysis(10.3, open_eyes))
    assert policy.due(_analysis(11.1, shut))  # waited long enough


def test_requested_and_first_faces_do_not_wait() -> None:
    shut = close_eyes(astronaut_landmarks())
    policy = KeyframePolicy()
    assert policy.due(_analysis(0.0, None))
    policy.sent(_analysis(0.0, None))
    assert policy.due(_analysis(0.5, shut))  # a face appeared
    policy.sent(_analysis(0.5, shut))
    assert not policy.due(_analysis(1.0, shut))
    policy.request()
    assert policy.due(_analysis(1.0, shut))
