"""Keyframes without their AVIF containers (message form `keyframe-av1`, protocol.md 3.3 and 7.3): the receiver
rebuilds exactly the file the sender's libavif wrote, so it decodes the same pixels for ~270 bytes less a picture;
bad OBUs are refused before any decode; only peers that both list the form use it."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from facewire.shared.codec import av1still
from facewire.shared.codec.frames import FrameDecoder, build_keyframe
from facewire.shared.codec.keyframe import (
    RAW_ALPHA_VERSION,
    decode_keyframe_alpha,
    decode_person,
    encode_keyframe_alpha,
    raw_alpha,
    raw_bytes,
    raw_picture,
)
from facewire.shared.codec.predictive import CodeError
from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p
from tests.test_codec_seam import _analysis
from tests.test_packed_frames import TOKEN, OldReceiver, OldSender, handshake


def _avif(height: int, width: int, mode: str, quality: int = 30, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    picture = PILImage.fromarray((rng.random((height, width, 3)) * 80 + 90).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    picture.save(buf, format="AVIF", quality=quality, speed=9, max_threads=1)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (17, 33), (300, 250), (64, 2100)])
def test_the_receiver_rebuilds_the_senders_file_exactly(height: int, width: int, mode: str) -> None:
    avif = _avif(height, width, mode)
    obus = av1still.strip(avif)
    assert obus is not None and av1still.wrap(obus, "image") == avif
    assert 240 <= len(avif) - len(obus) <= 300 and raw_bytes(avif) == len(obus)
    head = av1still.still_header(obus, "image")
    assert (head.width, head.height, head.monochrome) == (width, height, mode == "L")


def test_a_container_the_receiver_would_not_rebuild_travels_as_avif() -> None:
    avif = _avif(40, 30, "RGB")
    other = avif.replace(b"MA1B", b"MA1A")  # another brand: the rebuilt file would differ
    assert av1still.strip(other) is None
    assert raw_picture(other) == (other, "avif") and raw_bytes(other) == len(other)
    assert av1still.strip(avif[:-1]) is None and av1still.strip(b"") is None


def test_a_raw_keyframe_decodes_to_the_same_pixels_and_costs_less() -> None:
    package, state = build_keyframe(_analysis(3), kf=1, face=None, face_codes=None, max_image_bytes=20_000)
    plain = FrameDecoder(["landmarks"])
    raw = FrameDecoder(["landmarks"])
    (avif_head,) = package.messages(part_bytes=100_000)
    (raw_head,) = package.messages(part_bytes=100_000, raw=True)
    assert isinstance(avif_head, m.Keyframe) and isinstance(raw_head, m.Keyframe)
    assert avif_head.image_format == "avif" and raw_head.image_format == "av1"
    assert raw_head.alpha is not None and raw_head.alpha[0] == RAW_ALPHA_VERSION
    saved = len(m.encode(avif_head)) - len(m.encode(raw_head))
    assert 480 <= saved <= 600, saved
    a, b = plain.decode_keyframe(avif_head), raw.decode_keyframe(raw_head)
    assert a is not None and b is not None
    assert np.array_equal(a.image, b.image) and np.array_equal(a.image, state.image)
    assert a.alpha is not None and b.alpha is not None and np.array_equal(a.alpha, b.alpha)


def test_a_raw_keyframe_in_parts_goes_whole() -> None:
    package, _ = build_keyframe(_analysis(4), kf=1, face=None, face_codes=None, max_image_bytes=20_000)
    head, *rest = package.messages(part_bytes=300, raw=True)
    decoder = FrameDecoder(["landmarks"])
    assert isinstance(head, m.Keyframe) and rest and decoder.decode_keyframe(head) is None
    states = [decoder.decode_part(part) for part in rest if isinstance(part, m.KeyframePart)]
    assert states[-1] is not None and states[-1].image.shape == (120, 160, 3)


def test_a_raw_keyframe_is_sized_by_what_travels() -> None:
    """The picture's budget buys AV1 and not container: at the same budget the raw picture is at least as good."""
    plain, _ = build_keyframe(_analysis(6), kf=1, face=None, face_codes=None, max_image_bytes=2500)
    raw, _ = build_keyframe(_analysis(6), kf=1, face=None, face_codes=None, max_image_bytes=2500, raw=True)
    assert raw.raw and raw_bytes(raw.image) <= 2500 < len(raw.image) or raw.quality == plain.quality
    assert raw.quality >= plain.quality
    assert raw.nbytes < len(raw.image) + len(raw.alpha)


@pytest.mark.parametrize("damage", ["profile", "not_still", "cut", "td_payload", "no_header", "extension"])
def test_bad_obus_are_refused_before_decoding(damage: str) -> None:
    obus = av1still.strip(_avif(48, 64, "RGB"))
    assert obus is not None and obus[:2] == b"\x12\x00" and obus[2] == 0x0A
    data = bytearray(obus)
    if damage == "profile":
        data[4] |= 0x20  # seq_profile 1
    elif damage == "not_still":
        data[4] &= ~0x10 & 0xFF
    elif damage == "cut":
        data = data[:6]
    elif damage == "td_payload":
        data[1] = 1
    elif damage == "no_header":
        data = data[:2] + data[2 + 2 + data[3]:]
    elif damage == "extension":
        data[2] |= 0x04
    with pytest.raises(CodeError) as refused:
        decode_person(bytes(data), (0, 0, 64, 48), (64, 48), fmt="av1")
    assert refused.value.field == "image"


def test_a_declared_size_or_kind_other_than_the_boxs_is_refused() -> None:
    obus = av1still.strip(_avif(48, 64, "RGB"))
    assert obus is not None
    assert decode_person(obus, (0, 0, 64, 48), (64, 48), fmt="av1").shape == (48, 64, 3)
    with pytest.raises(CodeError, match="declares 64x48"):
        decode_person(obus, (0, 0, 64, 50), (64, 50), fmt="av1")
    alpha = np.zeros((48, 64), np.float32)
    alpha[8:40, 8:56] = 1.0
    grey = raw_alpha(encode_keyframe_alpha(alpha, (0, 0, 64, 48)))
    assert grey[0] == RAW_ALPHA_VERSION
    assert decode_keyframe_alpha(grey, (0, 0, 64, 48), (64, 48)).shape == (48, 64)
    colour_as_alpha = bytes([RAW_ALPHA_VERSION, 2]) + av1still.strip(_avif(24, 32, "RGB"))  # type: ignore[operator]
    with pytest.raises(CodeError, match="greyscale"):
        decode_keyframe_alpha(colour_as_alpha, (0, 0, 64, 48), (64, 48))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_obus_only_raise_code_error(data: st.DataObject) -> None:
    obus = bytearray(av1still.strip(_avif(24, 32, "RGB")) or b"")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(obus) - 1))
        obus[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(obus)))
    with contextlib.suppress(CodeError):  # anything else escapes and fails the test
        decode_person(bytes(obus[:cut]), (0, 0, 32, 24), (32, 24), fmt="av1")


def test_both_sides_know_it_keyframes_go_raw() -> None:
    snd, rcv = p.SenderProtocol(TOKEN, 0.0, capabilities=["expression"]), p.ReceiverProtocol(TOKEN, 0.0, capabilities=["expression"])
    handshake(snd, rcv)
    assert snd.keyframe_av1 and rcv.keyframe_av1


@pytest.mark.parametrize(("sender", "receiver"), [(p.SenderProtocol, OldReceiver), (OldSender, p.ReceiverProtocol)])
def test_a_peer_without_it_gets_avif(sender: type[p.SenderProtocol], receiver: type[p.ReceiverProtocol]) -> None:
    snd, rcv = sender(TOKEN, 0.0), receiver(TOKEN, 0.0)
    handshake(snd, rcv)
    assert not snd.keyframe_av1 and not rcv.keyframe_av1


def test_a_relay_does_not_grant_it() -> None:
    """Receivers that join a room later may not know the form: a relay passes keyframes on as they came."""
    relay = p.RelayProtocol({"sender": TOKEN, "receiver": None}, 0.0)
    snd = p.SenderProtocol(TOKEN, 0.0)
    handshake(snd, relay)
    assert not snd.keyframe_av1


def test_an_identity_image_is_never_av1() -> None:
    """Only a keyframe's picture may leave out its container: an identity image is a file the receiver keeps by hash."""
    bad = m.encode(m.Keyframe(kf=1, ts_us=0, width=16, height=16, image=b"x", image_format="av1"))
    assert isinstance(m.decode(bad), m.Keyframe)
    identity = m.encode(m.Identity(asset="0" * 64, image=b"x", image_format="png")).replace(b"png", b"av1")
    with pytest.raises(m.MessageValidationError) as refused:
        m.decode(identity)
    assert refused.value.field == "image_format"
