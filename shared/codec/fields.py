"""The codec seam: each per-frame payload is coded by a FieldCodec, named by the capability that
sender and receiver negotiate in `hello`/`welcome` (protocol.md 3.3).

Every code has a *role*: `face` (the landmarks; one is required), `alpha` (the matte) or `layer`
(the picture residual). The sender offers codes in its order of preference; the session uses, for
each role, the first offered code the receiver decodes. A frame carries one payload per negotiated
code, in the negotiated order.

A new code is a new FieldCodec (an encoder that reads the coded frame, a decoder that writes what
it recovers into the frame being decoded) and its capability name in `FIELD_CODECS`. An encoder
runs at send time, so only frames that are sent feed its prediction state; a decoder sees every
sent frame in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder, upsample
from facewire.shared.codec.landmarks import LandmarkDecoder, LandmarkEncoder
from facewire.shared.codec.predictive import CodeError
from facewire.shared.types import Alpha, FrameAnalysis, Landmarks

Role = Literal["face", "alpha", "layer"]
REQUIRED_ROLES: tuple[Role, ...] = ("face",)


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
    role: Role
    new_encoder: Callable[[], FieldEncoder]
    new_decoder: Callable[[], FieldDecoder]


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
        FieldCodec("landmarks", "face", _LandmarkField, _LandmarkFieldDecoder),
        FieldCodec("alpha", "alpha", _AlphaField, _AlphaFieldDecoder),
    )
}


def negotiate(offered: Sequence[str], accepted: Sequence[str]) -> list[str]:
    """The codes a session uses: for each role, the first code the sender offered that the receiver
    decodes, in the sender's order. Raises CodeError when a required role has none, naming both lists."""
    chosen: list[str] = []
    roles: set[Role] = set()
    for name in offered:
        codec = FIELD_CODECS.get(name)
        if codec is not None and name in accepted and codec.role not in roles:
            chosen.append(name)
            roles.add(codec.role)
    missing = [role for role in REQUIRED_ROLES if role not in roles]
    if missing:
        raise CodeError(f"no common {', '.join(missing)} code: the sender offers {list(offered)}, "
                        f"the receiver decodes {list(accepted)}")
    return chosen
