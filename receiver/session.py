"""One sender's state on the receiver: identity assets, last keyframe, decoding of frames into render jobs.

Pure and synchronous: `handle()` takes a validated message and returns the replies to
send and, for a frame, the job to render. The server and the stream-file player both
drive it, so live and offline decode identically. A payload whose bytes no conforming sender
produces (a bomb, the wrong image format, a size over its bounds) raises ProtocolError naming the
field: the server closes that connection with an `error`, the player names the record.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec
import numpy as np

from facewire.shared.codec.frames import FrameDecodeError, FrameDecoder
from facewire.shared.codec.images import MAX_IDENTITY_PIXELS, decode_image
from facewire.shared.codec.landmarks import LandmarkDecoder
from facewire.shared.codec.predictive import CodeError, PayloadError
from facewire.shared.face.arcface import decode_embedding
from facewire.shared.types import FrameState, IdentityAsset, KeyframeState
from facewire.shared.wire import messages as m
from facewire.shared.wire.errors import ErrorCode, ProtocolError

log = logging.getLogger(__name__)


class AssetError(ValueError):
    """An identity asset that does not match its hash or cannot be used; `hostile` when its bytes do not
    decode or break a bound (the connection is closed), not when only its hash disagrees."""

    def __init__(self, message: str, field: str | None = None, hostile: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.hostile = hostile


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class RenderJob:
    identity: IdentityAsset | None
    keyframe: KeyframeState
    frame: FrameState
    received_us: int = 0  # wall clock, when the frame's message arrived
    decoded_us: int = 0  # wall clock, when it was decoded


class AssetStore:
    """Identity assets by sha256, most recently used kept (they cross the link once per receiver), at most
    `capacity` of them and `max_bytes` of decoded pixels. Shared by every session's decoding thread (a
    session that replaces another overlaps it briefly) and read on the loop (a welcome lists them)."""

    def __init__(self, capacity: int = 64, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._assets: OrderedDict[str, IdentityAsset] = OrderedDict()
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._assets)

    def get(self, asset_id: str) -> IdentityAsset | None:
        with self._lock:
            asset = self._assets.get(asset_id)
            if asset is not None:
                self._assets.move_to_end(asset_id)
            return asset

    def add(self, message: m.Identity) -> IdentityAsset:
        if message.image is None:
            raise AssetError("identity without an image")
        if hashlib.sha256(message.image).hexdigest() != message.asset:
            raise AssetError(f"identity image does not hash to {message.asset[:12]}...")
        try:
            rgb = decode_image(message.image, message.image_format or "", "image", max_pixels=MAX_IDENTITY_PIXELS)
        except PayloadError as exc:
            raise AssetError(f"identity image: {exc}", "image", hostile=True) from None
        image = np.ascontiguousarray(rgb[..., ::-1])
        del rgb
        landmarks = None
        if message.landmarks is not None:
            try:
                landmarks = LandmarkDecoder().decode(message.landmarks)
            except CodeError as exc:
                raise AssetError(f"identity landmarks: {exc}", "landmarks", hostile=True) from None
        try:
            embedding = None if message.embedding is None else decode_embedding(message.embedding)
        except ValueError as exc:
            raise AssetError(f"identity embedding: {exc}", "embedding", hostile=True) from None
        asset = IdentityAsset(asset_id=message.asset, image=image, landmarks=landmarks, embedding=embedding)
        with self._lock:
            self._assets[message.asset] = asset
            while len(self._assets) > self.capacity or (len(self._assets) > 1 and self._nbytes() > self.max_bytes):
                self._assets.popitem(last=False)
        return asset

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes()

    def _nbytes(self) -> int:
        return sum(asset.image.nbytes for asset in self._assets.values() if asset.image is not None)


@dataclass
class _IdentityAssembly:
    head: m.Identity  # carries the image's first piece
    pieces: list[bytes]


@dataclass
class Session:
    assets: AssetStore
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    identity: IdentityAsset | None = None
    sender_dropped: int = 0
    sender_stages_ms: tuple[float, ...] = ()  # the sender's own stage medians (its `stats`)
    # The asset the sender asked to be shown as, while its image has not arrived whole.
    wanted_asset: str | None = None
    decode_errors: int = 0
    frames_decoded: int = 0
    _keyframe_requested: bool = False
    _incoming: _IdentityAssembly | None = None  # an identity whose image is still arriving in parts

    @property
    def awaiting_identity(self) -> bool:
        """Frames are decoded but not shown: the sender asked to appear as an avatar whose image is still on its
        way, and until it is here the only face to draw is the sender's own, which they chose not to show."""
        return self.wanted_asset is not None and self.identity is None

    def handle(self, message: m.Message, received_us: int | None = None) -> tuple[list[m.Message], RenderJob | None]:
        """The replies to `message` and, for a frame, its render job (`received_us`: when the message
        arrived, wall clock, if not now). Raises ProtocolError (naming the field) when the message's
        bytes are hostile or damaged; the session's state is then as before."""
        try:
            return self._handle(message, now_us() if received_us is None else received_us)
        except MemoryError:
            # Every decoder checks declared sizes first; this is the last line, not the plan.
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"`{_tag(message)}` needs more memory than this receiver has") from None

    def _handle(self, message: m.Message, received_us: int) -> tuple[list[m.Message], RenderJob | None]:
        if isinstance(message, m.Frame):
            return self._frame(message, received_us)
        if isinstance(message, (m.Keyframe, m.KeyframePart)):
            return self._keyframe(message), None
        if isinstance(message, m.Setup):
            return self._setup(message), None
        if isinstance(message, m.Identity):
            return self._identity(message), None
        if isinstance(message, m.IdentityPart):
            return self._identity_part(message), None
        if isinstance(message, m.IdentitySwitch):
            return self._switch(message.asset), None
        if isinstance(message, m.Stats):
            self.sender_dropped = message.dropped
            self.sender_stages_ms = tuple(message.stages_ms)
        return [], None

    def _frame(self, message: m.Frame, received_us: int) -> tuple[list[m.Message], RenderJob | None]:
        try:
            state = self.decoder.decode_frame(message)
        except FrameDecodeError as exc:
            self.decode_errors += 1
            _raise_if_hostile(exc)
            if self._keyframe_requested:
                return [], None
            self._keyframe_requested = True
            log.info("cannot decode frame %d (%s): asking for a keyframe", message.seq, exc)
            return [m.KeyframeRequest(reason=str(exc)[:256])], None
        assert self.decoder.keyframe is not None
        self.frames_decoded += 1
        if self.awaiting_identity:
            return [], None
        return [], RenderJob(self.identity, self.decoder.keyframe, state, received_us, now_us())

    def _keyframe(self, message: m.Keyframe | m.KeyframePart) -> list[m.Message]:
        try:
            decode = self.decoder.decode_keyframe if isinstance(message, m.Keyframe) else self.decoder.decode_part
            complete = decode(message)  # type: ignore[arg-type]
        except FrameDecodeError as exc:
            self.decode_errors += 1
            _raise_if_hostile(exc)
            return [m.Error(code="bad_message", message=f"keyframe {message.kf}: {exc}"[:512], fatal=False),
                    m.KeyframeRequest(reason="keyframe did not decode")]
        if complete is not None:
            self._keyframe_requested = False
        return []

    def _setup(self, message: m.Setup) -> list[m.Message]:
        try:
            self.decoder.setup(message)
        except FrameDecodeError as exc:
            self.decode_errors += 1
            _raise_if_hostile(exc)
            return [m.Error(code="bad_message", message=str(exc)[:512], fatal=False),
                    m.KeyframeRequest(reason="a setup did not decode")]
        return []

    def _identity(self, message: m.Identity) -> list[m.Message]:
        if message.asset == "self":
            self.identity, self.wanted_asset = None, None
            return []
        if message.image is None:
            return self._switch(message.asset) if message.activate else []
        if message.parts > 1:
            self._incoming = _IdentityAssembly(message, [message.image])
            if message.activate:
                self.wanted_asset = message.asset
            log.info("identity %s: receiving its image in %d parts", message.asset[:12], message.parts)
            return []
        try:
            asset = self.assets.add(message)
        except AssetError as exc:
            if exc.hostile:
                raise ProtocolError(ErrorCode.BAD_ASSET, str(exc), exc.field) from None
            return [m.Error(code="bad_asset", message=str(exc)[:512], fatal=False)]
        if message.activate or self.wanted_asset == message.asset:
            self.identity = asset
            self.wanted_asset = None
        return []

    def _identity_part(self, message: m.IdentityPart) -> list[m.Message]:
        incoming = self._incoming
        if incoming is None or incoming.head.asset != message.asset or message.part != len(incoming.pieces):
            # A part of an image this session did not start (it came before us, or one went missing): ask again.
            self._incoming = None
            wanted = self.wanted_asset == message.asset
            return [m.Error(code="bad_asset", message=f"identity {message.asset[:12]}: part {message.part} out of order",
                            fatal=False), *([m.AssetRequest(asset=message.asset)] if wanted else [])]
        incoming.pieces.append(message.data)
        declared = incoming.head.image_bytes or 0
        received = sum(map(len, incoming.pieces))
        if received > declared or (len(incoming.pieces) == incoming.head.parts and received != declared):
            self._incoming = None
            raise ProtocolError(ErrorCode.BAD_ASSET, f"identity {message.asset[:12]}: its parts hold {received} bytes, "
                                f"it declared {declared}", "data")
        if len(incoming.pieces) < incoming.head.parts:
            if len(incoming.pieces) * 4 // incoming.head.parts > (len(incoming.pieces) - 1) * 4 // incoming.head.parts:
                log.info("identity %s: %d of %d bytes", message.asset[:12], received, declared)  # each quarter
            return []
        self._incoming = None
        whole = msgspec.structs.replace(incoming.head, image=b"".join(incoming.pieces), parts=1, image_bytes=None,
                                        activate=self.wanted_asset == message.asset)
        log.info("identity %s: its image arrived (%d bytes)", message.asset[:12], received)
        return self._identity(whole)

    def _switch(self, asset_id: str) -> list[m.Message]:
        if asset_id == "self":
            self.identity, self.wanted_asset = None, None
            return []
        asset = self.assets.get(asset_id)
        if asset is None:
            self.wanted_asset = asset_id
            arriving = self._incoming is not None and self._incoming.head.asset == asset_id
            return [] if arriving else [m.AssetRequest(asset=asset_id)]
        self.identity, self.wanted_asset = asset, None
        return []


def _raise_if_hostile(exc: FrameDecodeError) -> None:
    if exc.hostile:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, str(exc), exc.field) from None


def _tag(message: m.Message) -> str:
    return type(message).__name__.lower()
