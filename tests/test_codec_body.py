"""The body-motion code (facewire.shared.codec.body): the estimate on a moved picture, the payload's
round trips and refusals, its place on the codec seam (the keyframe a frame is drawn from, skipped
frames, negotiation), and the sender's replica drawing the receiver's alpha bit for bit."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facewire.sender.coding import DEFAULT_CODES, Budget, FrameCoder
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.body import (
    CAPABILITY,
    BodyDecoder,
    BodyEncoder,
    BodyPreparer,
    BodyValues,
    body_signal,
    decode_motion,
    encode_motion,
    estimate_body_motion,
    estimate_size,
    motion_matrix,
    quantise_motion,
    smooth_motion,
)
from facewire.shared.codec.fields import negotiate
from facewire.shared.codec.frames import FrameDecoder, FrameEncoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, Prepared
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.types import (
    Affine,
    CapturedFrame,
    CoarseMatte,
    FaceObservation,
    FrameAnalysis,
    FrameState,
    HeadPose,
    KeyframeState,
    Landmarks,
)
from facewire.shared.wire import messages as m
from tests.render_fixtures import astronaut, astronaut_landmarks

cv2.setNumThreads(1)
SIZE = (512, 512)


def _silhouette() -> np.ndarray:
    """A person's matte for the astronaut: her head and her shoulders down to the frame's bottom."""
    alpha = np.zeros((512, 512), np.float32)
    cv2.ellipse(alpha, (260, 190), (110, 140), 0, 0, 360, 1.0, -1)
    cv2.fillPoly(alpha, [np.array([[120, 300], [400, 300], [500, 511], [20, 511]], np.int32)], 1.0)
    return cv2.GaussianBlur(alpha, (5, 5), 0)


def _moved(shift: tuple[float, float], angle: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, Affine]:
    """The astronaut and her matte moved by a rotation about the frame's bottom middle and a shift, and
    the motion taking the moved frame back to the original (what the code carries)."""
    forward = cv2.getRotationMatrix2D((256.0, 511.0), angle, 1.0)
    forward[:, 2] += shift
    image = cv2.warpAffine(astronaut(), forward, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(_silhouette(), forward, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lm = astronaut_landmarks().copy()
    lm[:, :2] = lm[:, :2] @ forward[:, :2].T.astype(np.float32) + forward[:, 2].astype(np.float32)
    return image, alpha, lm, cv2.invertAffineTransform(forward)


def _keyframe() -> KeyframeState:
    return KeyframeState(kf=1, image=astronaut(), alpha=_silhouette(), landmarks=astronaut_landmarks())


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (512, 512), (1080, 1920), (360, 480), (144, 192), (241, 333)])
@given(seed=st.integers(0, 2**32 - 1))
def test_the_body_signal_is_the_matte_and_the_luma_each_reduced_on_their_own(shape: tuple[int, int], seed: int) -> None:
    """One area reduction of (alpha, luma) gives, bit for bit, what two did (the 8-bit luma rounded as OpenCV
    rounds it), at frame sizes the integer-factor path reduces (1920x1080, 480x360) and at sizes it does not."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    alpha = rng.random(shape, dtype=np.float32)
    alpha[rng.random(shape) < 0.3] = 0.0
    alpha[rng.random(shape) < 0.3] = 1.0
    size = estimate_size(shape)
    small = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
    luma = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA)
    expected = small * (0.5 + luma.astype(np.float32) * np.float32(0.5 / 255.0))
    signal = body_signal(alpha, image)
    assert signal.dtype == np.float32
    np.testing.assert_array_equal(signal, expected)


@pytest.mark.parametrize(("shift", "angle"), [((9.0, -5.0), 0.0), ((-14.0, 3.0), 3.0), ((0.0, 0.0), 0.0)])
def test_the_estimate_finds_the_bodys_motion(shift: tuple[float, float], angle: float) -> None:
    image, alpha, lm, truth = _moved(shift, angle)
    found = estimate_body_motion(_keyframe(), alpha, image, lm)
    assert found is not None
    points = np.array([[60.0, 480.0], [450.0, 480.0], [256.0, 340.0]])  # where the body is
    error = np.abs((points @ found[:, :2].T + found[:, 2]) - (points @ truth[:, :2].T + truth[:, 2])).max()
    assert error < 1.5


@pytest.mark.parametrize(("shift", "angle"), [((9.0, -5.0), 0.0), ((-14.0, 3.0), 3.0)])
def test_the_preparer_fits_a_frame_by_its_coarse_matte_where_it_has_one(shift: tuple[float, float], angle: float) -> None:
    """A learned matter's frame carries the network's mask at its own size (CoarseMatte) and no matte where the matte
    was left out: the motion is fitted to that, and it finds the body's motion as the matte did."""
    image, alpha, lm, truth = _moved(shift, angle)
    half = (SIZE[0] // 2 + 40, SIZE[1] // 2 + 40)  # not a whole fraction of the frame, as 320 px of 512 is not
    coarse = CoarseMatte(cv2.resize(image, half, interpolation=cv2.INTER_AREA),
                         cv2.resize(alpha, half, interpolation=cv2.INTER_AREA))
    frame = CapturedFrame(0, 0, image)
    fitted = {}
    for name, analysis in (("coarse", FrameAnalysis(frame, None, None, coarse=coarse)),
                           ("matte", FrameAnalysis(frame, None, alpha))):
        prepared = BodyPreparer().prepare_body(analysis, lm, {1: _keyframe()})
        assert prepared is not None and isinstance(prepared.values, BodyValues)
        fitted[name] = motion_matrix(prepared.values.motions[1], SIZE)
    points = np.array([[60.0, 480.0], [450.0, 480.0], [256.0, 340.0]])  # where the body is
    for found in fitted.values():
        assert np.abs((points @ found[:, :2].T + found[:, 2]) - (points @ truth[:, :2].T + truth[:, 2])).max() < 1.5
    assert BodyPreparer().prepare_body(FrameAnalysis(frame, None, None), lm, {1: _keyframe()}) is None


def test_the_coder_asks_for_the_coarse_matte_of_every_frame_with_the_body_code_and_for_no_matte() -> None:
    with_body, without = FrameCoder(codes=DEFAULT_CODES), FrameCoder(codes=("expression", "landmarks"))
    assert with_body.coarse_every_frame and not with_body.matte_every_frame
    assert not without.coarse_every_frame and not without.matte_every_frame


def test_small_changes_are_steadied_and_real_moves_followed_at_once() -> None:
    previous = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, -2.0]])
    jitter = previous + [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    move = previous + [[0.0, 0.0, 12.0], [0.0, 0.0, 0.0]]
    assert np.allclose(smooth_motion(previous, jitter, SIZE)[:, 2], [4.5, -2.0])
    assert np.array_equal(smooth_motion(previous, move, SIZE), move)
    assert np.array_equal(smooth_motion(None, move, SIZE), move)


def test_no_matte_in_the_keyframe_gives_no_motion() -> None:
    image, alpha, lm, _ = _moved((5.0, 0.0))
    keyframe = KeyframeState(kf=1, image=astronaut(), alpha=None, landmarks=astronaut_landmarks())
    assert estimate_body_motion(keyframe, alpha, image, lm) is None


def test_the_quantised_motion_is_within_a_quarter_pixel_at_its_control_points() -> None:
    matrix = np.array([[1.01, -0.02, 7.3], [0.015, 0.99, -4.1]])
    q = quantise_motion(matrix, SIZE)
    decoded = motion_matrix(q, SIZE)
    corners = np.array([[0.0, 0.0], [511.0, 0.0], [0.0, 511.0], [511.0, 511.0]])
    assert np.abs(corners @ (decoded - matrix)[:, :2].T + (decoded - matrix)[:, 2]).max() <= 0.25
    assert quantise_motion(decoded, SIZE) == q


@given(st.lists(st.tuples(*[st.integers(-1024, 1024)] * 6), min_size=1, max_size=12))
def test_a_chain_of_motions_round_trips(chain: list[tuple[int, int, int, int, int, int]]) -> None:
    previous = None
    held = None
    for index, q in enumerate(chain):
        payload = encode_motion(q, None if index % 5 == 0 else previous)
        held = decode_motion(payload, held, SIZE)
        assert held == q
        previous = q


def test_a_body_at_rest_costs_one_byte_and_a_moving_one_a_byte_a_value() -> None:
    q = (3, -2, 4, -1, 0, 2)
    assert len(encode_motion(q, q)) == 1 and len(encode_motion(q, None)) == 6
    assert len(encode_motion((4, -2, 4, -1, 0, 2), q)) == 2


@pytest.mark.parametrize(("payload", "held", "message"), [
    (b"", None, "empty"),
    (b"\x02", None, "unknown flags"),
    (b"\xfd\0\0", None, "ends inside"),
    (b"\x05\0\0", None, "after its values"),
    (b"\x04\x02", None, "predicted from a motion"),
    (b"\x05\xff\xff\xff\xff\x7f", None, "too long"),
    (b"\x05\x80\x40", None, "beyond half the frame"),  # 4096 quarter pixels
])
def test_hostile_payloads_raise_code_error(payload: bytes, held: tuple[int, ...] | None, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        BodyDecoder().decode(payload, FrameDraft(SIZE))


@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_escape_as_anything_but_code_error(data: bytes) -> None:
    decoder = BodyDecoder()
    for _ in range(2):
        with contextlib.suppress(CodeError):
            draft = FrameDraft(SIZE)
            decoder.decode(data, draft)
            assert draft.body is not None and np.isfinite(draft.body).all()


def _values(*motions: tuple[int, tuple[int, int, int, int, int, int]]) -> CodedFrame:
    image, alpha, lm, _ = _moved((0.0, 0.0))
    analysis = FrameAnalysis(CapturedFrame(0, 0, image), None, alpha)
    return CodedFrame(analysis, {CAPABILITY: Prepared(values=BodyValues(dict(motions)))})


def test_the_encoder_sends_the_motion_for_the_keyframe_the_frame_is_drawn_from_and_skipped_frames_never_feed_it() -> None:
    encoder, decoder = BodyEncoder(), BodyDecoder()
    a, b, c = (1, 2, 3, 4, 5, 6), (8, 8, 8, 8, 8, 8), (2, 2, 3, 4, 5, 7)
    assert encoder.encode(_values((1, a)), intra=False) is None  # not drawn from anything yet: nothing to send
    sent = [encoder.encode(CodedFrame(_values((1, a), (2, b)).analysis, _values((1, a), (2, b)).prepared, 1), True)]
    encoder.encode(CodedFrame(_values((1, b)).analysis, _values((1, b)).prepared, 1), False)  # skipped: never sent
    encoder.reset()  # ... and the uplink restarts the chain with an intra frame
    sent.append(encoder.encode(CodedFrame(_values((2, c)).analysis, _values((2, c)).prepared, 2), True))
    sent.append(encoder.encode(CodedFrame(_values((1, b), (2, a)).analysis, _values((1, b), (2, a)).prepared, 2), False))
    assert encoder.encode(CodedFrame(_values((1, b)).analysis, _values((1, b)).prepared, 3), False) is None
    draft = FrameDraft(SIZE)
    got = []
    for payload in sent:
        assert payload is not None
        decoder.decode(payload, draft)
        got.append(quantise_motion(draft.body, SIZE))  # type: ignore[arg-type]
    assert got == [a, c, a]


class _NoForeground:
    def foreground(self) -> None:
        return None


def _stream(codes: list[str], shifts: list[tuple[float, float]]) -> tuple[list[m.Message], FrameCoder, dict[int, BodyValues]]:
    """The messages a recording sends, the coder, and per frame sent (by seq) the body values it prepared."""
    coder = FrameCoder(codes=codes, budget=Budget.at_most(10e6))
    stream, gate = FeatureStream(FrameEncoder(negotiate(codes, codes))), Ceiling(10e6)
    messages: list[m.Message] = []
    prepared: dict[int, BodyValues] = {}
    for i, shift in enumerate(shifts):
        image, alpha, lm, _ = _moved(shift)
        face = FaceObservation(lm, HeadPose(0.0, 0.0, 0.0, 256.0, 200.0, 60.0), 0.9)
        item = coder.code(_NoForeground(), FrameAnalysis(CapturedFrame(i, i * 40_000, image), face, alpha))  # type: ignore[arg-type]
        sent = plan(stream, item, gate, i / 25)
        values = item.frame.prepared.get(CAPABILITY)
        for message in sent:
            if isinstance(message, m.Frame) and values is not None:
                assert isinstance(values.values, BodyValues)
                prepared[message.seq] = values.values
        messages += sent
    return messages, coder, prepared


def test_the_receiver_draws_the_alpha_the_senders_replica_draws_bit_for_bit() -> None:
    codes = ["landmarks", CAPABILITY]
    shifts = [(0.0, 0.0), (3.0, 0.0), (6.0, -2.0), (10.0, -3.0), (14.0, -3.0)]
    messages, coder, prepared = _stream(codes, shifts)
    decoder = FrameDecoder(codes)
    receiver, replica = MeshRenderer(), MeshRenderer()
    frames = 0
    for message in messages:
        wire = m.decode(m.encode(message))
        if isinstance(wire, m.Keyframe):
            state = decoder.decode_keyframe(wire)
            assert state is not None
            receiver.prepare_keyframe(state)
            held = coder.keyframe_state(wire.kf)
            assert held is not None
            replica.prepare_keyframe(held)
        elif isinstance(wire, m.Frame):
            got = decoder.decode_frame(wire)
            assert got.body is not None
            truth = _moved(shifts[wire.seq - 1])[3]
            body_points = np.array([[60.0, 480.0], [450.0, 480.0], [256.0, 340.0]])
            error = body_points @ (got.body - truth)[:, :2].T + (got.body - truth)[:, 2]
            assert np.abs(error).max() < 2.0  # within the fit's error of the true motion, where the body is
            assert len(wire.codes[1] or b"") <= 13
            # The replica: the motion the sender prepared for the keyframe the frame names, drawn by the same renderer.
            body = motion_matrix(prepared[wire.seq].motions[wire.kf], SIZE)
            drawn = replica.render(FrameState(got.seq, got.ts_us, got.face, got.landmarks, None, body=body))
            assert np.array_equal(drawn.alpha, receiver.render(got).alpha)
            assert np.array_equal(drawn.image, receiver.render(got).image)
            frames += 1
    assert frames == len(shifts)


def test_the_moved_body_follows_in_the_drawn_alpha() -> None:
    keyframe = _keyframe()
    renderer = MeshRenderer()
    renderer.prepare_keyframe(keyframe)
    image, alpha, lm, back = _moved((16.0, -6.0))
    still = renderer.render(FrameState(1, 0, "tracked", lm, None)).alpha
    moved = renderer.render(FrameState(1, 0, "tracked", lm, None, body=back)).alpha
    body = np.zeros(alpha.shape, bool)
    body[380:, :] = True  # the shoulders, far below the face

    def error(drawn: np.ndarray) -> float:
        return float(np.abs(drawn - alpha)[body].mean())

    assert error(moved) < 0.3 * error(still)


def test_body_motion_is_offered_by_default_and_dropped_for_a_receiver_that_lacks_it() -> None:
    assert CAPABILITY in DEFAULT_CODES
    assert negotiate(DEFAULT_CODES, ["expression", "landmarks"]) == ["expression"]
    messages, _, _ = _stream(["landmarks"], [(0.0, 0.0), (5.0, 0.0)])
    decoder = FrameDecoder(["landmarks"])
    for message in messages:
        if isinstance(message, m.Keyframe):
            decoder.decode_keyframe(message)
        elif isinstance(message, m.Frame):
            assert decoder.decode_frame(message).body is None


class _FittedAgainst(BodyPreparer):
    """Records the keyframes each frame's body is fitted against (the fit itself is not the point here)."""

    def __init__(self) -> None:
        super().__init__()
        self.fitted: list[list[int]] = []

    def prepare_body(self, analysis: FrameAnalysis, face: Landmarks | None,
                     keyframes: Mapping[int, KeyframeState]) -> Prepared | None:
        self.fitted.append(sorted(keyframes))
        return None


def test_the_body_is_fitted_against_the_frames_keyframe_and_the_newest_held_only_while_that_one_crosses() -> None:
    from tests.wire_fixtures import SyntheticAnalyzer

    analyzer, body = SyntheticAnalyzer(), _FittedAgainst()
    coder = FrameCoder(codes=DEFAULT_CODES)
    coder._preparers["body-motion"] = body  # noqa: SLF001
    image = np.random.default_rng(3).integers(0, 255, (240, 320, 3), np.uint8)
    frames = iter(range(100))

    def code(held: tuple[int, ...]) -> None:
        coder.held = held
        index = next(frames)
        coder.code(analyzer, analyzer.analyze(CapturedFrame(index, index * 33_333, image)))

    coder.restart()
    code(())  # the first keyframe is built with this frame: the receiver holds none, the frame waits for it
    code(())
    code((1,))  # the receiver holds it
    coder.policy.request()
    code((1,))  # keyframe 2 is built: its parts cross, so frames may still be drawn from 1
    code((1,))
    code((1, 2))  # keyframe 2 crossed: every frame is drawn from it
    code((1, 2))
    assert body.fitted == [[1], [1], [1], [1, 2], [1, 2], [2], [2]]
