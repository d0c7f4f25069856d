"""The wire messages of protocol v2 as typed, constrained msgspec structs.

Each websocket binary frame carries one msgpack value. Control and state messages are maps whose
`t` field names the type; the two stream messages sent many times a second (`frame`, `ack`) are
arrays whose first item names the type, so they carry no field names (a frame is ~15 bytes of
header, protocol.md 2; ~7 packed, where the session negotiated `frame-packed`). Decoding checks types,
sizes, counts and ranges in one pass (msgspec) and then the cross-field rules below; any failure raises
`MessageValidationError` naming the field.
protocol.md is the normative description; this module must agree with it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from facewire.shared.wire.errors import MessageValidationError
from facewire.shared.wire.varint import VarintError, encode_uvarint, read_uvarint

PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (2,)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_FRAME_MESSAGE_BYTES = 128 * 1024
MAX_IMAGE_BYTES = 3 * 1024 * 1024
MAX_FRAME_FIELD_BYTES = 96 * 1024
MAX_SIDE = 4096
MIN_SIDE = 16
EMBEDDING_BYTES = 512 * 2  # 512 float16 values

UInt32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
TimestampUs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Side = Annotated[int, msgspec.Meta(ge=MIN_SIDE, le=MAX_SIDE)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]
AssetId = Annotated[str, msgspec.Meta(pattern=r"^(self|[0-9a-f]{64})$")]
ImageBytes = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_IMAGE_BYTES)]
FieldBytes = Annotated[bytes, msgspec.Meta(max_length=MAX_FRAME_FIELD_BYTES)]
ImageFormat = Literal["avif", "webp", "jpeg", "png"]
# A keyframe's picture may also be `av1` (message form `keyframe-av1`): the OBUs of a still AVIF, no container.
KeyframeFormat = Literal["avif", "webp", "jpeg", "png", "av1"]
Box = Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=MAX_SIDE)]], msgspec.Meta(min_length=4, max_length=4)]
MAX_CODES = 8
MAX_ACKS = 64
Fps = Annotated[float, msgspec.Meta(gt=0.0, le=240.0)]


class _Message(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, frozen=True):
    pass


class Hello(_Message, frozen=True, tag="hello"):
    """The dialling side's first message: versions it speaks, its token, capabilities. A sender dials a
    receiver or publishes into a relay's room (`role` sender: capabilities are the codes it offers); a
    receiver joining a relay's room says `role` receiver (capabilities: the codes it decodes)."""

    versions: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=255)]], msgspec.Meta(min_length=1, max_length=16)]
    token: Annotated[str, msgspec.Meta(max_length=512)]
    role: Literal["sender", "receiver"] = "sender"
    agent: ShortText = ""
    capabilities: Annotated[list[Name], msgspec.Meta(max_length=32)] = []
    # Random per sender process: a hello with the instance of the session being shown replaces it (the
    # sender reconnected over a half-open link) instead of being refused as `busy`.
    instance: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{16,64})?$")] = ""


class Welcome(_Message, frozen=True, tag="welcome"):
    """Receiver -> sender: the chosen version, what the receiver can do and which assets it holds."""

    version: Annotated[int, msgspec.Meta(ge=1, le=255)]
    session: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8,64}$")]
    capabilities: Annotated[list[Name], msgspec.Meta(max_length=32)] = []
    renderers: Annotated[list[Name], msgspec.Meta(max_length=16)] = []
    assets: Annotated[list[AssetId], msgspec.Meta(max_length=1024)] = []
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MAX_MESSAGE_BYTES)] = MAX_MESSAGE_BYTES


MAX_IDENTITY_PARTS = 1024


class Identity(_Message, frozen=True, tag="identity"):
    """Sender -> receiver: who the face should look like. `image` omitted when the receiver has it.

    On a thin link the image travels in `parts` pieces, as a keyframe's picture does: this message carries
    the first, `identity_part` messages the rest, between frames (a 90 KB photo whole held a 24-kbps link
    for 30 s, and the connection timed out before it arrived).
    """

    asset: AssetId
    image: ImageBytes | None = None
    image_format: ImageFormat | None = None
    landmarks: FieldBytes | None = None
    embedding: Annotated[bytes, msgspec.Meta(min_length=EMBEDDING_BYTES, max_length=EMBEDDING_BYTES)] | None = None
    activate: bool = True
    parts: Annotated[int, msgspec.Meta(ge=1, le=MAX_IDENTITY_PARTS)] = 1
    image_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_IMAGE_BYTES)] | None = None

    def __post_init__(self) -> None:
        if self.asset == "self" and self.image is not None:
            raise ValueError("`image` must be absent when asset is 'self' - at `$.image`")
        if (self.image is None) != (self.image_format is None):
            raise ValueError("`image` and `image_format` go together - at `$.image_format`")
        if (self.parts > 1) != (self.image_bytes is not None) or (self.parts > 1 and self.image is None):
            raise ValueError("`image_bytes` goes with `parts` > 1 and an `image` - at `$.image_bytes`")
        if self.image is not None and self.image_bytes is not None and len(self.image) >= self.image_bytes:
            raise ValueError("the first part must be shorter than the whole image - at `$.image`")


class IdentityPart(_Message, frozen=True, tag="identity_part"):
    """Sender -> receiver: the next piece of an identity's image (`part` counts from 1)."""

    asset: AssetId
    part: Annotated[int, msgspec.Meta(ge=1, le=MAX_IDENTITY_PARTS - 1)]
    data: ImageBytes


class IdentitySwitch(_Message, frozen=True, tag="identity_switch"):
    """Sender -> receiver: show an identity the receiver already holds."""

    asset: AssetId


class AssetRequest(_Message, frozen=True, tag="asset_request"):
    """Receiver -> sender: send the image of an identity the receiver does not hold."""

    asset: AssetId


MAX_KEYFRAME_PARTS = 64
MAX_KEYFRAME_SCALE = 4


class Keyframe(_Message, frozen=True, tag="keyframe"):
    """Sender -> receiver: the sender's appearance at one instant: the person's picture (only the
    person: `box` is where it lies in the frame), its alpha code and the face code of its landmarks.

    On a thin link the picture travels in `parts` pieces: this message carries the first, and
    `keyframe_part` messages the rest, between frames, so frames never wait behind a whole picture.
    """

    kf: UInt32
    ts_us: TimestampUs
    width: Side
    height: Side
    image: ImageBytes
    image_format: KeyframeFormat
    box: Box | None = None
    alpha: ImageBytes | None = None
    landmarks: FieldBytes | None = None
    parts: Annotated[int, msgspec.Meta(ge=1, le=MAX_KEYFRAME_PARTS)] = 1
    image_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_IMAGE_BYTES)] | None = None
    # The picture is the box at 1/scale (rounded up): a thin link gets a softer picture rather than none.
    scale: Annotated[int, msgspec.Meta(ge=1, le=MAX_KEYFRAME_SCALE)] = 1

    def __post_init__(self) -> None:
        if self.box is not None:
            x, y, w, h = self.box
            if w < 1 or h < 1 or x + w > self.width or y + h > self.height:
                raise ValueError("`box` must lie inside the frame - at `$.box`")
        if (self.parts > 1) != (self.image_bytes is not None):
            raise ValueError("`image_bytes` goes with `parts` > 1 - at `$.image_bytes`")
        if self.image_bytes is not None and len(self.image) >= self.image_bytes:
            raise ValueError("the first part must be shorter than the whole image - at `$.image`")


class KeyframePart(_Message, frozen=True, tag="keyframe_part"):
    """Sender -> receiver: the next piece of a keyframe's picture (`part` counts from 1)."""

    kf: UInt32
    part: Annotated[int, msgspec.Meta(ge=1, le=MAX_KEYFRAME_PARTS - 1)]
    data: ImageBytes


class Setup(_Message, frozen=True, tag="setup"):
    """Sender -> receiver, state: what a code needs before it can decode frames (e.g. the sender's
    neutral face for the expression code), sent when it changes, before the frames that use it."""

    code: Name
    payload: FieldBytes


# The sender's stages a frame passes, whose medians its `stats` report: waiting for analysis after
# capture, analysis, coding, and waiting in the uplink until sent.
SENDER_STAGES = ("capture", "analysis", "coding", "queue")
FACE_STATES: tuple[Literal["tracked", "held", "lost"], ...] = ("tracked", "held", "lost")


class Frame(msgspec.Struct, tag="f", array_like=True, forbid_unknown_fields=True, frozen=True):
    """Sender -> receiver, every frame, as an array: sequence number, capture time in ms after its
    keyframe's `ts_us`, the keyframe it is drawn from, the face state (index into FACE_STATES), one
    payload per negotiated code, in the order the session negotiated them (protocol.md 3.3), and
    whether every code is intra: a receiver that missed frames (or joins a relay's room late) can decode
    from an intra frame on, and a relay reads this flag, not the codes, to know where it may resume."""

    seq: UInt32
    dt_ms: UInt32
    kf: UInt32
    face: Annotated[int, msgspec.Meta(ge=0, le=len(FACE_STATES) - 1)]
    codes: Annotated[list[FieldBytes | None], msgspec.Meta(max_length=MAX_CODES)] = []
    intra: bool = False

    @property
    def face_state(self) -> Literal["tracked", "held", "lost"]:
        return FACE_STATES[self.face]


class Ack(msgspec.Struct, tag="a", array_like=True, forbid_unknown_fields=True, frozen=True):
    """Receiver -> sender, a few times a second: [seq, receive time in µs of the receiver's clock]
    for each frame received since the last ack (the sender's rate control reads the link from them)."""

    frames: Annotated[list[tuple[UInt32, TimestampUs]], msgspec.Meta(min_length=1, max_length=MAX_ACKS)]


class KeyframeRequest(_Message, frozen=True, tag="keyframe_request"):
    """Receiver -> sender: send a keyframe (no keyframe yet, or decoding lost its reference)."""

    reason: ShortText = ""


class IntraRequest(_Message, frozen=True, tag="intra_request"):
    """Receiver (or relay) -> sender: make the next frame intra. The asker holds the keyframe but not the
    frames' prediction chain (it missed frames, or joins a relay's room mid-stream), so a new keyframe
    would cost the link a picture for nothing."""

    reason: ShortText = ""


class Ping(_Message, frozen=True, tag="ping"):
    nonce: UInt32
    ts_us: TimestampUs


class Pong(_Message, frozen=True, tag="pong"):
    nonce: UInt32
    ts_us: TimestampUs


class Stats(_Message, frozen=True, tag="stats"):
    """Either side: counters for the last interval, informational only."""

    fps: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] = 0.0
    kbps: Annotated[float, msgspec.Meta(ge=0.0, le=1e6)] = 0.0
    frames: Annotated[int, msgspec.Meta(ge=0)] = 0
    dropped: Annotated[int, msgspec.Meta(ge=0)] = 0
    # The sender's stage medians over the interval, ms, in SENDER_STAGES order (protocol.md 3.6).
    stages_ms: Annotated[list[Annotated[float, msgspec.Meta(ge=0.0, le=1e6)]], msgspec.Meta(max_length=8)] = []


class Error(_Message, frozen=True, tag="error"):
    code: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]
    message: Annotated[str, msgspec.Meta(max_length=512)] = ""
    fatal: bool = True


class Bye(_Message, frozen=True, tag="bye"):
    reason: ShortText = ""


class Source(_Message, frozen=True, tag="source"):
    """Relay -> joined receiver: the messages that follow come from this sender of the room, coded with
    these codes; the receiver starts a new session (as when a sender connects to it directly).
    `senders` names everyone publishing in the room now; `name` is empty when nobody is."""

    name: Annotated[str, msgspec.Meta(pattern=r"^([a-z0-9][a-z0-9_.:-]{0,63})?$")]
    codes: Annotated[list[Name], msgspec.Meta(max_length=MAX_CODES)] = []
    senders: Annotated[list[Name], msgspec.Meta(max_length=256)] = []


ControlMessage = (
    Hello | Welcome | Identity | IdentityPart | IdentitySwitch | AssetRequest | Keyframe | KeyframePart | Setup
    | KeyframeRequest | IntraRequest | Ping | Pong | Stats | Error | Bye | Source
)
StreamMessage = Frame | Ack
Message = ControlMessage | StreamMessage

# Capabilities about the form of the messages rather than a frame code (protocol.md 3.3), offered in `hello` and
# granted in `welcome` like codes; a peer that does not list one is sent the plain form.
PACKED_FRAMES = "frame-packed"
# A keyframe's picture and alpha as AV1 without their AVIF container (image_format `av1`, alpha version 2, protocol.md
# 7.3): ~270 bytes less for each, ~540 a keyframe.
KEYFRAME_AV1 = "keyframe-av1"
WIRE_CAPABILITIES = (PACKED_FRAMES, KEYFRAME_AV1)

SENDER_MESSAGES: tuple[type, ...] = (Hello, Identity, IdentityPart, IdentitySwitch, Keyframe, KeyframePart, Setup, Frame,
                                     Ping, Pong, Stats, Error, Bye)
RECEIVER_MESSAGES: tuple[type, ...] = (Welcome, AssetRequest, KeyframeRequest, IntraRequest, Ack, Ping, Pong, Stats,
                                       Error, Bye)

# How a relay treats what a sender publishes (protocol.md 7). State: what a receiver must hold before it can
# decode the sender's frames; the relay keeps each sender's current state and gives all of it to a receiver that
# joins, and never drops it for a slow one. Stream: superseded by the next one of its kind; a slow receiver loses
# stale ones (latest wins). Everything else is between the two ends of one connection (hop by hop).
STATE_MESSAGES: tuple[type, ...] = (Identity, IdentityPart, IdentitySwitch, Keyframe, KeyframePart, Setup)
STREAM_MESSAGES: tuple[type, ...] = (Frame, Stats)
# A receiver that joined a relay's room is sent what a sender sends (its hello aside) and `source`; it sends
# what a receiver sends (its welcome aside) and its `hello`.
JOINED_RECEIVER_GETS: tuple[type, ...] = (Welcome, Source, *STATE_MESSAGES, *STREAM_MESSAGES, Ping, Pong, Error, Bye)
JOINED_RECEIVER_SENDS: tuple[type, ...] = (Hello, AssetRequest, KeyframeRequest, IntraRequest, Ack, Ping, Pong, Stats,
                                           Error, Bye)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ControlMessage)
_stream_decoder = msgspec.msgpack.Decoder(StreamMessage)
# The first byte of a msgpack array (fixarray, array 16, array 32): a stream message.
_ARRAY_HEADS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_FIELD = re.compile(r"at `\$((?:\.[A-Za-z_]\w*|\[\d+\])*)`")


def encode(message: Message, packed_frames: bool = False) -> bytes:
    """The message's bytes; a `frame` in the packed form (protocol.md 2, `frame-packed`) when `packed_frames`."""
    if packed_frames and isinstance(message, Frame):
        return encode_packed_frame(message)
    return _encoder.encode(message)


# A packed frame (protocol.md 2): one head byte 0b0110_0ffi (i: intra, ff: face state), then seq, dt_ms and kf as
# LEB128 varints, then each code as a varint n (0: nil, else n - 1 bytes follow) up to the end. The head is a
# msgpack positive fixint, which no plain message starts with, so both forms decode without knowing which was
# negotiated. ~7 bytes of header where the msgpack array takes ~15 (a 6-kbps link carries ~25 bytes a frame).
_PACKED_MASK, _PACKED_TAG = 0xF8, 0x60
_VARINT_BYTES = 5  # a u32


def encode_packed_frame(frame: Frame) -> bytes:
    head = _PACKED_TAG | frame.face << 1 | int(frame.intra)
    parts = [bytes([head]), encode_uvarint(frame.seq), encode_uvarint(frame.dt_ms), encode_uvarint(frame.kf)]
    for code in frame.codes:
        parts += [b"\x00"] if code is None else [encode_uvarint(len(code) + 1), code]
    return b"".join(parts)


def _read_varint(data: bytes, offset: int, field: str) -> tuple[int, int]:
    try:
        value, offset = read_uvarint(data, offset, _VARINT_BYTES)
    except VarintError as exc:
        raise MessageValidationError(f"packed frame's {field}: {exc}", field) from None
    if value > 2**32 - 1:
        raise MessageValidationError(f"{field} {value} exceeds a u32", field)
    return value, offset


def decode_packed_frame(data: bytes) -> Frame:
    """A packed frame back to a `Frame`, every field checked as the plain form's decoding checks it."""
    if len(data) > MAX_FRAME_MESSAGE_BYTES:
        raise MessageValidationError(f"frame message of {len(data)} bytes exceeds {MAX_FRAME_MESSAGE_BYTES}")
    head = data[0]
    if head & _PACKED_MASK != _PACKED_TAG:
        raise MessageValidationError(f"not a packed frame (head byte {head:#04x})")
    face = head >> 1 & 0x3
    if face >= len(FACE_STATES):
        raise MessageValidationError(f"face state {face} is not one of 0..{len(FACE_STATES) - 1}", "face")
    seq, offset = _read_varint(data, 1, "seq")
    dt_ms, offset = _read_varint(data, offset, "dt_ms")
    kf, offset = _read_varint(data, offset, "kf")
    codes: list[bytes | None] = []
    while offset < len(data):
        field = f"codes[{len(codes)}]"
        if len(codes) == MAX_CODES:
            raise MessageValidationError(f"more than {MAX_CODES} codes", "codes")
        size, offset = _read_varint(data, offset, field)
        if size - 1 > MAX_FRAME_FIELD_BYTES:
            raise MessageValidationError(f"code of {size - 1} bytes exceeds {MAX_FRAME_FIELD_BYTES}", field)
        if offset + max(size - 1, 0) > len(data):
            raise MessageValidationError("packed frame cut short", field)
        codes.append(None if size == 0 else data[offset:offset + size - 1])
        offset += max(size - 1, 0)
    return Frame(seq=seq, dt_ms=dt_ms, kf=kf, face=face, codes=codes, intra=bool(head & 1))


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one message; raises MessageValidationError naming the field."""
    if len(data) > max_bytes:
        raise MessageValidationError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if data[:1] and data[0] & _PACKED_MASK == _PACKED_TAG:
        return decode_packed_frame(data)
    try:
        message: Message = (_stream_decoder if data[:1] and data[0] in _ARRAY_HEADS else _decoder).decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _FIELD.search(text)
        field = match.group(1).lstrip(".") if match and match.group(1) else None
        raise MessageValidationError(_FIELD.sub("", text).rstrip(" -"), field or _tag_field(text)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        # msgspec lets invalid UTF-8 and over-deep nesting through as these two, not as DecodeError.
        raise MessageValidationError(f"not a msgpack message: {exc}") from None
    if isinstance(message, Frame) and len(data) > MAX_FRAME_MESSAGE_BYTES:
        raise MessageValidationError(f"frame message of {len(data)} bytes exceeds {MAX_FRAME_MESSAGE_BYTES}")
    return message


def _tag_field(text: str) -> str | None:
    named = re.search(r"(?:unknown|missing required) field `([^`]+)`", text)
    if named:
        return named.group(1)
    return "t" if "`t`" in text else None
