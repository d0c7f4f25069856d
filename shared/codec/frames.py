"""Feature encoding of analysed frames into `keyframe` and `frame` messages, and back.

The encoder runs on the uplink side at send time, so a frame dropped before sending is
never used as a prediction reference; the decoder must see every sent frame in order
(websockets over TCP guarantees that) and raises `FrameDecodeError` when it cannot
follow, which makes the receiver ask for a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facewire.shared.codec.alpha import AlphaCodeError, AlphaDecoder, AlphaEncoder, upsample
from facewire.shared.codec.landmarks import LandmarkCodeError, LandmarkDecoder, LandmarkEncoder
from facewire.shared.types import Alpha, FrameAnalysis, FrameState, HeadPose, Image, KeyframeState
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


@dataclass
class FrameEncoder:
    """Turns FrameAnalysis into messages; `intra_interval` bounds how long a prediction chain runs."""

    intra_interval: int = 150
    keyframe_quality: int = KEYFRAME_QUALITY
    alpha: AlphaEncoder = field(default_factory=AlphaEncoder)
    landmarks: LandmarkEncoder = field(default_factory=LandmarkEncoder)
    _last_seq: int | None = None
    _since_intra: int = 0

    def force_intra(self) -> None:
        self._last_seq = None

    def keyframe(self, analysis: FrameAnalysis, kf: int, seq: int) -> m.Keyframe:
        image = analysis.foreground if analysis.foreground is not None else analysis.frame.image
        width, height = analysis.frame.size
        landmarks = None
        if analysis.face is not None:
            landmarks = LandmarkEncoder().encode(analysis.face.landmarks, intra=True)
        self.force_intra()
        return m.Keyframe(
            kf=kf, seq=seq, ts_us=analysis.frame.ts_us, width=width, height=height,
            image=encode_image(image, self.keyframe_quality), image_format="webp",
            alpha=None if analysis.alpha is None else encode_alpha_png(analysis.alpha),
            landmarks=landmarks,
        )

    def frame(self, analysis: FrameAnalysis, seq: int, kf: int) -> m.Frame:
        intra = self._last_seq is None or self._since_intra >= self.intra_interval
        self._since_intra = 0 if intra else self._since_intra + 1
        if intra:
            # An intra frame restarts every prediction chain, so a receiver can join from it alone.
            self.landmarks.reset()
            self.alpha.reset()
        face = analysis.face
        message = m.Frame(
            seq=seq, ts_us=analysis.frame.ts_us, kf=kf, face=analysis.face_state,
            confidence=0.0 if face is None else float(np.clip(face.confidence, 0.0, 1.0)),
            pose=None if face is None else [float(v) for v in face.pose.as_list()],
            landmarks=None if face is None else self.landmarks.encode(face.landmarks, intra=intra),
            alpha=None if analysis.alpha is None else self.alpha.encode(analysis.alpha, intra=intra),
            ref=None if intra else self._last_seq,
        )
        self._last_seq = seq
        return message


@dataclass
class FrameDecoder:
    """Receiver side: keyframes and frames back into renderer inputs at the sender's geometry."""

    keyframe: KeyframeState | None = None
    size: tuple[int, int] | None = None
    alpha: AlphaDecoder = field(default_factory=AlphaDecoder)
    landmarks: LandmarkDecoder = field(default_factory=LandmarkDecoder)
    _last_seq: int | None = None

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
        except LandmarkCodeError as exc:
            raise FrameDecodeError(f"keyframe landmarks: {exc}") from None
        self.keyframe = KeyframeState(kf=message.kf, image=image, alpha=alpha, landmarks=landmarks)
        self.size = (message.width, message.height)
        self._last_seq = None
        return self.keyframe

    def decode_frame(self, message: m.Frame) -> FrameState:
        if self.keyframe is None or self.size is None:
            raise FrameDecodeError("no keyframe yet")
        if message.ref is None:
            self.landmarks.reset()
            self.alpha.reset()
        elif message.ref != self._last_seq:
            reason = f"frame {message.seq} predicts from {message.ref}, last decoded is {self._last_seq}"
            self._last_seq = None
            raise FrameDecodeError(reason)
        try:
            landmarks = None if message.landmarks is None else self.landmarks.decode(message.landmarks)
            lowres = None if message.alpha is None else self.alpha.decode(message.alpha)
        except (LandmarkCodeError, AlphaCodeError) as exc:
            self._last_seq = None
            raise FrameDecodeError(str(exc)) from None
        self._last_seq = message.seq
        return FrameState(
            seq=message.seq, ts_us=message.ts_us, face=message.face, confidence=message.confidence,
            pose=None if message.pose is None else HeadPose.from_list(message.pose),
            landmarks=landmarks,
            alpha=None if lowres is None else upsample(lowres, self.size),
        )
