"""The codec seam: payload codes chosen by negotiation, refused when not negotiated, and the shared
predictive base refusing decompression bombs and trailing data."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from facewire.sender.coding import Outgoing
from facewire.sender.stream import FeatureStream
from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder
from facewire.shared.codec.fields import FIELD_CODECS, CodedFrame, negotiate
from facewire.shared.codec.frames import REFERENCES, FrameDecodeError, FrameDecoder, FrameEncoder, build_keyframe
from facewire.shared.codec.landmarks import LandmarkDecoder, LandmarkEncoder
from facewire.shared.codec.predictive import CodeError, decompress_exactly
from facewire.shared.types import CapturedFrame, FaceObservation, FrameAnalysis, HeadPose
from facewire.shared.wire import messages as m
from tests.test_link import NullSink, _hostile_reply, running_receiver


def _analysis(index: int) -> FrameAnalysis:
    rng = np.random.default_rng(index)
    landmarks = rng.uniform(50, 150, (478, 3)).astype(np.float32)
    alpha = np.zeros((120, 160), np.float32)
    alpha[30:90, 40:120] = 1.0
    face = FaceObservation(landmarks, HeadPose(0.0, 0.0, 0.0, 80.0, 60.0, 40.0), 0.9)
    image = rng.integers(0, 255, (120, 160, 3), np.uint8)
    return FrameAnalysis(CapturedFrame(index, index * 33_333, image), face, alpha)


def _coded(index: int) -> CodedFrame:
    return CodedFrame(_analysis(index))


def _decoder(codes: list[str]) -> FrameDecoder:
    """A decoder holding keyframe 1 (seq 0), as after a keyframe was received."""
    decoder = FrameDecoder(codes)
    package, _ = build_keyframe(_analysis(0), kf=1, face=None, face_codes=None, max_image_bytes=20_000)
    for message in package.messages(part_bytes=100_000):
        assert isinstance(message, m.Keyframe)
        assert decoder.decode_keyframe(message) is not None
    return decoder


def test_negotiation_keeps_the_senders_order_one_code_a_role_and_needs_a_face_code() -> None:
    assert negotiate(["alpha", "landmarks", "expression.v9"], ["landmarks", "alpha"]) == ["alpha", "landmarks"]
    assert negotiate(["landmarks"], ["landmarks", "alpha"]) == ["landmarks"]
    assert negotiate(["landmarks", "alpha", "alpha"], ["alpha", "landmarks"]) == ["landmarks", "alpha"]
    with pytest.raises(CodeError, match=r"no common face code.*offers \['expression.v9'\].*decodes \['landmarks'\]"):
        negotiate(["expression.v9"], ["landmarks"])


def test_a_frame_carries_only_the_negotiated_codes() -> None:
    encoder = FrameEncoder(["landmarks"])
    message = encoder.frame(_coded(0), seq=1, kf=1, keyframe_ts_us=0)
    assert len(message.codes) == 1 and message.codes[0] is not None
    state = _decoder(["landmarks"]).decode_frame(message)
    assert state.landmarks is not None and state.alpha is None
    with_alpha = FrameEncoder(["landmarks", "alpha"]).frame(_coded(0), seq=1, kf=1, keyframe_ts_us=0)
    with pytest.raises(FrameDecodeError, match=r"carries 2 codes, the session negotiated 1 \(landmarks\)"):
        _decoder(["landmarks"]).decode_frame(with_alpha)


def test_every_field_codec_round_trips_a_predicted_chain() -> None:
    encoder, decoder = FrameEncoder(list(FIELD_CODECS)), _decoder(list(FIELD_CODECS))
    for seq in range(1, 20):
        analysis = _analysis(seq)
        state = decoder.decode_frame(encoder.frame(CodedFrame(analysis), seq=seq, kf=1, keyframe_ts_us=0))
        assert analysis.face is not None and state.landmarks is not None and state.alpha is not None
        error = np.abs(state.landmarks - analysis.face.landmarks).max(axis=0)
        assert error[0] <= 0.375 and error[1] <= 0.375 and error[2] <= 1.5  # half a step, plus a step of dead zone
        assert state.alpha.shape == (120, 160)


def test_a_receiver_refuses_a_sender_without_a_common_code() -> None:
    async def scenario() -> tuple[int | None, str | None]:
        async with running_receiver(NullSink()) as (_, port):
            hello = m.Hello(versions=[2], token="s3cret-token", capabilities=["expression.v9"])
            return await _hostile_reply(port, m.encode(hello))

    assert asyncio.run(scenario()) == (4009, "unsupported_code")


def test_a_small_payload_cannot_claim_a_large_output() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (1 << 24))  # ~0.5 KiB declaring 16 MiB
    assert len(bomb) < 1024
    with pytest.raises(CodeError, match="declares 16777216 bytes, expected 1434"):
        decompress_exactly(bomb, 1434, "landmark residual")
    payload = zstandard.ZstdCompressor().compress(b"\1" * 10)
    assert decompress_exactly(payload, 10, "x") == b"\1" * 10
    with pytest.raises(CodeError, match="after its frame"):
        decompress_exactly(payload + payload, 10, "x")


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_escape_as_anything_but_code_error(data: bytes) -> None:
    for decoder in (LandmarkDecoder(), AlphaDecoder()):
        with contextlib.suppress(CodeError):
            decoder.decode(data)


def test_intra_codes_decode_without_state() -> None:
    lm = np.random.default_rng(1).uniform(0, 500, (478, 3)).astype(np.float32)
    code = LandmarkEncoder().encode(lm, intra=True)
    assert np.abs(LandmarkDecoder().decode(code) - lm).max() <= 0.5
    alpha = np.random.default_rng(2).uniform(0, 1, (64, 64)).astype(np.float32)
    assert AlphaDecoder().decode(AlphaEncoder().encode(alpha, intra=True)).shape == (8, 8)


def test_a_keyframe_in_parts_is_drawn_from_once_complete_and_frames_flow_meanwhile() -> None:
    decoder = _decoder(["landmarks"])
    encoder = FrameEncoder(["landmarks"])
    package, _ = build_keyframe(_analysis(5), kf=2, face=None, face_codes=None, max_image_bytes=20_000)
    head, *rest = package.messages(part_bytes=300)
    assert len(rest) >= 2 and isinstance(head, m.Keyframe) and head.parts == len(rest) + 1
    assert decoder.decode_frame(encoder.frame(_coded(1), seq=1, kf=1, keyframe_ts_us=0)).landmarks is not None
    assert decoder.decode_keyframe(head) is None
    # a frame between the parts is still drawn from keyframe 1, its prediction unbroken by the keyframe
    assert decoder.decode_frame(encoder.frame(_coded(2), seq=2, kf=1, keyframe_ts_us=0)).seq == 2
    for part in rest[:-1]:
        assert isinstance(part, m.KeyframePart) and decoder.decode_part(part) is None
    last = rest[-1]
    assert isinstance(last, m.KeyframePart)
    complete = decoder.decode_part(last)
    assert complete is not None and complete.kf == 2 and complete.image.shape == (120, 160, 3)
    state = decoder.decode_frame(encoder.frame(_coded(7), seq=3, kf=2, keyframe_ts_us=package.ts_us))
    assert decoder.keyframe is complete and state.ts_us == package.ts_us + 67_000  # frame 7 is 2 frames after 5
    # keyframe 1 is still held: a frame may go back to it (a reference named, not resent)
    assert decoder.decode_frame(encoder.frame(_coded(8), seq=4, kf=1, keyframe_ts_us=0)).seq == 4
    assert decoder.keyframe is not None and decoder.keyframe.kf == 1
    with pytest.raises(FrameDecodeError, match="drawn from keyframe 9"):
        decoder.decode_frame(encoder.frame(_coded(9), seq=5, kf=9, keyframe_ts_us=0))


def test_the_receiver_holds_the_last_references_keyframes_as_the_sender_counts_them() -> None:
    decoder, stream = _decoder(["landmarks"]), FeatureStream(FrameEncoder(["landmarks"]))
    stream.restart()
    for kf in range(1, REFERENCES + 3):
        package, _ = build_keyframe(_analysis(kf), kf=kf, face=None, face_codes=None, max_image_bytes=20_000)
        stream.state_messages(Outgoing(CodedFrame(_analysis(kf)), keyframe=package), part_bytes=100_000)
        while (part := stream.next_part()) is not None:
            assert isinstance(part, m.Keyframe)
            decoder.decode_keyframe(part)
            stream.part_sent()
    for kf in range(1, REFERENCES + 3):
        frame = stream.frame(Outgoing(CodedFrame(_analysis(20 + kf)), reference=kf))
        assert frame is not None
        held = kf > 2  # the oldest two were replaced, on both sides alike
        assert frame.kf == (kf if held else REFERENCES + 2)
        assert decoder.decode_frame(frame).seq == frame.seq


def test_parts_out_of_order_or_over_their_size_are_refused() -> None:
    decoder = _decoder(["landmarks"])
    package, _ = build_keyframe(_analysis(5), kf=2, face=None, face_codes=None, max_image_bytes=20_000)
    head, first, *_ = package.messages(part_bytes=300)
    assert isinstance(head, m.Keyframe) and isinstance(first, m.KeyframePart)
    decoder.decode_keyframe(head)
    with pytest.raises(FrameDecodeError, match="out of order"):
        decoder.decode_part(m.KeyframePart(kf=2, part=2, data=first.data))
    decoder.decode_keyframe(head)
    with pytest.raises(FrameDecodeError, match="exceed"):
        decoder.decode_part(m.KeyframePart(kf=2, part=1, data=b"x" * (head.image_bytes or 0)))
