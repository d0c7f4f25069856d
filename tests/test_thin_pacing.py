"""A thin ceiling: frames go evenly (every `step`-th, FramePacer) rather than as the bucket happens to allow,
the keyframe's alpha is smaller, and playback draws the skipped frames between their neighbours."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

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
    STILL_SHARE,
    THIN_ALPHA_FACTOR,
    THIN_ALPHA_QUALITY,
    Budget,
    FrameCoder,
    FramePacer,
    StillFrames,
    codes_for,
    still_face,
)
from facewire.sender.runner import record_stream
from facewire.sender.sending import Ceiling
from facewire.shared.codec.expression.basis import shipped_basis
from facewire.shared.face.topology import RIGHT_LID_PAIRS
from facewire.shared.types import FrameState
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
    gaps = set(np.diff(sent[5:]).tolist())
    assert gaps == {3}, gaps  # 3.2 kbps, the first step under 65% of 6 kbps
    assert FRAMES_SHARE * 6_000 >= 40 * 8 * 30 / 3


def test_the_step_comes_back_down_when_frames_get_cheaper_and_never_exceeds_its_limit() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    paced(pacer, 60, 40)
    assert pacer.step == 3
    paced(pacer, 340, 10, start=60)
    assert pacer.step == 1
    paced(pacer, 100, 10_000, start=400)
    assert pacer.step == MAX_FRAME_STEP


def test_a_thin_recording_sends_frames_evenly_and_plays_them_back_one_per_input_frame(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "in", 120, size=(160, 120))
    source = FrameSource(str(frames), CaptureOptions(fps=30.0, media_clock=True))
    path = tmp_path / "thin.fws"
    record_stream(source, SyntheticAnalyzer(), path, None, coder=FrameCoder(codes=("landmarks",), budget=Budget.at_most(24_000)))
    with StreamReader(path) as reader:
        times = [message.dt_ms for message in reader if isinstance(message, m.Frame)]
    # the raw landmark code (~300 B) is far over 65% of 24 kbps at 30 fps: a steady step, not bursts (the last
    # input frame goes anyway, so that playback ends where the input does)
    steps = np.diff(times[len(times) // 2:-1])
    assert 0 < len(times) < 120 and np.ptp(steps) <= 1 and steps[0] > 34, steps
    shown = play_stream(path, Player(KeyframeRenderer(), FramesSink(tmp_path / "out"), StatsMeter()))
    assert shown == 120 and len(list((tmp_path / "out").glob("*.png"))) == 120


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


def test_the_pacer_leaves_the_gate_its_repayment() -> None:
    pacer = FramePacer(ceiling_bps=6_000, fps=30.0)
    paced(pacer, 60, 40)
    assert pacer.step == 3
    pacer.repay_bps = 3_000.0  # half the ceiling is repaying a debt: 3 frames a second less
    paced(pacer, 30, 40, start=60)
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
