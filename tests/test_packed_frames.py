"""Packed frames (capability `frame-packed`, protocol.md 2): the same `frame` in ~7 bytes of header instead of
~15, negotiated in hello/welcome so that a peer without it gets the msgpack array; bad bytes name the field."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.shared.wire import messages as m
from facewire.shared.wire import protocol as p
from facewire.shared.wire.errors import ErrorCode, MessageValidationError

TOKEN = "t"

frames = st.builds(
    m.Frame, seq=st.integers(0, 2**32 - 1), dt_ms=st.integers(0, 2**32 - 1), kf=st.integers(0, 2**32 - 1),
    face=st.integers(0, len(m.FACE_STATES) - 1),
    codes=st.lists(st.none() | st.binary(max_size=300), max_size=m.MAX_CODES), intra=st.booleans())


@settings(max_examples=300, deadline=None)
@given(frames)
def test_round_trip(frame: m.Frame) -> None:
    data = m.encode(frame, packed_frames=True)
    assert m.decode(data) == frame
    assert data[0] & 0xF8 == 0x60


def test_smaller_than_the_msgpack_array() -> None:
    # a frame 10 s into a stream at 30 fps, 2 codes: the expression code and the body's motion
    frame = m.Frame(seq=300, dt_ms=9967, kf=3, face=0, codes=[b"x" * 16, b"y" * 3])
    packed, plain = m.encode(frame, packed_frames=True), m.encode(frame)
    assert len(packed) - 19 == 8 and len(plain) - 19 == 17, (len(packed), len(plain))


def test_other_messages_are_not_packed() -> None:
    bye = m.Bye(reason="done")
    assert m.encode(bye, packed_frames=True) == m.encode(bye)


def rejected(data: bytes) -> MessageValidationError:
    with pytest.raises(MessageValidationError) as info:
        m.decode(data)
    assert info.value.code is ErrorCode.BAD_MESSAGE
    return info.value


@pytest.mark.parametrize(("data", "field"), [
    (b"\x66\x01\x01\x01", "face"),  # face state 3
    (b"\x60", "seq"),  # cut short
    (b"\x60\x01\x01", "kf"),
    (b"\x60\xff\xff\xff\xff\x7f\x00\x00", "seq"),  # over a u32
    (b"\x60\x80\x80\x80\x80\x80\x01\x00\x00", "seq"),  # longer than 5 bytes
    (b"\x60\x01\x01\x01\x05ab", "codes[0]"),  # declares 4 bytes, carries 2
    (b"\x60\x01\x01\x01\x01\x80", "codes[1]"),  # an empty code, then a length cut short
    (b"\x60\x01\x01\x01" + b"\x00" * (m.MAX_CODES + 1), "codes"),
    (b"\x60\x01\x01\x01" + bytes([0x82, 0x80, 0x06]), "codes[0]"),  # a code over MAX_FRAME_FIELD_BYTES
])
def test_bad_packed_frames_name_the_field(data: bytes, field: str) -> None:
    assert rejected(data).field == field


def test_oversize_packed_frame_rejected() -> None:
    frame = m.Frame(seq=1, dt_ms=0, kf=0, face=0, codes=[b"\x00" * m.MAX_FRAME_FIELD_BYTES, b"\x00" * (40 * 1024)])
    assert "exceeds" in str(rejected(m.encode(frame, packed_frames=True)))


@settings(max_examples=300, deadline=None)
@given(frames, st.data())
def test_damaged_packed_frames_only_raise_validation_error(frame: m.Frame, data: st.DataObject) -> None:
    raw = bytearray(m.encode(frame, packed_frames=True))
    damaged = raw[:data.draw(st.integers(1, len(raw)))]
    index = data.draw(st.integers(0, len(damaged) - 1))
    damaged[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(MessageValidationError):
        m.decode(bytes(damaged))


# --- negotiation --------------------------------------------------------------------------------

def handshake(sender: p.SenderProtocol, receiver: p.ReceiverProtocol) -> None:
    for data in sender.data_to_send():
        receiver.receive(data, 0.0)
    for data in receiver.data_to_send():
        sender.receive(data, 0.0)
    assert sender.state is p.State.OPEN and receiver.state is p.State.OPEN


def test_both_sides_know_it_frames_go_packed() -> None:
    snd, rcv = p.SenderProtocol(TOKEN, 0.0, capabilities=["expression"]), p.ReceiverProtocol(TOKEN, 0.0, capabilities=["expression"])
    handshake(snd, rcv)
    assert snd.welcome is not None and snd.welcome.capabilities == ["expression", *m.WIRE_CAPABILITIES]
    assert snd.packed_frames and rcv.packed_frames
    frame = m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[b"abc"], intra=True)
    data = snd.send(frame)
    assert data == m.encode(frame, packed_frames=True)
    assert rcv.receive(data, 0.1) == [p.MessageReceived(frame)]


class OldReceiver(p.ReceiverProtocol):
    wire_capabilities = ()  # a receiver of before packed frames: its welcome lists codes only


class OldSender(p.SenderProtocol):
    wire_capabilities = ()


@pytest.mark.parametrize(("sender", "receiver"), [(p.SenderProtocol, OldReceiver), (OldSender, p.ReceiverProtocol)])
def test_a_peer_without_it_gets_the_msgpack_array(sender: type[p.SenderProtocol], receiver: type[p.ReceiverProtocol]) -> None:
    snd, rcv = sender(TOKEN, 0.0), receiver(TOKEN, 0.0)
    handshake(snd, rcv)
    assert not snd.packed_frames and not rcv.packed_frames
    assert snd.welcome is not None and m.PACKED_FRAMES not in snd.welcome.capabilities
    frame = m.Frame(seq=1, dt_ms=0, kf=1, face=0, codes=[b"abc"])
    assert snd.send(frame) == m.encode(frame)


def test_a_relay_does_not_grant_it() -> None:
    """A relay passes frames on as they came, to receivers that join later and may not unpack them."""
    relay = p.RelayProtocol({"sender": TOKEN, "receiver": None}, 0.0)
    snd = p.SenderProtocol(TOKEN, 0.0)
    handshake(snd, relay)
    assert not snd.packed_frames
