"""A recording's first keyframe waits (briefly) for a closed mouth, and a keyframe carries the landmarks its picture shows.

Every frame's lips are drawn from the keyframe's: a first frame caught with the mouth wide open put its stretched,
shadowed lips and its squeezed teeth into the whole session (w0 at 6 kbps: mouth correlation 0.894, 0.910 with a
closed-mouth keyframe). The frames before such a keyframe are drawn from it; the keyframe's own landmarks are the
tracker's before smoothing, which lag a moving head (3-5 px there, and every frame drawn that far off).
"""

from __future__ import annotations

import numpy as np

from facewire.sender.coding import FrameCoder
from facewire.sender.keyframes import KeyframePolicy
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.expression.field import ExpressionPreparer
from facewire.shared.codec.fields import FIELD_CODECS
from facewire.shared.codec.frames import FrameEncoder
from facewire.shared.face.measures import mouth_ratio
from facewire.shared.face.pose import head_pose
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis, Landmarks
from facewire.shared.wire import messages as m
from tests.render_fixtures import astronaut, astronaut_landmarks, open_mouth

FRAME_US = 40_000


def _ratio(landmarks: Landmarks) -> float:
    return mouth_ratio(landmarks.astype(np.float64))


def _faces() -> tuple[Landmarks, Landmarks, Landmarks]:
    """The astronaut's landmarks with the mouth closed, a little open and wide open (the premises checked)."""
    closed = astronaut_landmarks().astype(np.float32)
    closed = open_mouth(closed, -float(closed[14, 1] - closed[13, 1]))  # her lips meet
    little, wide = open_mouth(closed, 4.0), open_mouth(closed, 20.0)
    assert _ratio(closed) < 0.02 and 0.08 < _ratio(little) < 0.25 and _ratio(wide) > 0.4
    return closed, little, wide


def _analysis(index: int, landmarks: Landmarks, raw: Landmarks | None = None, image: np.ndarray | None = None) -> FrameAnalysis:
    picture = image if image is not None else np.zeros((8, 8, 3), np.uint8)
    face = FaceObservation(landmarks, head_pose(landmarks), 1.0, raw=raw)
    return FrameAnalysis(CapturedFrame(index, 1_000_000 + index * FRAME_US, picture), face, None)


def test_a_first_keyframe_with_the_mouth_wide_open_waits_for_it_to_close_and_stands_for_the_first_frame() -> None:
    closed, little, wide = _faces()
    policy = KeyframePolicy(interval_s=60.0, settle_s=0.5)
    assert not policy.decide(_analysis(0, wide))
    assert not policy.decide(_analysis(1, little))  # closing, not closed
    assert policy.decide(_analysis(2, closed))
    assert policy.keyframe_ts(1_000_000 + 2 * FRAME_US) == 1_000_000  # its frames' times count from the first's
    assert not policy.decide(_analysis(3, wide))  # only the first waits
    policy.request()
    assert policy.decide(_analysis(4, wide))
    assert policy.keyframe_ts(1_000_000 + 4 * FRAME_US) == 1_000_000 + 4 * FRAME_US


def test_it_waits_no_longer_than_settle_s_and_not_at_all_for_a_mouth_only_a_little_open() -> None:
    closed, little, wide = _faces()
    policy = KeyframePolicy(settle_s=0.5)
    waited = [policy.decide(_analysis(i, wide)) for i in range(14)]
    assert waited.index(True) == 13 and sum(waited) == 1  # the first frame 0.5 s or more after the first (0.52 s)
    assert KeyframePolicy(settle_s=0.5).decide(_analysis(0, little))  # speaking, not gaping: no wait
    assert KeyframePolicy().decide(_analysis(0, wide))  # live (no settle_s): the first frame, as ever


def test_the_frames_that_waited_are_drawn_from_the_keyframe_and_paid_as_the_sessions_start() -> None:
    closed, _, wide = _faces()
    image = astronaut()
    coder = FrameCoder(codes=("landmarks",), policy=KeyframePolicy(settle_s=0.5))
    stream, gate = FeatureStream(FrameEncoder(["landmarks"])), Ceiling(6_000)
    sent: list[m.Message] = []
    faces = [wide, wide, wide, closed, closed, closed]
    for index, face in enumerate(faces):
        item = coder.code(_Analyzer(), _analysis(index, face, image=image))
        assert (item.keyframe is not None) == (index == 3)
        sent += plan(stream, item, gate, index * FRAME_US / 1e6)
    kinds = [type(message).__name__ for message in sent]
    assert kinds.index("Keyframe") < kinds.index("Frame")
    frames = [message for message in sent if isinstance(message, m.Frame)]
    # the four frames up to the keyframe's own go with it (the gate's start holds them), each at its own time
    assert [frame.dt_ms for frame in frames[:4]] == [0, 40, 80, 120]
    keyframe = next(message for message in sent if isinstance(message, m.Keyframe))
    assert keyframe.landmarks is not None
    drawn = FIELD_CODECS["landmarks"].new_decoder().decode_keyframe(keyframe.landmarks)
    assert np.abs(drawn[:, :2] - closed[:, :2]).max() < 0.5  # the closed mouth's face, not the first frame's


def test_frames_that_go_with_the_first_keyframe_after_the_first_frame_are_repaid_with_the_start() -> None:
    """At 6 kbps eight such frames (~250 B) paid at once held every frame after them for ~0.5 s."""
    gate = Ceiling(6_000)
    gate.on_send_uncontrolled(1_200, 0.32)  # the setups and the keyframe
    for seq in range(1, 10):  # the frames from the first (0.0 s) to the keyframe's own (0.32 s), all sent now
        gate.on_send(seq, 30, 0.32)
    assert gate.may_send(30, 0.40, essential=True)  # two frames on, as after a first keyframe that did not wait


def test_a_keyframe_carries_the_unsmoothed_landmarks_its_picture_shows() -> None:
    closed, _, _ = _faces()
    lagging = closed.copy()
    lagging[:, :2] += np.float32([4.0, -3.0])  # the smoothed track, half a frame behind a moving head
    coder = FrameCoder(codes=("landmarks",))
    item = coder.code(_Analyzer(), _analysis(0, lagging, raw=closed, image=astronaut()))
    assert item.keyframe is not None and item.keyframe.face_codes
    drawn = FIELD_CODECS["landmarks"].new_decoder().decode_keyframe(item.keyframe.face_codes["landmarks"])
    assert np.abs(drawn[:, :2] - closed[:, :2]).max() < 0.5
    frame = item.frame.prepared["landmarks"].landmarks  # the frame itself is the smoothed track's
    assert frame is not None and np.abs(frame[:, :2] - lagging[:, :2]).max() < 0.5


def test_the_expression_code_recodes_a_frame_for_other_landmarks_of_it() -> None:
    closed, _, _ = _faces()
    preparer = ExpressionPreparer()
    prepared = None
    for index in range(40):  # long enough for a neutral
        prepared = preparer.prepare(_analysis(index, closed))
    assert prepared is not None and prepared.landmarks is not None
    moved = closed.copy()
    moved[:, :2] += np.float32([5.0, -4.0])
    recoded = preparer.recoded(prepared, moved)
    assert recoded.landmarks is not None
    shift = (recoded.landmarks[:, :2] - prepared.landmarks[:, :2]).mean(axis=0)
    assert np.allclose(shift, [5.0, -4.0], atol=0.5)
    assert np.array_equal(preparer.recoded(prepared, closed).landmarks, prepared.landmarks)


class _Analyzer:
    def foreground(self) -> None:
        return None
