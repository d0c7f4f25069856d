"""Feature encoding of analysed frames into `keyframe` and `frame` messages, and back.

The encoder runs on the uplink side at send time, so a frame dropped before sending is
never used as a prediction reference; the decoder must see every sent frame in order
(websockets over TCP guarantees that; a gap in the sequence numbers resets its prediction
state, so only an intra code decodes after one) and raises `FrameDecodeError` when it cannot
follow, which makes the receiver ask for a keyframe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from facewire.shared.codec.fields import FIELD_CODECS, FieldDecoder, FieldEncoder, FrameDraft
from facewire.shared.codec.landmarks import LandmarkDecoder, LandmarkEncoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.types import Alpha, FrameAnalysis, FrameState, Image, KeyframeState
from facewire.shared.wire import messages as m

KEYFRAME_QUALITY = 90


class FrameDecodeError(ValueError):
    """The decoder cannot produce this frame (no keyframe yet, or a lost reference)."""


def encode_image(image: Image, quality: int = KEYFRAME_QUALITY) -> bytes:
    ok, data = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError("WebP encoding failed")
    return data.tobytes()


def encode_alpha_png(alpha: Alpha) -> bytes:
    ok, data = cv2.imencode(".png", np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def decode_image(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise FrameDecodeError("image does not decode")
    return image


DEFAULT_CODES = ("landmarks", "alpha")


@dataclass
class FrameEncoder:
    """Turns FrameAnalysis into messages with the session's negotiated codes (facewire.shared.codec.fields);
    `intra_interval` bounds how long a prediction chain runs."""

    codes: Sequence[str] = DEFAULT_CODES
    intra_interval: int = 150
    keyframe_quality: int = KEYFRAME_QUALITY
    _fields: list[FieldEncoder] = field(init=False, repr=False)
    _keyframe_ts_us: int = 0
    _since_intra: int | None = None  # None: the next frame is intra

    def __post_init__(self) -> None:
        self.use(self.codes)

    def use(self, codes: Sequence[str]) -> None:
        """Code frames with these capabilities from now on (a session negotiated them); the next frame is intra."""
        self.codes = list(codes)
        self._fields = [FIELD_CODECS[name].new_encoder() for name in self.codes]
        self.force_intra()

    def force_intra(self) -> None:
        self._since_intra = None

    def keyframe(self, analysis: FrameAnalysis, kf: int, seq: int) -> m.Keyframe:
        image = analysis.foreground if analysis.foreground is not None else analysis.frame.image
        width, height = analysis.frame.size
        landmarks = None
        if analysis.face is not None:
            landmarks = LandmarkEncoder().encode(analysis.face.landmarks, intra=True)
        self.force_intra()
        self._keyframe_ts_us = analysis.frame.ts_us
        return m.Keyframe(
            kf=kf, seq=seq, ts_us=analysis.frame.ts_us, width=width, height=height,
            image=encode_image(image, self.keyframe_quality), image_format="webp",
            alpha=None if analysis.alpha is None else encode_alpha_png(analysis.alpha),
            landmarks=landmarks,
        )

    def frame(self, analysis: FrameAnalysis, seq: int, kf: int) -> m.Frame:
        intra = self._since_intra is None or self._since_intra >= self.intra_interval
        self._since_intra = 0 if intra else (self._since_intra or 0) + 1
        if intra:
            # An intra frame restarts every prediction chain, so a receiver can join from it alone.
            for coder in self._fields:
                coder.reset()
        dt_ms = max(0, round((analysis.frame.ts_us - self._keyframe_ts_us) / 1000))
        return m.Frame(seq=seq, dt_ms=dt_ms, kf=kf, face=m.FACE_STATES.index(analysis.face_state),
                       codes=[coder.encode(analysis, intra) for coder in self._fields])


@dataclass
class FrameDecoder:
    """Receiver side: keyframes and frames back into renderer inputs at the sender's geometry."""

    codes: Sequence[str] = DEFAULT_CODES
    keyframe: KeyframeState | None = None
    size: tuple[int, int] | None = None
    _keyframe_ts_us: int = 0
    _fields: list[FieldDecoder] = field(init=False, repr=False)
    _last_seq: int | None = None

    def __post_init__(self) -> None:
        self._fields = [FIELD_CODECS[name].new_decoder() for name in self.codes]

    def decode_keyframe(self, message: m.Keyframe) -> KeyframeState:
        image = decode_image(message.image)
        if image.shape[:2] != (message.height, message.width):
            raise FrameDecodeError(f"keyframe image is {image.shape[1]}x{image.shape[0]}, header says "
                                   f"{message.width}x{message.height}")
        alpha = None
        if message.alpha is not None:
            alpha = decode_image(message.alpha, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
            if alpha.shape != image.shape[:2]:
                raise FrameDecodeError("keyframe alpha and image differ in size")
        try:
            landmarks = None if message.landmarks is None else LandmarkDecoder().decode(message.landmarks)
        except CodeError as exc:
            raise FrameDecodeError(f"keyframe landmarks: {exc}") from None
        self.keyframe = KeyframeState(kf=message.kf, image=image, alpha=alpha, landmarks=landmarks)
        self.size = (message.width, message.height)
        self._keyframe_ts_us = message.ts_us
        self._last_seq = message.seq
        for coder in self._fields:
            coder.reset()
        return self.keyframe

    def decode_frame(self, message: m.Frame) -> FrameState:
        if self.keyframe is None or self.size is None:
            raise FrameDecodeError("no keyframe yet")
        if message.kf != self.keyframe.kf:
            raise FrameDecodeError(f"frame {message.seq} is drawn from keyframe {message.kf}, the last received is "
                                   f"{self.keyframe.kf}")
        if len(message.codes) != len(self._fields):
            raise FrameDecodeError(f"frame {message.seq} carries {len(message.codes)} codes, the session negotiated "
                                   f"{len(self._fields)} ({', '.join(self.codes)})")
        if message.seq != ((self._last_seq or 0) + 1) % 2**32:
            for coder in self._fields:  # a gap: what follows must be intra
                coder.reset()
        draft = FrameDraft(self.size)
        try:
            for coder, payload in zip(self._fields, message.codes, strict=True):
                if payload is not None:
                    coder.decode(payload, draft)
        except CodeError as exc:
            self._last_seq = None
            raise FrameDecodeError(f"frame {message.seq}: {exc}") from None
        self._last_seq = message.seq
        return FrameState(
            seq=message.seq, ts_us=self._keyframe_ts_us + message.dt_ms * 1000, face=message.face_state,
            landmarks=draft.landmarks, alpha=draft.alpha,
        )
