"""The wire messages of protocol v1 as typed, constrained msgspec structs.

Each websocket binary frame carries one msgpack map whose `t` field names the type.
Decoding checks types, sizes, counts and ranges in one pass (msgspec) and then the
cross-field rules below; any failure raises `MessageValidationError` naming the field.
protocol.md is the normative description; this module must agree with it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import msgspec

from facewire.shared.wire.errors import MessageValidationError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

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
ImageFormat = Literal["webp", "jpeg", "png"]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Fps = Annotated[float, msgspec.Meta(gt=0.0, le=240.0)]


class _Message(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, frozen=True):
    pass


class Hello(_Message, frozen=True, tag="hello"):
    """Sender -> receiver, first message: versions it speaks, its token, capabilities."""

    versions: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=255)]], msgspec.Meta(min_length=1, max_length=16)]
    token: Annotated[str, msgspec.Meta(max_length=512)]
    role: Literal["sender"] = "sender"
    agent: ShortText = ""
    capabilities: Annotated[list[Name], msgspec.Meta(max_length=32)] = []


class Welcome(_Message, frozen=True, tag="welcome"):
    """Receiver -> sender: the chosen version, what the receiver can do and which assets it holds."""

    version: Annotated[int, msgspec.Meta(ge=1, le=255)]
    session: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8,64}$")]
    capabilities: Annotated[list[Name], msgspec.Meta(max_length=32)] = []
    renderers: Annotated[list[Name], msgspec.Meta(max_length=16)] = []
    assets: Annotated[list[AssetId], msgspec.Meta(max_length=1024)] = []
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=MAX_MESSAGE_BYTES)] = MAX_MESSAGE_BYTES


class Identity(_Message, frozen=True, tag="identity"):
    """Sender -> receiver: who the face should look like. `image` omitted when the receiver has it."""

    asset: AssetId
    image: ImageBytes | None = None
    image_format: ImageFormat | None = None
    landmarks: FieldBytes | None = None
    embedding: Annotated[bytes, msgspec.Meta(min_length=EMBEDDING_BYTES, max_length=EMBEDDING_BYTES)] | None = None
    activate: bool = True

    def __post_init__(self) -> None:
        if self.asset == "self" and self.image is not None:
            raise ValueError("`image` must be absent when asset is 'self' - at `$.image`")
        if (self.image is None) != (self.image_format is None):
            raise ValueError("`image` and `image_format` go together - at `$.image_format`")


class IdentitySwitch(_Message, frozen=True, tag="identity_switch"):
    """Sender -> receiver: show an identity the receiver already holds."""

    asset: AssetId


class AssetRequest(_Message, frozen=True, tag="asset_request"):
    """Receiver -> sender: send the image of an identity the receiver does not hold."""

    asset: AssetId


class Keyframe(_Message, frozen=True, tag="keyframe"):
    """Sender -> receiver: the sender's appearance (image, alpha, landmarks) at one instant."""

    kf: UInt32
    seq: UInt32
    ts_us: TimestampUs
    width: Side
    height: Side
    image: ImageBytes
    image_format: ImageFormat
    alpha: ImageBytes | None = None
    landmarks: FieldBytes | None = None


class Frame(_Message, frozen=True, tag="frame"):
    """Sender -> receiver, every frame: pose, expression (landmarks), alpha code, face state."""

    seq: UInt32
    ts_us: TimestampUs
    kf: UInt32
    face: Literal["tracked", "held", "lost"]
    confidence: Unit = 0.0
    pose: Annotated[list[float], msgspec.Meta(min_length=6, max_length=6)] | None = None
    landmarks: FieldBytes | None = None
    alpha: FieldBytes | None = None
    ref: UInt32 | None = None

    def __post_init__(self) -> None:
        if self.pose is not None:
            if not all(math.isfinite(v) for v in self.pose):
                raise ValueError("pose values must be finite - at `$.pose`")
            if not all(-180.0 <= v <= 180.0 for v in self.pose[:3]):
                raise ValueError("pose angles must lie in [-180, 180] degrees - at `$.pose`")
            if not all(abs(v) <= 4 * MAX_SIDE for v in self.pose[3:5]):
                raise ValueError("pose translation out of range - at `$.pose`")
            if not 0.0 < self.pose[5] <= 4 * MAX_SIDE:
                raise ValueError("pose scale must lie in (0, 16384] - at `$.pose`")
        if self.face == "lost" and self.landmarks is not None:
            raise ValueError("a lost face carries no landmarks - at `$.landmarks`")
        if self.ref is not None and self.ref >= self.seq:
            raise ValueError("`ref` must name an earlier frame - at `$.ref`")


class KeyframeRequest(_Message, frozen=True, tag="keyframe_request"):
    """Receiver -> sender: send a keyframe (no keyframe yet, or decoding lost its reference)."""

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


class Error(_Message, frozen=True, tag="error"):
    code: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]
    message: Annotated[str, msgspec.Meta(max_length=512)] = ""
    fatal: bool = True


class Bye(_Message, frozen=True, tag="bye"):
    reason: ShortText = ""


Message = (
    Hello | Welcome | Identity | IdentitySwitch | AssetRequest | Keyframe | Frame
    | KeyframeRequest | Ping | Pong | Stats | Error | Bye
)

SENDER_MESSAGES: tuple[type, ...] = (Hello, Identity, IdentitySwitch, Keyframe, Frame, Ping, Pong, Stats, Error, Bye)
RECEIVER_MESSAGES: tuple[type, ...] = (Welcome, AssetRequest, KeyframeRequest, Ping, Pong, Stats, Error, Bye)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)
_FIELD = re.compile(r"at `\$((?:\.[A-Za-z_]\w*|\[\d+\])*)`")


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate one message; raises MessageValidationError naming the field."""
    if len(data) > max_bytes:
        raise MessageValidationError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        message: Message = _decoder.decode(data)
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
