"""The codec seam: each per-frame payload is coded by a FieldCodec, named by the capability that
sender and receiver negotiate in `hello`/`welcome` (protocol.md 3.3).

Every code has a *role*: `face` (the landmarks; one is required), `alpha` (the matte: the whole of it
each frame, or corrections of the receiver's prediction of it, which hold between frames), `body` (the
motion of the body, which moves the keyframe's picture and matte alike, so it goes with or without
an alpha code) or `layer` (the picture residual). The sender offers codes in its order of preference; the session uses, for
each role, the first offered code the receiver decodes. A frame carries one payload per negotiated
code, in the negotiated order.

A code has up to three parts, on the sender's two threads and the receiver:
- a *preparer* on the thread that analyses frames computes what the receiver will decode (pure, so
  the sender's replica of the receiver can draw with it) and any setup the decoder needs first;
- an *encoder* at send time turns that into bytes, predicting from the last frame it coded (only
  frames that are sent feed its state);
- a *decoder* on the receiver, which sees every sent frame in order.
A decoder whose state applies to every frame, whether or not the frame carries its payload (held
corrections), is also `Holding`: the frame decoder asks it to fill in each frame. A `persistent` code
keeps its state over periodic intra frames (a late joiner converges by the code's own refresh) and
is reset only when the receiver lost the stream.
A new code is a new FieldCodec and its capability name in `FIELD_CODECS`. The data that crosses the
seam (Prepared, CodedFrame, FrameDraft) lives in facewire.shared.codec.seam, so a code's adapters
in their own module (e.g. facewire.shared.codec.expression.field) import it, not this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from facewire.shared.codec.alpha import AlphaDecoder, AlphaEncoder, upsample
from facewire.shared.codec.alpha_fix import AlphaFixDecoder, AlphaFixEncoder, AlphaFixPreparer
from facewire.shared.codec.body import BodyDecoder, BodyEncoder, BodyPreparer
from facewire.shared.codec.expression.field import ExpressionDecoder, ExpressionEncoder, ExpressionPreparer
from facewire.shared.codec.landmarks import LandmarkDecoder, LandmarkEncoder, dequantise, quantise
from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, NoSetup, Prepared
from facewire.shared.types import FrameAnalysis, Landmarks

Role = Literal["face", "alpha", "body", "layer"]
REQUIRED_ROLES: tuple[Role, ...] = ("face",)


class FieldPreparer(Protocol):
    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        """This frame's values, or None when the frame has nothing for this code (e.g. no face)."""
        ...

    def take_setup(self) -> bytes | None:
        """A setup payload the decoder needs before the frames prepared from now on (once), or None."""
        ...

    def current_setup(self) -> bytes | None:
        """The state in use as a standalone setup (for a receiver that holds nothing: a new session), or None."""
        ...

    def keyframe_code(self, prepared: Prepared) -> bytes:
        """An intra code of these values, for a keyframe's `landmarks` (face codes)."""
        ...

    def recoded(self, prepared: Prepared, landmarks: Landmarks) -> Prepared:
        """`prepared` (this frame's values) for other landmarks of the same frame (face codes: a keyframe's, from the
        tracker's unsmoothed landmarks); other codes return it as it is."""
        ...


class FieldEncoder(Protocol):
    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        """This frame's payload, or None when the frame has nothing for this code."""
        ...

    def setup(self, payload: bytes) -> None:
        """A setup of this code went to the receiver: the encoder now codes against it, as the decoder decodes."""
        ...

    def reset(self) -> None:
        """Forget the prediction state: the next code is intra."""
        ...


class FieldDecoder(Protocol):
    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        """Decode one payload into the draft; raises CodeError when it cannot."""
        ...

    def setup(self, payload: bytes) -> None:
        """A `setup` message for this code; raises CodeError when the code has none or it does not decode."""
        ...

    def decode_keyframe(self, payload: bytes) -> Landmarks:
        """A keyframe's `landmarks` (face codes); raises CodeError."""
        ...

    def reset(self) -> None: ...


@runtime_checkable
class Holding(Protocol):
    def hold(self, draft: FrameDraft) -> None:
        """Fill in what the decoder holds, for every frame (after the frame's payloads are decoded)."""
        ...


@dataclass(frozen=True)
class FieldCodec:
    capability: str
    role: Role
    new_encoder: Callable[[], FieldEncoder]
    new_decoder: Callable[[], FieldDecoder]
    new_preparer: Callable[[], FieldPreparer]
    persistent: bool = False  # its state survives periodic intra frames (see the module's docstring)


class _Unprepared(NoSetup):
    """A code whose encoder reads the analysis itself."""

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        return None


class _LandmarkPreparer(NoSetup):
    """The raw landmark code: the receiver decodes the 1/4-px grid (to within its dead zone)."""

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        return None if analysis.face is None else Prepared(dequantise(quantise(analysis.face.landmarks)))

    def keyframe_code(self, prepared: Prepared) -> bytes:
        assert prepared.landmarks is not None
        return LandmarkEncoder().encode(prepared.landmarks, intra=True)

    def recoded(self, prepared: Prepared, landmarks: Landmarks) -> Prepared:
        return Prepared(dequantise(quantise(landmarks)))


@dataclass
class _LandmarkField(NoSetup):
    coder: LandmarkEncoder = field(default_factory=LandmarkEncoder)

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        face = frame.analysis.face
        return None if face is None else self.coder.encode(face.landmarks, intra=intra)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _LandmarkFieldDecoder(NoSetup):
    coder: LandmarkDecoder = field(default_factory=LandmarkDecoder)

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        draft.landmarks = self.coder.decode(payload)

    def decode_keyframe(self, payload: bytes) -> Landmarks:
        return LandmarkDecoder().decode(payload)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _AlphaField(NoSetup):
    coder: AlphaEncoder = field(default_factory=AlphaEncoder)

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        alpha = frame.analysis.alpha
        return None if alpha is None else self.coder.encode(alpha, intra=intra)

    def reset(self) -> None:
        self.coder.reset()


@dataclass
class _AlphaFieldDecoder(NoSetup):
    coder: AlphaDecoder = field(default_factory=AlphaDecoder)

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        draft.alpha = upsample(self.coder.decode(payload), draft.size)

    def reset(self) -> None:
        self.coder.reset()


def _layer_encoder() -> FieldEncoder:
    from facewire.shared.codec.layer_field import LayerFieldEncoder  # PyAV and the renderer: loaded when used

    return LayerFieldEncoder()


def _layer_decoder() -> FieldDecoder:
    from facewire.shared.codec.layer_field import LayerFieldDecoder

    return LayerFieldDecoder()


def _layer_preparer() -> FieldPreparer:
    from facewire.shared.codec.layer_field import LayerPreparer

    return LayerPreparer()


FIELD_CODECS: dict[str, FieldCodec] = {
    codec.capability: codec
    for codec in (
        FieldCodec("expression", "face", ExpressionEncoder, ExpressionDecoder, ExpressionPreparer),
        FieldCodec("landmarks", "face", _LandmarkField, _LandmarkFieldDecoder, _LandmarkPreparer),
        FieldCodec("alpha", "alpha", _AlphaField, _AlphaFieldDecoder, _Unprepared),
        FieldCodec("residual-av1", "layer", _layer_encoder, _layer_decoder, _layer_preparer, persistent=True),
        FieldCodec("body-motion", "body", BodyEncoder, BodyDecoder, BodyPreparer),
        # before "alpha" in any offer: corrections cost a few bytes where the whole matte costs ~350
        FieldCodec("alpha-fix", "alpha", AlphaFixEncoder, AlphaFixDecoder, AlphaFixPreparer, persistent=True),
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


def face_code(codes: Sequence[str]) -> str:
    """The session's face code."""
    return next(name for name in codes if FIELD_CODECS[name].role == "face")
