"""The alpha corrections (facewire.shared.codec.alpha_fix): what the receiver shows with held tiles, the
payload's round trips and refusals, the encoder's choices under its budget and the state both sides
hold (new keyframes, a lost receiver, a late joiner after an intra frame), and the code on the seam
through the real sender and the frame decoder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.sender.coding import ALPHA_FIX_CODES, DEFAULT_CODES, Budget, FrameCoder
from facewire.sender.sending import Ceiling, plan
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.alpha_fix import (
    CAPABILITY,
    LEVELS,
    TILE,
    AlphaFixDecoder,
    AlphaFixEncoder,
    Grid,
    Ops,
    apply_fix,
    apply_ops,
    decode_ops,
    encode_ops,
    matte_levels,
    payload_bound,
    prepare_values,
    tile_means,
)
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameDecoder, FrameEncoder
from facewire.shared.codec.predictive import PayloadError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, Prepared
from facewire.shared.render.mesh import MeshRenderer
from facewire.shared.types import AlphaFix, CapturedFrame, FaceObservation, FrameAnalysis, HeadPose
from facewire.shared.wire import messages as m
from tests.render_fixtures import astronaut, astronaut_landmarks

cv2.setNumThreads(1)
SIZE = (200, 136)  # not whole tiles: the last row and column overhang
GRID = Grid(SIZE)


def _disc(centre: tuple[int, int], radius: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    alpha = np.zeros((size[1], size[0]), np.float32)
    cv2.circle(alpha, centre, radius, 1.0, -1, lineType=cv2.LINE_AA)
    return alpha


def _error(shown: np.ndarray, matte: np.ndarray) -> float:
    return float(np.abs(shown - matte).mean())


# --- what the receiver shows -----------------------------------------------------------------------------

def test_nothing_held_shows_the_prediction_itself() -> None:
    prediction = _disc((100, 70), 40)
    assert apply_fix(prediction, None) is prediction
    assert apply_fix(prediction, GRID.empty()) is prediction


def test_held_tiles_show_the_matte_and_the_rest_stays_the_prediction() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 70), 40)
    levels = matte_levels(matte, GRID)
    every = AlphaFix(np.ones(GRID.tiles[::-1], bool), levels)
    assert _error(apply_fix(prediction, every), matte) < 0.2 * _error(prediction, matte)
    one = AlphaFix(np.zeros(GRID.tiles[::-1], bool), levels)
    one.held[1, 4] = True  # x 128-160, y 32-64: the right edge of the matte's disc
    shown = apply_fix(prediction, one)
    tile = (slice(32 + 4, 64 - 4), slice(128 + 4, 160 - 4))  # inside it, past the feathered border
    assert np.abs(shown - matte)[tile].mean() < 0.3 * np.abs(prediction - matte)[tile].mean()
    far = np.ones(prediction.shape, bool)
    far[0:96, 96:192] = False  # beyond the two cells round the held tile its edge fades over
    assert np.array_equal(shown[far], prediction[far])
    assert shown.shape == prediction.shape and shown.min() >= 0.0 and shown.max() <= 1.0


def test_a_held_tile_blends_into_the_prediction_without_a_step() -> None:
    prediction = np.full((SIZE[1], SIZE[0]), 0.5, np.float32)
    levels = np.full((GRID.tiles[1] * TILE, GRID.tiles[0] * TILE), LEVELS - 1, np.uint8)
    fix = AlphaFix(np.zeros(GRID.tiles[::-1], bool), levels)
    fix.held[1, 1] = True
    row = apply_fix(prediction, fix)[48, :]
    assert np.abs(np.diff(row)).max() < 0.2  # a ramp of a cell, not a step of 0.5


# --- payload --------------------------------------------------------------------------------------------

@st.composite
def _ops(draw: st.DrawFn) -> Ops:
    indices = sorted(draw(st.sets(st.integers(0, GRID.count - 1), max_size=12)))
    levels = tuple(draw(st.one_of(st.none(), st.lists(st.integers(0, LEVELS - 1), min_size=TILE * TILE,
                                                       max_size=TILE * TILE).map(
        lambda v: np.array(v, np.uint8).reshape(TILE, TILE)))) for _ in indices)
    return Ops(draw(st.booleans()), tuple(indices), levels)


@given(_ops())
@settings(max_examples=80, deadline=None)
def test_ops_round_trip(ops: Ops) -> None:
    got = decode_ops(encode_ops(ops), GRID)
    assert got.clear_all == ops.clear_all and got.indices == ops.indices
    for a, b in zip(got.levels, ops.levels, strict=True):
        assert (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def test_an_edge_tile_costs_a_few_bytes_and_nothing_to_say_costs_two() -> None:
    matte = _disc((100, 70), 40)
    levels = matte_levels(matte, GRID)
    edge = levels[4:8, 16:20].copy()  # x 128-160, y 32-64: across the disc's edge
    assert 0 < edge.min() < LEVELS - 1 or edge.min() != edge.max()
    assert len(encode_ops(Ops(False, (4 + GRID.tiles[0],), (edge,)))) <= 12
    assert encode_ops(Ops(True)) == b"\x01\x00"


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (b"\x02\x00", "unknown flags"),
    (b"\x00\x80", "ends inside"),
    (b"\x00\xff\xff\xff\xff\x01", "too long"),
    (bytes([0, 200, 1]), "ops for"),
    (bytes([0, 1, 2 * 40]), "beyond the frame"),
    (bytes([0, 1, 0, 7]), "after its ops"),
])
def test_hostile_payloads_raise_payload_error(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_ops(payload, GRID)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_escape_as_anything_but_payload_error(data: bytes) -> None:
    try:
        ops = decode_ops(data, GRID)
    except PayloadError:
        return
    fix = apply_ops(GRID.empty(), ops)
    assert fix.levels.max() < LEVELS


# --- the encoder and the state both sides hold ----------------------------------------------------------

def _frame(index: int, matte: np.ndarray, prediction: np.ndarray, kf: int = 1, bps: float = 8000.0,
           with_values: bool = True) -> CodedFrame:
    image = np.zeros((*matte.shape, 3), np.uint8)
    analysis = FrameAnalysis(CapturedFrame(index, index * 100_000, image), None, matte)
    prepared = {CAPABILITY: Prepared(values=prepare_values(kf, prediction, matte, bps))} if with_values else {}
    return CodedFrame(analysis, prepared, drawn_from=kf)


def _run(encoder: AlphaFixEncoder, decoder: AlphaFixDecoder, frames: list[CodedFrame],
         intra: int | None = None) -> list[bytes | None]:
    payloads = []
    for i, frame in enumerate(frames):
        payload = encoder.encode(frame, intra=i == intra)
        payloads.append(payload)
        draft = FrameDraft(SIZE)
        if payload is not None:
            decoder.decode(payload, draft)
        decoder.hold(draft)
        held = encoder.fix is not None and encoder.fix.held.any()
        assert (draft.alpha_fix is not None) == held
        if draft.alpha_fix is not None and encoder.fix is not None:
            assert np.array_equal(draft.alpha_fix.held, encoder.fix.held)
            held_cells = np.repeat(np.repeat(encoder.fix.held, TILE, 0), TILE, 1)
            assert np.array_equal(draft.alpha_fix.levels[held_cells], encoder.fix.levels[held_cells])
    return payloads


def test_corrections_converge_on_the_matte_within_the_budget_and_then_cost_nothing() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 66), 42)
    encoder, decoder = AlphaFixEncoder(), AlphaFixDecoder()
    bps = 800.0  # 10 B a frame at 10 frames a second
    frames = [_frame(i, matte, prediction, bps=bps) for i in range(40)]
    payloads = _run(encoder, decoder, frames)
    spent = sum(len(p) for p in payloads if p is not None)
    assert max(len(p) for p in payloads if p is not None) <= payload_bound(bps)  # what the send gate plans for
    assert spent <= bps / 8 * 4.0 + 48 + 2  # 3.9 s of the rate, the first burst, the first clear
    assert decoder.fix is not None
    shown = apply_fix(prediction, decoder.fix)
    assert _error(shown, matte) < 0.4 * _error(prediction, matte)
    errors = tile_means(np.abs(shown - matte), GRID)
    assert errors.max() < 0.1
    assert all(p is None for p in payloads[-5:])  # a static error is paid once


def test_a_tile_the_prediction_gets_right_again_is_cleared_for_a_byte() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 66), 42)
    encoder, decoder = AlphaFixEncoder(), AlphaFixDecoder()
    _run(encoder, decoder, [_frame(i, matte, prediction, bps=20000.0) for i in range(10)])
    assert decoder.fix is not None and decoder.fix.held.any()
    # the prediction now matches the matte (the person came back to where the keyframe has them)
    payloads = _run(encoder, decoder, [_frame(10 + i, prediction, prediction, bps=20000.0) for i in range(3)])
    first = payloads[0]
    assert first is not None and len(first) <= 2 + int(encoder.fix.held.size)  # type: ignore[union-attr]
    assert decoder.fix is not None and not decoder.fix.held.any()


def test_a_newer_keyframe_or_a_lost_receiver_drops_every_held_tile() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 66), 42)
    encoder, decoder = AlphaFixEncoder(), AlphaFixDecoder()
    _run(encoder, decoder, [_frame(i, matte, prediction, bps=20000.0) for i in range(6)])
    assert decoder.fix is not None and decoder.fix.held.any()
    payloads = _run(encoder, decoder, [_frame(6, matte, matte, kf=2, with_values=False)])
    assert payloads[0] == b"\x01\x00"
    assert decoder.fix is not None and not decoder.fix.held.any()
    _run(encoder, decoder, [_frame(7 + i, matte, prediction, kf=2, bps=20000.0) for i in range(6)])
    encoder.reset()  # the receiver lost the stream (its decoder reset at the gap)
    decoder.reset()
    payloads = _run(encoder, decoder, [_frame(20, matte, matte, kf=2, with_values=False)])
    assert payloads[0] == b"\x01\x00" and encoder.fix is None


def test_frames_drawn_from_another_keyframe_than_the_prediction_send_no_corrections() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 66), 42)
    encoder = AlphaFixEncoder()
    frame = _frame(0, matte, prediction, kf=1, bps=20000.0)
    other = CodedFrame(frame.analysis, frame.prepared, drawn_from=0)
    assert encoder.encode(other, intra=False) == b"\x01\x00"  # a new session's first clear, no ops
    assert encoder.fix is not None and not encoder.fix.held.any()


def test_a_late_joiner_converges_after_an_intra_frame() -> None:
    prediction, matte = _disc((90, 70), 40), _disc((110, 66), 42)
    encoder, decoder = AlphaFixEncoder(), AlphaFixDecoder()
    _run(encoder, decoder, [_frame(i, matte, prediction, bps=2000.0) for i in range(30)])
    assert encoder.fix is not None and encoder.fix.held.any()
    joiner = AlphaFixDecoder()
    frames = [_frame(30 + i, matte, prediction, bps=2000.0) for i in range(40)]
    for i, frame in enumerate(frames):
        payload = encoder.encode(frame, intra=i == 0)
        for receiver in (decoder, joiner):
            if payload is not None:
                receiver.decode(payload, FrameDraft(SIZE))
    assert joiner.fix is not None and decoder.fix is not None
    assert np.array_equal(joiner.fix.held, encoder.fix.held)
    assert np.array_equal(decoder.fix.held, encoder.fix.held)


# --- on the seam ----------------------------------------------------------------------------------------

def test_corrections_are_offered_on_request_persist_over_intra_frames_and_fall_back_to_the_prediction() -> None:
    assert CAPABILITY not in DEFAULT_CODES and (*DEFAULT_CODES, CAPABILITY) == ALPHA_FIX_CODES
    assert FIELD_CODECS[CAPABILITY].role == "alpha" and FIELD_CODECS[CAPABILITY].persistent
    assert CAPABILITY not in negotiate(ALPHA_FIX_CODES, ["expression", "landmarks", "body-motion"])
    # offered before the whole-matte code, corrections win over it
    assert negotiate([*ALPHA_FIX_CODES, "alpha"], list(FIELD_CODECS))[-1] == CAPABILITY


class _NoForeground:
    def foreground(self) -> None:
        return None


def test_through_the_sender_and_the_frame_decoder_the_receiver_shows_the_matte_where_the_prediction_was_off() -> None:
    """The keyframe shows the astronaut with a narrow matte; then the matte widens (the prediction, the
    keyframe's, is off at the new edges): the frames carry corrections and the receiver's alpha follows."""
    image, lm = astronaut(), astronaut_landmarks()
    face = FaceObservation(lm, HeadPose(0.0, 0.0, 0.0, 256.0, 200.0, 60.0), 0.9)
    narrow = np.zeros((512, 512), np.float32)
    cv2.ellipse(narrow, (260, 300), (150, 260), 0, 0, 360, 1.0, -1)
    wide = np.zeros((512, 512), np.float32)
    cv2.ellipse(wide, (260, 300), (200, 270), 0, 0, 360, 1.0, -1)
    codes = ["landmarks", CAPABILITY]
    coder = FrameCoder(codes=codes, budget=Budget.at_most(200_000))
    stream, gate = FeatureStream(FrameEncoder(negotiate(codes, codes))), Ceiling(200_000)
    decoder, renderer = FrameDecoder(codes), MeshRenderer()
    shown: list[np.ndarray] = []
    spent = 0
    for i in range(24):
        matte = narrow if i == 0 else wide
        analysis = FrameAnalysis(CapturedFrame(i, i * 33_333, image), face, matte)
        item = coder.code(_NoForeground(), analysis)  # type: ignore[arg-type]
        for message in plan(stream, item, gate, i / 30):
            wire = m.decode(m.encode(message))
            if isinstance(wire, m.Keyframe | m.KeyframePart):
                state = decoder.decode_keyframe(wire) if isinstance(wire, m.Keyframe) else decoder.decode_part(wire)
                if state is not None:
                    renderer.prepare_keyframe(state)
            elif isinstance(wire, m.Frame):
                got = decoder.decode_frame(wire)
                spent += len(wire.codes[1] or b"")
                shown.append(apply_fix(renderer.render(got).alpha, got.alpha_fix))
        coder.held = stream.held
    assert len(shown) >= 20
    assert _error(shown[-1], wide) < 0.35 * _error(shown[0], wide)
    assert spent < 1500
