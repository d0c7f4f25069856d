"""A thin ceiling: frames go evenly (every `step`-th, FramePacer) rather than as the bucket happens to allow,
the keyframe's alpha is smaller, and playback draws the skipped frames between their neighbours."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from facewire.receiver.player import Player
from facewire.receiver.runtime import between, play_stream
from facewire.receiver.sinks import FramesSink
from facewire.receiver.stats import StatsMeter
from facewire.sender.capture import CaptureOptions, FrameSource
from facewire.sender.coding import (
    BODY_CODE,
    DEFAULT_CODES,
    FRAMES_SHARE,
    MAX_FRAME_STEP,
    MIN_BODY_FEATURES_BPS,
    THIN_ALPHA_FACTOR,
    THIN_ALPHA_QUALITY,
    Budget,
    FrameCoder,
    Outgoing,
    codes_for,
)
from facewire.sender.pacing import PICK_REACH, PICK_STEP, STILL_SHARE, FramePacer, FramePicker, StillFrames, still_face
from facewire.sender.runner import _choose, record_stream
from facewire.sender.sending import Ceiling
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.expression.basis import shipped_basis
from facewire.shared.codec.seam import CodedFrame, Prepared
from facewire.shared.face import topology as topo
from facewire.shared.face.topology import RIGHT_LID_PAIRS
from facewire.shared.types import CapturedFrame, FrameAnalysis, FrameState
from facewire.shared.wire import messages as m
from facewire.shared.wire.streamfile import StreamReader
from tests.wire_fixtures import KeyframeRenderer, SyntheticAnalyzer, write_frames


def paced(pacer: FramePacer, frames: int, nbytes: int, start: int = 0) -> list[int]:
    sent = []
    for index in range(start, start + frames):
        if pacer.due(index):
            pacer.sent(index, nbytes)
            sent.append(index)
    return sent


def test_every_frame_goes_when_the_ceiling_carries_them() -> None:
    pacer = FramePacer(ceiling_bps=16_000, fps=30.0)
    assert paced(pacer, 60, 30) == list(range(60))  # 7.2 kbps of frames: under the share of 16


def test_frames_go_evenly_at_the_share_of_the_ceiling() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    sent = paced(pacer, 300, 40)  # 9.6 kbps at every frame
    gaps = np.diff(sent[5:])
    assert set(gaps.tolist()) == {2, 3}, gaps  # a step of 2.46 on average: 2 and 3 interleaved
    assert abs(np.diff(gaps).sum()) <= 1 and np.abs(np.diff(gaps)).max() <= 1
    kbps = 40 * 8 * (len(sent[5:]) - 1) / ((sent[-1] - sent[5]) / 30.0) / 1000
    assert kbps == pytest.approx(FRAMES_SHARE * 6, rel=0.03)  # the share used, not the next whole step's 3.2 kbps


def test_the_step_comes_back_down_when_frames_get_cheaper_and_never_exceeds_its_limit() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    paced(pacer, 60, 40)
    assert pacer.step == pytest.approx(40 * 8 * 30 / (FRAMES_SHARE * 6_000))
    paced(pacer, 340, 10, start=60)
    assert pacer.step == 1
    paced(pacer, 100, 10_000, start=400)
    assert pacer.step == MAX_FRAME_STEP


class _EndlessSource(FrameSource):
    """Frames from a source that does not say how many it holds (a pipe): the start is repaid over 6 s."""

    @property
    def length(self) -> int | None:
        return None


def test_a_thin_recording_sends_frames_evenly_and_plays_them_back_one_per_input_frame(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 120, size=(160, 120))
    source = _EndlessSource(str(frames), CaptureOptions(fps=30.0, media_clock=True))
    path = tmp_path / "thin.fws"
    record_stream(source, SyntheticAnalyzer(), path, None, coder=FrameCoder(codes=("landmarks",), budget=Budget.at_most(24_000)))
    with StreamReader(path) as reader:
        times = [message.dt_ms for message in reader if isinstance(message, m.Frame)]
    # the raw landmark code's intra frame (~1.8 KB) sets the frames' cost far over 65% of 24 kbps at 30 fps: gaps of
    # a few frames that change by at most a frame from one to the next as the start is repaid and the cost comes
    # down, not bursts (the last input frame goes anyway, so that playback ends where the input does)
    steps = np.diff(times[len(times) // 2:-1])
    assert 0 < len(times) < 120 and np.abs(np.diff(steps)).max() <= 34 and steps.min() > 34, steps
    shown = play_stream(path, Player(KeyframeRenderer(), FramesSink(tmp_path / "out"), StatsMeter()))
    assert shown == 120 and len(list((tmp_path / "out").glob("*.png"))) == 120


def _face(eye_gap: float, mouth_gap: float) -> np.ndarray:
    """Landmarks whose eyes (width 20) and mouth (width 40) are open by these gaps; the rest of the mesh at 0."""
    points = np.zeros((478, 3), np.float32)
    for (outer, inner), pairs, x0 in ((topo.RIGHT_EYE_CORNERS, topo.RIGHT_LID_PAIRS, 100.0),
                                      (topo.LEFT_EYE_CORNERS, topo.LEFT_LID_PAIRS, 160.0)):
        points[outer, :2], points[inner, :2] = (x0, 100.0), (x0 + 20.0, 100.0)
        for k, (upper, lower) in enumerate(pairs):
            points[upper, :2], points[lower, :2] = (x0 + 5.0 * (k + 1), 100.0 - eye_gap / 2), (x0 + 5.0 * (k + 1), 100.0 + eye_gap / 2)
    points[topo.MOUTH_OUTER_CORNERS[0], :2], points[topo.MOUTH_OUTER_CORNERS[1], :2] = (110.0, 180.0), (150.0, 180.0)
    points[topo.UPPER_LIP_INNER_MID, :2] = (130.0, 180.0 - mouth_gap / 2)
    points[topo.LOWER_LIP_INNER_MID, :2] = (130.0, 180.0 + mouth_gap / 2)
    return points


def _item(index: int, eye_gap: float, state: bool = False) -> Outgoing:
    analysis = FrameAnalysis(CapturedFrame(index, index * 33_333, np.zeros((2, 2, 3), np.uint8)), None, None)
    frame = CodedFrame(analysis, {"landmarks": Prepared(landmarks=_face(eye_gap, 4.0))})
    return Outgoing(frame, setups=(("expression", b"x"),) if state else ())


def _sent_frames(eye_gaps: list[float], pick: bool, state_at: int | None = None) -> list[int]:
    """The input frames that go (in the order they go) at a step of about 3, as record_stream chooses them."""
    pacer, picker, stream = FramePacer(ceiling_bps=6_000, fps=30.0), FramePicker(), SimpleNamespace(current=1)
    sent = []
    for index, gap in enumerate(eye_gaps):
        item = _item(index, gap, index == state_at)
        chosen = _choose(index, item, cast(FeatureStream, stream), pacer, picker if pick else None)
        if chosen is not None:
            sent.append(chosen[0])
            pacer.sent(chosen[0], 49)  # 49 B at 30 fps: a step of 3 under 65% of 6 kbps
            picker.went(*chosen)
            if pick and chosen[0] != index and pacer.due(index) and not picker.choosing:
                picker.due(index, item, pacer.step)
    if (last := picker.flush()) is not None:
        sent.append(last[0])
    return sent


def test_a_recording_sends_the_blink_beside_the_pacers_position() -> None:
    plain = _sent_frames([6.0] * 60, pick=False)
    assert set(np.diff(plain[3:]).tolist()) == {3}
    for blink in (plain[8] - 1, plain[8] + 1):  # a one-frame blink next to where the pacer would send
        gaps = [0.5 if i == blink else 6.0 for i in range(60)]
        assert blink not in _sent_frames(gaps, pick=False)
        picked = _sent_frames(gaps, pick=True)
        assert blink in picked, (blink, picked)
        assert abs(len(picked) - len(plain)) <= 1 and np.diff(picked).min() >= 1  # as many frames, in order
        assert np.diff(picked).max() <= 3 + 2 * PICK_REACH


def test_at_a_step_under_two_the_picker_still_spends_what_the_pacer_allows() -> None:
    """Windows of a frame either side, reopened at every choice, held the frames to every 2nd whatever the step."""
    gaps = [6.0 + (0.5 if i % 7 == 0 else 0.0) for i in range(300)]
    for nbytes in (43, 46):  # steps of 1.72 and 1.84 at 6 kbps, once nothing else is repaid
        pacer, picker, stream = FramePacer(ceiling_bps=6_000, fps=30.0), FramePicker(), SimpleNamespace(current=1)
        pacer.keyframes(coming=False)
        sent = []
        for index, gap in enumerate(gaps):
            item = _item(index, gap)
            chosen = _choose(index, item, cast(FeatureStream, stream), pacer, picker)
            if chosen is not None:
                sent.append(chosen[0])
                pacer.sent(chosen[0], nbytes)
                picker.went(*chosen)
                if chosen[0] != index and pacer.due(index) and not picker.choosing and pacer.step >= PICK_STEP:
                    picker.due(index, item, pacer.step)
        step = nbytes * 8 * 30 / 6_000
        assert PICK_STEP <= step < 2 and pacer.step == pytest.approx(step)
        assert len(sent) >= 0.95 * 300 / step, (step, len(sent))
        assert np.diff(sent).min() >= 1  # in order, none twice


def test_a_frame_that_carries_state_goes_when_it_comes_while_the_picker_chooses() -> None:
    plain = _sent_frames([6.0] * 40, pick=True)
    state_at = plain[5] + 1  # the frame after a position: the picker is choosing there
    sent = _sent_frames([6.0] * 40, pick=True, state_at=state_at)
    assert state_at in sent


def test_between_interpolates_landmarks_and_body() -> None:
    a = FrameState(seq=1, ts_us=0, face="tracked", landmarks=np.zeros((478, 3), np.float32), alpha=None,
                   body=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    b = FrameState(seq=2, ts_us=100_000, face="tracked", landmarks=np.full((478, 3), 3.0, np.float32), alpha=None,
                   body=np.array([[1.0, 0.0, 6.0], [0.0, 1.0, 0.0]]))
    mid = between(a, b, 1 / 3)
    assert mid.ts_us == 33_333 and mid.landmarks is not None and mid.landmarks.dtype == np.float32
    assert np.allclose(mid.landmarks, 1.0) and mid.body is not None and np.isclose(mid.body[0, 2], 2.0)
    assert between(a, FrameState(seq=2, ts_us=1, face="lost", landmarks=None, alpha=None), 0.5).landmarks is a.landmarks


def test_a_thin_budget_spaces_new_neutrals_and_frames_still_decode() -> None:
    from tests.test_codec_expression import Link, synthetic_clip

    basis = shipped_basis()
    clip = synthetic_clip(basis, 300, seed=2)  # 10 s at 30 fps
    free, thin = Link(basis), Link(basis)
    thin.preparer.min_setup_gap_s = 4.0
    times: list[int] = []
    for i, face in enumerate(clip):
        free.send(*free.prepare(i, face))
        before = thin.setups
        frame, prepared = thin.prepare(i, face)
        if thin.setups > before:
            times.append(frame.frame.ts_us)
        _, decoded = thin.send(frame, prepared)
        assert np.abs(decoded[:, :2] - prepared.landmarks[:, :2]).max() < 1e-3  # the receiver draws what was prepared
    assert free.setups >= 3 and 1 < thin.setups < free.setups
    assert all(b - a >= 4e6 for a, b in itertools.pairwise(times))


def test_the_setup_gap_follows_the_budget() -> None:
    assert Budget.at_most(6_000).setup_gap_s(600) > 5 > Budget.at_most(16_000).setup_gap_s(600) > 2
    assert Budget.at_most(256_000).setup_gap_s(600) < 1  # the estimator's own schedule is the limit


def _frames_through(gate: Ceiling, start_s: float, seconds: float, frame_bytes: int, step: int = 3,
                    fps: float = 30.0) -> tuple[list[int], int]:
    """The input frames (every `step`-th) the gate lets go from `start_s` on, and their bytes."""
    sent, total = [], 0
    for index in range(round(start_s * fps), round((start_s + seconds) * fps), step):
        now = index / fps
        if gate.may_send(frame_bytes, now, essential=True):
            gate.on_send(index, frame_bytes, now)
            sent.append(index)
            total += frame_bytes
    return sent, total


def test_a_later_setup_is_repaid_on_a_schedule_instead_of_freezing_the_frames() -> None:
    gate = Ceiling(6_000)
    gate.on_send_uncontrolled(2_500, 0.0)  # the session's start
    _frames_through(gate, 0.0, 8.0, 40)  # its debt is repaid by 6 s
    assert gate.repay_bps(8.0) == 0.0
    gate.on_send_uncontrolled(600, 8.0)  # a new neutral: 0.8 s of the ceiling
    assert gate.repay_bps(8.0) > 0.0
    sent, total = _frames_through(gate, 8.0, 10.0, 40)
    assert np.diff(sent).max() == 3, sent  # not one frame held for it
    # and the ceiling holds over the ceiling's 10-s window: the setup, the frames, at most the bucket's savings
    assert (600 + total) * 8 / 10.0 <= 6_000 * 1.1
    assert gate.repay_bps(18.5) == 0.0


def test_a_setup_the_bucket_holds_is_no_debt() -> None:
    gate = Ceiling(6_000)
    gate.on_send_uncontrolled(2_500, 0.0)
    _frames_through(gate, 0.0, 8.0, 10)  # cheap frames: the bucket is full again
    gate.on_send_uncontrolled(200, 8.0)
    assert gate.repay_bps(8.0) == 0.0


def test_the_frames_take_the_whole_ceiling_only_when_no_keyframe_of_the_senders_own_may_come() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    paced(pacer, 60, 40)
    assert pacer.step == pytest.approx(40 * 8 * 30 / (FRAMES_SHARE * 6_000))
    pacer.keyframes(coming=False)
    sent = paced(pacer, 300, 40, start=60)
    assert pacer.step == pytest.approx(40 * 8 * 30 / 6_000)
    assert 6_000 * 0.95 <= 40 * 8 * len(sent) / 10.0 <= 6_000 * 1.02
    pacer.keyframes(coming=True)
    paced(pacer, 30, 40, start=360)
    assert pacer.step == pytest.approx(40 * 8 * 30 / (FRAMES_SHARE * 6_000))


def test_the_pacer_leaves_the_gate_its_repayment() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    paced(pacer, 60, 40)
    before = pacer.step
    pacer.repay_bps = 3_000.0  # half the ceiling is repaying a debt: the frames get the other half
    sent = paced(pacer, 90, 40, start=60)
    assert pacer.step == pytest.approx(40 * 8 * 30 / 3_000) and pacer.step > before
    assert 40 * 8 * len(sent) / 3.0 <= 3_000 * 1.05
    pacer.repay_bps = 7_000.0  # a debt beyond the ceiling: the frames go at the slowest step, not at every frame
    paced(pacer, 30, 40, start=150)
    assert pacer.step == MAX_FRAME_STEP


def test_below_a_thin_ceiling_the_body_code_gives_its_bytes_to_frame_rate() -> None:
    without_body = tuple(code for code in DEFAULT_CODES if code != BODY_CODE)
    assert codes_for("features", MIN_BODY_FEATURES_BPS, True) == DEFAULT_CODES
    assert codes_for("features", MIN_BODY_FEATURES_BPS - 1, True) == without_body
    assert codes_for(None, 6_000, False) == without_body  # an avatar too: its frames are as thin


def test_a_thin_keyframe_alpha_is_coarser_and_smaller() -> None:
    from facewire.shared.codec.keyframe import ALPHA_QUALITY, decode_keyframe_alpha, encode_keyframe_alpha

    yy, xx = np.mgrid[0:256, 0:256]
    alpha = np.clip((90.0 - np.hypot(xx - 128.0, (yy - 150.0) * 0.8)) / 6.0, 0.0, 1.0).astype(np.float32)
    box = (0, 0, 256, 256)
    usual = encode_keyframe_alpha(alpha, box, THIN_ALPHA_FACTOR, ALPHA_QUALITY)
    thin = encode_keyframe_alpha(alpha, box, THIN_ALPHA_FACTOR, THIN_ALPHA_QUALITY)
    assert len(thin) < len(usual)
    assert np.abs(decode_keyframe_alpha(thin, box, (256, 256)) - alpha).mean() < 0.03


def test_a_still_face_is_left_out_every_other_frame_at_most_and_a_moving_one_never() -> None:
    rng = np.random.default_rng(3)
    face = np.zeros((478, 3), np.float32)
    face[:, :2] = rng.uniform(100, 350, (478, 2))  # a 250-px face: still below ~1 px of median move
    for upper, lower in RIGHT_LID_PAIRS:
        face[lower, :2] = face[upper, :2] + (0.0, 10.0)  # an open eye: lower lid points under the upper ones
    nudged = face.copy()
    nudged[:, 0] += 0.5 * STILL_SHARE * 250
    moved = face.copy()
    moved[:, 0] += 2.0 * STILL_SHARE * 250
    assert still_face(nudged, face) and not still_face(moved, face)
    blink = face.copy()  # a few landmarks only: the median does not move, the lids' opening does
    blink[[upper for upper, _ in RIGHT_LID_PAIRS], 1] += 3.0
    assert not still_face(blink, face)

    frames = StillFrames()
    went = []
    for index in range(8):
        landmarks = face if index < 5 else face + (index - 4) * 3.0  # still for 5 frames, then moving 3 px a frame
        if not frames.skips(index, landmarks):
            frames.sent(index, landmarks)
            went.append(index)
    assert went == [0, 2, 4, 5, 6, 7]  # a still face every 2nd frame (never two skipped in a row), a moving one all
    assert not StillFrames().skips(1, None)  # no face to judge: it goes
