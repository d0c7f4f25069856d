"""The sender's keyframe policy: first, on request, when a face shows, periodically — but not mid-blink."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from facewire.sender.keyframes import KeyframePolicy
from facewire.shared.process.handoff import LatestSlot
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis, HeadPose, Landmarks
from tests.render_fixtures import astronaut_landmarks, close_eyes, open_mouth

FRAME = np.zeros((8, 8, 3), np.uint8)


def _analysis(t_s: float, landmarks: Landmarks | None) -> FrameAnalysis:
    face = None if landmarks is None else FaceObservation(landmarks, HeadPose(0.0, 0.0, 0.0, 0.0, 0.0, 1.0), 1.0)
    return FrameAnalysis(CapturedFrame(0, int(t_s * 1e6), FRAME), face, None)


def test_a_periodic_keyframe_waits_for_open_eyes_but_not_for_ever() -> None:
    open_eyes, shut = astronaut_landmarks(), close_eyes(astronaut_landmarks())
    policy = KeyframePolicy(interval_s=10.0, max_wait_s=1.0)
    assert policy.decide(_analysis(0.0, open_eyes))
    assert not policy.decide(_analysis(5.0, open_eyes))
    assert not policy.decide(_analysis(10.2, shut))  # due, but the eyes are shut: wait
    assert policy.decide(_analysis(10.3, open_eyes))
    assert not policy.decide(_analysis(20.4, shut))
    assert policy.decide(_analysis(21.4, shut))  # waited long enough


def test_requested_and_first_faces_do_not_wait() -> None:
    shut = close_eyes(astronaut_landmarks())
    policy = KeyframePolicy()
    assert policy.decide(_analysis(0.0, None))
    assert policy.decide(_analysis(0.5, shut))  # a face appeared
    assert not policy.decide(_analysis(1.0, shut))
    policy.request()
    assert policy.decide(_analysis(1.0, shut))
    assert not policy.decide(_analysis(1.1, shut))


def test_the_receivers_requests_are_served_at_most_once_every_two_seconds() -> None:
    lm = astronaut_landmarks()
    policy = KeyframePolicy(interval_s=1e9)
    assert policy.decide(_analysis(0.0, lm))
    made = []
    for step in range(1, 200):  # a receiver asking at every frame for ~6.6 s
        policy.request_from_peer()
        if policy.decide(_analysis(step / 30, lm)):
            made.append(step / 30)
    assert len(made) == 4 and all(b - a > 2.0 - 1e-6 for a, b in zip(made, made[1:], strict=False))
    assert not policy.decide(_analysis(6.7, lm))
    policy.request()  # a new session is not rate-limited
    assert policy.decide(_analysis(6.71, lm))


def test_requests_from_another_thread_are_never_lost() -> None:
    """Every request is answered by a keyframe decided after it, however the two threads interleave."""
    policy = KeyframePolicy(interval_s=1e9)
    lm = astronaut_landmarks()
    assert policy.decide(_analysis(0.0, lm))
    answered = threading.Event()
    for round_ in range(200):
        requester = threading.Thread(target=policy.request)
        requester.start()
        requester.join()
        answered.clear()
        for step in range(3):
            if policy.decide(_analysis(round_ + 0.1 * step, lm)):
                answered.set()
        assert answered.is_set()


async def _slot_order(items: list[tuple[int, bool]]) -> list[int]:
    slot: LatestSlot[tuple[int, bool]] = LatestSlot(asyncio.get_running_loop(), keep=lambda item: item[1])
    for item in items:
        slot.put(item)
    slot.close()
    out = []
    while (item := await slot.get()) is not None:
        out.append(item[0])
    return out


def test_the_hand_off_never_skips_a_keyframe() -> None:
    # 1 is a keyframe: it survives the newer 2 and 3; 3 waits behind it; a newer keyframe 5 supersedes all.
    assert asyncio.run(_slot_order([(0, False), (1, True), (2, False), (3, False)])) == [1, 3]
    assert asyncio.run(_slot_order([(1, True), (2, False), (5, True), (6, False)])) == [5, 6]
    assert asyncio.run(_slot_order([(0, False), (1, False)])) == [1]


def test_each_frame_is_drawn_from_the_keyframe_whose_face_is_nearest_with_a_margin_before_switching() -> None:
    from facewire.sender.coding import ReferenceChooser

    closed, wide = astronaut_landmarks(), open_mouth(astronaut_landmarks(), 30.0)  # pixels of jaw drop
    chooser = ReferenceChooser()
    chooser.built(1, closed)
    chooser.built(2, wide)
    kf, cost = chooser.choose(open_mouth(astronaut_landmarks(), 27.0))
    assert kf == 2 and cost > 0
    kf, cost = chooser.choose(closed)
    assert kf == 1 and cost == 0.0
    # half way: neither is better by the margin, so the choice stays where it was
    assert chooser.choose(open_mouth(astronaut_landmarks(), 15.0))[0] == 1
    chooser.clear()
    assert chooser.choose(closed) == (None, 0.0)


def test_a_drifted_face_brings_a_keyframe_but_not_more_often_than_the_gap() -> None:
    face = astronaut_landmarks()
    policy = KeyframePolicy(interval_s=60.0, drift_cost=0.05, drift_gap_s=3.0)
    assert policy.decide(_analysis(0.0, face))
    assert not policy.decide(_analysis(1.0, face), drift=0.2)  # too soon after the last
    assert not policy.decide(_analysis(3.5, face), drift=0.04)  # close enough to what the receiver holds
    assert policy.decide(_analysis(3.6, face), drift=0.2)
    assert not policy.decide(_analysis(4.0, face), drift=0.2)


def test_a_thin_budget_spaces_the_drifted_keyframes_out() -> None:
    from facewire.sender.coding import DRIFT_KEYFRAME_SHARE, Budget

    budget = Budget.at_most(16_000)
    assert budget.drift_gap_s(3_000) == 3_000 * 8 / (DRIFT_KEYFRAME_SHARE * 16_000)  # 6 s
    face = astronaut_landmarks()
    policy = KeyframePolicy(interval_s=60.0, drift_cost=0.05, drift_gap_s=3.0)
    assert policy.decide(_analysis(0.0, face))
    assert not policy.decide(_analysis(4.0, face), drift=0.2, drift_gap_s=budget.drift_gap_s(3_000))
    assert policy.decide(_analysis(6.1, face), drift=0.2, drift_gap_s=budget.drift_gap_s(3_000))


def test_without_own_keyframes_only_requested_ones_come() -> None:
    """Near the end of a session of known length (FrameCoder.own_keyframes), periodic and drifted keyframes wait
    for ever; a first one and a requested one still come."""
    eyes = astronaut_landmarks()
    policy = KeyframePolicy(interval_s=10.0, drift_gap_s=3.0)
    assert policy.decide(_analysis(0.0, eyes), own=False)  # the first
    assert not policy.decide(_analysis(12.0, eyes), drift=1.0, own=False)  # due and drifted, but not its own now
    assert policy.decide(_analysis(12.1, eyes), drift=1.0)
    policy.request()
    assert policy.decide(_analysis(12.2, eyes), own=False)
