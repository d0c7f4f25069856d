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

from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder
from facewire.shared.codec.fields import FIELD_CODECS, negotiate
from facewire.shared.codec.frames import FrameDecodeError, FrameDecoder, FrameEncoder, encode_image
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
    return FrameAnalysis(CapturedFrame(index, index * 33_333, np.zeros((120, 160, 3), np.uint8)), face, alpha)


def _decoder(codes: list[str]) -> FrameDecoder:
    decoder = FrameDecoder(codes)
    image = np.zeros((120, 160, 3), np.uint8)
    decoder.decode_keyframe(m.Keyframe(kf=1, seq=0, ts_us=0, width=160, height=120, image=encode_image(image),
                                       image_format="webp"))
    return decoder


def test_negotiation_keeps_the_senders_order_one_code_a_role_and_needs_a_face_code() -> None:
    assert negotiate(["alpha", "landmarks", "expression.v9"], ["landmarks", "alpha"]) == ["alpha", "landmarks"]
    assert negotiate(["landmarks"], ["landmarks", "alpha"]) == ["landmarks"]
    assert negotiate(["landmarks", "alpha", "alpha"], ["alpha", "landmarks"]) == ["landmarks", "alpha"]
    with pytest.raises(CodeError, match=r"no common face code.*offers \['expression.v9'\].*decodes \['landmarks'\]"):
        negotiate(["expression.v9"], ["landmarks"])


def test_a_frame_carries_only_the_negotiated_codes() -> None:
    encoder = FrameEncoder(["landmarks"])
    message = encoder.frame(_analysis(0), seq=1, kf=1)
    assert len(message.codes) == 1 and message.codes[0] is not None
    state = _decoder(["landmarks"]).decode_frame(message)
    assert state.landmarks is not None and state.alpha is None
    with_alpha = FrameEncoder(["landmarks", "alpha"]).frame(_analysis(0), seq=1, kf=1)
    with pytest.raises(FrameDecodeError, match=r"carries 2 codes, the session negotiated 1 \(landmarks\)"):
        _decoder(["landmarks"]).decode_frame(with_alpha)


def test_every_field_codec_round_trips_a_predicted_chain() -> None:
    encoder, decoder = FrameEncoder(list(FIELD_CODECS)), _decoder(list(FIELD_CODECS))
    for seq in range(1, 20):
        analysis = _analysis(seq)
        state = decoder.decode_frame(encoder.frame(analysis, seq=seq, kf=1))
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
