"""Keyframes and frames: from what the sender prepared to messages, and back to renderer inputs.

Keyframes carry only the person (facewire.shared.codec.keyframe: the matte's box, the room
replaced) as AVIF sized to a byte budget, and travel in parts between frames on a thin link. The
frame encoder runs on the uplink side at send time, so a frame dropped before sending is never
used as a prediction reference; the decoder must see every sent frame in order (websockets over
TCP guarantees that; a gap in the sequence numbers resets its prediction state, so only an intra
code decodes after one) and raises `FrameDecodeError` when it cannot follow, which makes the
receiver ask for a keyframe.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from facewire.shared.codec.fields import (
    FIELD_CODECS,
    CodedFrame,
    FieldDecoder,
    FieldEncoder,
    FrameDraft,
    Holding,
    Prepared,
)
from facewire.shared.codec.keyframe import (
    ALPHA_FACTOR,
    ALPHA_QUALITY,
    AV1,
    decode_keyframe_alpha,
    decode_person,
    encode_keyframe_alpha,
    encode_person_scaled,
    person_only,
    raw_alpha,
    raw_bytes,
    raw_picture,
)
from facewire.shared.codec.predictive import CodeError, PayloadError
from facewire.shared.types import Alpha, FrameAnalysis, FrameState, Image, KeyframeState, Landmarks
from facewire.shared.wire import messages as m

Box = tuple[int, int, int, int]
# Above this AVIF quality a keyframe grows fast for little: 9.7 KB and face SSIM 0.981 at 60 on the clips'
# first frames, where 95 costs ~45 KB (helper R6's measurements); the residual layer fills in the rest.
KEYFRAME_MAX_QUALITY = 60
# Keyframes a receiver holds (the newest complete ones): a frame may be drawn from any of them, so a
# sender returns to an earlier look (a smile, the mouth open) by naming it instead of sending it again.
REFERENCES = 4


class FrameDecodeError(ValueError):
    """The decoder cannot produce this frame (no keyframe yet, or a lost reference): the receiver asks for a
    keyframe. `hostile` when the bytes themselves are bad (a PayloadError: no conforming sender sends them),
    which closes the connection with an error naming `field`."""

    def __init__(self, message: str, field: str | None = None, hostile: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.hostile = hostile


def _wrapped(exc: CodeError, message: str, field: str) -> FrameDecodeError:
    """A codec's error as the decoder's, keeping whether the bytes were bad and the most precise field."""
    if isinstance(exc, PayloadError):
        return FrameDecodeError(message, exc.field or field, hostile=True)
    return FrameDecodeError(message, field)


@dataclass(frozen=True)
class KeyframePackage:
    """A keyframe coded on the analysing thread, ready to send."""

    kf: int
    ts_us: int
    size: tuple[int, int]
    box: Box
    image: bytes
    quality: int
    alpha: bytes
    face_codes: Mapping[str, bytes] = field(default_factory=dict)  # the face's intra code by each offered face code
    scale: int = 1  # the picture is the box at 1/scale
    raw: bool = False  # sized for a session with `keyframe-av1` (picture and alpha without their AVIF container)

    @property
    def nbytes(self) -> int:
        # the message carries one of the face codes, the session's: the preferred one is the smallest
        image, alpha = (raw_bytes(self.image), len(raw_alpha(self.alpha))) if self.raw else (len(self.image), len(self.alpha))
        return image + alpha + min(map(len, self.face_codes.values()), default=0)

    def messages(self, part_bytes: int, face_code: str | None = None, raw: bool = False) -> list[m.Keyframe | m.KeyframePart]:
        """The keyframe as a `keyframe` message (its `landmarks` in the session's `face_code`) and as many
        `keyframe_part`s as pieces of at most `part_bytes` of picture need (at most MAX_KEYFRAME_PARTS); `raw`: for a
        session with `keyframe-av1` (picture and alpha as AV1 without their AVIF container, where it is libavif's)."""
        picture: tuple[bytes, m.KeyframeFormat] = raw_picture(self.image) if raw else (self.image, "avif")
        image, image_format = picture
        size = max(part_bytes, -(-len(image) // m.MAX_KEYFRAME_PARTS))
        pieces = [image[i:i + size] for i in range(0, len(image), size)]
        head = m.Keyframe(
            kf=self.kf, ts_us=self.ts_us, width=self.size[0], height=self.size[1],
            image=pieces[0], image_format=image_format, box=list(self.box),
            alpha=raw_alpha(self.alpha) if raw else self.alpha,
            landmarks=None if face_code is None else self.face_codes.get(face_code),
            parts=len(pieces), image_bytes=len(image) if len(pieces) > 1 else None, scale=self.scale,
        )
        return [head, *(m.KeyframePart(kf=self.kf, part=i, data=piece) for i, piece in enumerate(pieces[1:], 1))]


def build_keyframe(analysis: FrameAnalysis, kf: int, face: Prepared | None, face_codes: Mapping[str, bytes] | None,
                   max_image_bytes: int, quality_hint: int = 40, scale_hint: int = 1,
                   alpha_factor: int = ALPHA_FACTOR, alpha_quality: int = ALPHA_QUALITY,
                   max_total_bytes: int | None = None, raw: bool = False) -> tuple[KeyframePackage, KeyframeState]:
    """The person of this frame as a keyframe whose picture fits `max_image_bytes` (the highest AVIF
    quality that does, at the finest scale from `scale_hint` on that fits; KeyframeTooLarge when none
    does), and exactly what the receiver will decode from it (the sender's replica of the receiver draws
    from that). `face_codes`: the face's intra code in each face code the sender offers; the session's
    goes in the message. `alpha_factor`, `alpha_quality`: the alpha's downsampling and AVIF quality (1/2 q30
    ~1.2 KB, 1/4 q30 ~0.8 KB, 1/4 q10 ~0.63 KB at 512 px). `max_total_bytes`: when given, the picture fits what
    the alpha and the smallest face code leave of it too. `raw`: the bytes are counted as a session with
    `keyframe-av1` carries them (without the AVIF containers, ~270 bytes each: the picture gets them)."""
    frame = analysis.foreground if analysis.foreground is not None else analysis.frame.image
    height, width = frame.shape[:2]
    alpha = analysis.alpha if analysis.alpha is not None else np.ones((height, width), np.float32)
    person = person_only(frame, alpha)
    alpha_code = encode_keyframe_alpha(alpha, person.box, alpha_factor, alpha_quality)
    if max_total_bytes is not None:
        rest = len(raw_alpha(alpha_code) if raw else alpha_code) + min(map(len, (face_codes or {}).values()), default=0)
        max_image_bytes = max(min(max_image_bytes, max_total_bytes - rest), 1)
    coded = encode_person_scaled(person, max_image_bytes, start=min(quality_hint, KEYFRAME_MAX_QUALITY),
                                 max_quality=KEYFRAME_MAX_QUALITY, scale=scale_hint, max_scale=m.MAX_KEYFRAME_SCALE,
                                 measure=raw_bytes if raw else len)
    state = KeyframeState(
        kf=kf, image=decode_person(coded.data, person.box, (width, height), scale=coded.scale),
        alpha=decode_keyframe_alpha(alpha_code, person.box, (width, height)),
        landmarks=None if face is None else face.landmarks,
    )
    package = KeyframePackage(kf, analysis.frame.ts_us, (width, height), person.box, coded.data, coded.quality,
                              alpha_code, dict(face_codes or {}), coded.scale, raw)
    return package, state


@dataclass
class _Assembly:
    """A keyframe whose picture is still arriving in parts."""

    head: m.Keyframe
    pieces: list[bytes]

    @property
    def complete(self) -> bool:
        return len(self.pieces) == self.head.parts


@dataclass
class FrameEncoder:
    """Turns coded frames into `frame` messages with the session's negotiated codes; `intra_interval`
    bounds how long a prediction chain runs."""

    codes: Sequence[str] = ("landmarks",)
    intra_interval: int = 150
    _fields: list[FieldEncoder] = field(init=False, repr=False)
    _since_intra: int | None = None  # None: the next frame is intra
    _lost: bool = True  # the receiver holds no state: the next intra frame restarts every code

    def __post_init__(self) -> None:
        self.use(self.codes)

    def use(self, codes: Sequence[str]) -> None:
        """Code frames with these capabilities from now on (a session negotiated them); the next frame is intra."""
        self.codes = list(codes)
        self._fields = [FIELD_CODECS[name].new_encoder() for name in self.codes]
        self.force_intra()

    def force_intra(self) -> None:
        """The receiver lost the prediction chain: every code restarts, the layer's video included."""
        self._since_intra = None
        self._lost = True

    def setup(self, code: str, payload: bytes) -> None:
        """A setup for `code` is going to the receiver (the setup message precedes the frames that need it)."""
        self._fields[self.codes.index(code)].setup(payload)

    def frame(self, coded: CodedFrame, seq: int, kf: int, keyframe_ts_us: int) -> m.Frame:
        intra = self._since_intra is None or self._since_intra >= self.intra_interval
        self._since_intra = 0 if intra else (self._since_intra or 0) + 1
        if intra:
            # An intra frame restarts every prediction chain, so a receiver can join from it alone. A persistent
            # code restarts only when the receiver lost it: a layer's video (a key frame costs seconds of its
            # rate) restarts anyway with each keyframe, which is where a late joiner picks it up; held alpha
            # corrections are resent round-robin after each intra frame.
            for coder, name in zip(self._fields, self.codes, strict=True):
                if self._lost or not FIELD_CODECS[name].persistent:
                    coder.reset()
            self._lost = False
        coded = dataclasses.replace(coded, drawn_from=kf)
        analysis = coded.analysis
        dt_ms = max(0, round((analysis.frame.ts_us - keyframe_ts_us) / 1000))
        return m.Frame(seq=seq, dt_ms=dt_ms, kf=kf, face=m.FACE_STATES.index(analysis.face_state),
                       codes=[coder.encode(coded, intra) for coder in self._fields], intra=intra)


@dataclass
class FrameDecoder:
    """Receiver side: setups, keyframes (in parts) and frames back into renderer inputs at the sender's geometry."""

    codes: Sequence[str] = ("landmarks",)
    keyframe: KeyframeState | None = None  # the one the last decoded frame was drawn from
    _keyframe_ts_us: int = 0
    # The last REFERENCES complete keyframes (with their ts_us), oldest first: a frame may be drawn from any.
    _held: OrderedDict[int, tuple[KeyframeState, int]] = field(default_factory=OrderedDict)
    _assembly: _Assembly | None = None
    _fields: list[FieldDecoder] = field(init=False, repr=False)
    _last_seq: int | None = None

    def __post_init__(self) -> None:
        self._fields = [FIELD_CODECS[name].new_decoder() for name in self.codes]

    def setup(self, message: m.Setup) -> None:
        if message.code not in self.codes:
            raise FrameDecodeError(f"setup for {message.code!r}, which this session did not negotiate")
        try:
            self._fields[list(self.codes).index(message.code)].setup(message.payload)
        except CodeError as exc:
            raise _wrapped(exc, f"setup for {message.code}: {exc}", "payload") from None

    def decode_keyframe(self, message: m.Keyframe) -> KeyframeState | None:
        """The keyframe, or None while parts of its picture are still to come. Keyframes do not interrupt
        the frames' prediction: only a gap in the frames' sequence numbers does."""
        self._assembly = _Assembly(message, [message.image])
        return self._complete()

    def decode_part(self, message: m.KeyframePart) -> KeyframeState | None:
        assembly = self._assembly
        if assembly is None or assembly.head.kf != message.kf or message.part != len(assembly.pieces):
            raise FrameDecodeError(f"keyframe part {message.part} of keyframe {message.kf} out of order")
        assembly.pieces.append(message.data)
        if sum(map(len, assembly.pieces)) > (assembly.head.image_bytes or 0):
            raise FrameDecodeError(f"keyframe {message.kf}'s parts exceed its declared {assembly.head.image_bytes} bytes",
                                   "data", hostile=True)
        return self._complete()

    def _follow(self, seq: int) -> None:
        """`seq` arrived: after a gap the codes' prediction state is gone, so only an intra code decodes."""
        if self._last_seq is None or seq != (self._last_seq + 1) % 2**32:
            for coder in self._fields:
                coder.reset()
        self._last_seq = seq

    def _complete(self) -> KeyframeState | None:
        assembly = self._assembly
        assert assembly is not None
        if not assembly.complete:
            return None
        self._assembly = None
        head = assembly.head
        image = b"".join(assembly.pieces)
        if head.image_bytes is not None and len(image) != head.image_bytes:
            raise FrameDecodeError(f"keyframe {head.kf} holds {len(image)} bytes, it declared {head.image_bytes}",
                                   "image_bytes", hostile=True)
        state = KeyframeState(kf=head.kf, image=self._picture(head, image), alpha=self._alpha(head),
                              landmarks=self._landmarks(head))
        self._held.pop(head.kf, None)
        self._held[head.kf] = (state, head.ts_us)
        while len(self._held) > REFERENCES:
            self._held.popitem(last=False)
        return state

    def _picture(self, head: m.Keyframe, image: bytes) -> Image:
        if head.image_format not in ("avif", AV1):
            raise FrameDecodeError(f"keyframe image format {head.image_format!r}: this receiver decodes avif and av1",
                                   "image_format", hostile=True)
        try:
            return decode_person(image, _box(head), (head.width, head.height), scale=head.scale, fmt=head.image_format)
        except CodeError as exc:
            raise _wrapped(exc, f"keyframe {head.kf}: {exc}", "image") from None

    def _alpha(self, head: m.Keyframe) -> Alpha | None:
        try:
            return None if head.alpha is None else decode_keyframe_alpha(head.alpha, _box(head), (head.width, head.height))
        except CodeError as exc:
            raise _wrapped(exc, f"keyframe {head.kf} alpha: {exc}", "alpha") from None

    def _landmarks(self, head: m.Keyframe) -> Landmarks | None:
        face = next((coder for coder, name in zip(self._fields, self.codes, strict=True)
                     if FIELD_CODECS[name].role == "face"), None)
        if head.landmarks is None or face is None:
            return None
        try:
            return face.decode_keyframe(head.landmarks)
        except CodeError as exc:
            raise _wrapped(exc, f"keyframe {head.kf} landmarks: {exc}", "landmarks") from None

    def decode_frame(self, message: m.Frame) -> FrameState:
        if not self._held:
            raise FrameDecodeError("no keyframe yet")
        reference = self._held.get(message.kf)
        if reference is None:
            raise FrameDecodeError(f"frame {message.seq} is drawn from keyframe {message.kf}, this receiver holds "
                                   f"{list(self._held)}")
        self.keyframe, self._keyframe_ts_us = reference
        if len(message.codes) != len(self._fields):
            raise FrameDecodeError(f"frame {message.seq} carries {len(message.codes)} codes, the session negotiated "
                                   f"{len(self._fields)} ({', '.join(self.codes)})")
        self._follow(message.seq)
        draft = FrameDraft((self.keyframe.image.shape[1], self.keyframe.image.shape[0]))
        for index, (coder, payload) in enumerate(zip(self._fields, message.codes, strict=True)):
            if payload is None:
                continue
            try:
                coder.decode(payload, draft)
            except CodeError as exc:
                self._last_seq = None
                raise _wrapped(exc, f"frame {message.seq}: {exc}", f"codes[{index}]") from None
        for coder in self._fields:
            if isinstance(coder, Holding):
                coder.hold(draft)
        return FrameState(
            seq=message.seq, ts_us=self._keyframe_ts_us + message.dt_ms * 1000, face=message.face_state,
            landmarks=draft.landmarks, alpha=draft.alpha, layer=draft.layer, body=draft.body,
            alpha_fix=draft.alpha_fix,
        )


def _box(head: m.Keyframe) -> Box:
    x, y, w, h = head.box if head.box is not None else (0, 0, head.width, head.height)
    return x, y, w, h
