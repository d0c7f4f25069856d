"""The data that crosses the codec seam (facewire.shared.codec.fields): what a preparer computed, a
frame handed to the send-time encoders, and what the decoders recover of a frame. Apart from the
registry, so a code's own adapters can build on it without importing the registry that names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from facewire.shared.codec.predictive import CodeError
from facewire.shared.types import Affine, Alpha, AlphaFix, FrameAnalysis, Image, Landmarks


@dataclass(frozen=True)
class Prepared:
    """What the preparing side computed for one code on one frame."""

    landmarks: Landmarks | None = None  # a face code: exactly what the receiver will decode
    values: object = None  # the code's own data, for its send-time encoder


@dataclass(frozen=True)
class CodedFrame:
    """An analysed frame with each code's prepared values, handed from the analysing thread to the uplink."""

    analysis: FrameAnalysis
    prepared: Mapping[str, Prepared] = field(default_factory=dict)
    drawn_from: int | None = None  # set at send time: the keyframe the receiver draws this frame from


@dataclass
class FrameDraft:
    """What the field decoders have recovered so far of one frame, at the sender's frame size."""

    size: tuple[int, int]
    landmarks: Landmarks | None = None
    alpha: Alpha | None = None
    layer: Image | None = None  # a layer code's decoded box
    body: Affine | None = None  # the body's motion, frame to keyframe (facewire.shared.codec.body)
    alpha_fix: AlphaFix | None = None  # the alpha corrections held (facewire.shared.codec.alpha_fix)


class NoSetup:
    """The setup and keyframe parts of a code's preparer, encoder or decoder, for codes that have neither."""

    def take_setup(self) -> bytes | None:
        return None

    def current_setup(self) -> bytes | None:
        return None

    def setup(self, payload: bytes) -> None:
        raise CodeError(f"{type(self).__name__}: this code has no setup")

    def keyframe_code(self, prepared: Prepared) -> bytes:
        raise CodeError(f"{type(self).__name__}: this code codes no keyframe")

    def recoded(self, prepared: Prepared, landmarks: Landmarks) -> Prepared:
        return prepared

    def decode_keyframe(self, payload: bytes) -> Landmarks:
        raise CodeError(f"{type(self).__name__}: this code codes no keyframe")
