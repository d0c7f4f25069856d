"""The codec seam: each per-frame payload is coded by a FieldCodec, named by the capability that
sender and receiver negotiate in `hello`/`welcome` (protocol.md, "Capabilities").

A new code is a new FieldCodec (an encoder that reads what it needs from the analysed frame, a
decoder that writes what it recovers into the frame being decoded) and its capability name in
`FIELD_CODECS`. The sender offers the codes it can send, the receiver answers with the codes it
decodes, and the sender uses the ones both name; a frame that carries a code the session did not
negotiate is refused with a clear error instead of being misread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder, upsample
from facewire.shared.codec.landmarks import LandmarkDecoder, LandmarkEncoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.types import Alpha, FrameAnalysis, Landmarks
from facewire.shared.wire import messages as m


@dataclass
class FrameDraft:
    """What the field decoders have recovered so far of one frame, at the sender's frame size."""

    size: tuple[int, int]
    landmarks: Landmarks | None = None
    alpha: Alpha | None = None


class FieldEncoder(Protocol):
    def encode(self, analysis: FrameAnalysis, intra: bool) -> bytes | None:
        """This frame's payload, or None when the frame has nothing for this code (e.g. no face)."""
        ...

    def reset(self) -> None:
        """Forget the prediction state: the next code is intra."""
        ...


class FieldDecoder(Protocol):
    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        """Decode one payload into the draft; raises CodeError when it cannot."""
        ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class FieldCodec:
    capability: str
    new_encoder: Callable[[], FieldEncoder]
    new_decoder: Callable[[], FieldDecoder]
    payload: Callable[[m.Frame], bytes | None]  # where a frame message carries this code
    required: bool = False  # a link without it is no link (the face)


@dataclass
class _LandmarkField:
    coder: LandmarkEncoder = field(default_factory=LandmarkEncoder)

    def encode(self, analysis: FrameAnalysis, intra: bool) -> bytes | None:
        return None if analysis.face is None else self.coder.encode(analysis.face.landmarks, intra=intra)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _LandmarkFieldDecoder:
    coder: LandmarkDecoder = field(default_factory=LandmarkDecoder)

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        draft.landmarks = self.coder.decode(payload)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _AlphaField:
    coder: AlphaEncoder = field(default_factory=AlphaEncoder)

    def encode(self, analysis: FrameAnalysis, intra: bool) -> bytes | None:
        return None if analysis.alpha is None else self.coder.encode(analysis.alpha, intra=intra)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _AlphaFieldDecoder:
    coder: AlphaDecoder = field(default_factory=AlphaDecoder)

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        draft.alpha = upsample(self.coder.decode(payload), draft.size)

    def reset(self) -> None:
        self.coder.reset()


FIELD_CODECS: dict[str, FieldCodec] = {
    codec.capability: codec
    for codec in (
        FieldCodec("landmarks", _LandmarkField, _LandmarkFieldDecoder, lambda frame: frame.landmarks, required=True),
        FieldCodec("alpha", _AlphaField, _AlphaFieldDecoder, lambda frame: frame.alpha),
    )
}


def negotiate(offered: Sequence[str], accepted: Sequence[str]) -> list[str]:
    """The codes a session uses: those the sender offered (in its order) that the receiver decodes.

    Raises CodeError when a required code is not among them, naming what each side has.
    """
    chosen = [name for name in offered if name in accepted and name in FIELD_CODECS]
    missing = [name for name, codec in FIELD_CODECS.items() if codec.required and name not in chosen]
    if missing:
        raise CodeError(f"no common {', '.join(missing)} code: the sender offers {list(offered)}, "
                        f"the receiver decodes {list(accepted)}")
    return chosen


def check_negotiated(frame: m.Frame, codes: Sequence[str]) -> None:
    """Refuses a frame carrying a code this session did not negotiate."""
    for name, codec in FIELD_CODECS.items():
        if name not in codes and codec.payload(frame) is not None:
            raise CodeError(f"frame {frame.seq} carries a {name} code, which this session did not negotiate")
