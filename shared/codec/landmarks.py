"""The landmark code carried in `frame.landmarks` and `keyframe.landmarks` (protocol.md, "Landmark code").

Points are quantised to 1/4 px in x and y and 1 px in z, predicted from the previous decoded
set (or not at all for an intra code), and the residual is stored as int8 when it fits (int16
otherwise) and zstd-compressed (facewire.shared.codec.predictive).

Payload: u8 code version, u8 flags (bit 0 intra, bit 1 int16 residual), u16 point count,
then zstd(residual, row-major (count, 3), little-endian).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from facewire.shared.codec.predictive import DeltaDecoder, DeltaEncoder, IntArray, PayloadError
from facewire.shared.types import Landmarks

CODE_VERSION = 1
_HEAD = struct.Struct("<BBH")
_INTRA = 1
_WIDE = 2
STEPS = np.array([4.0, 4.0, 1.0], np.float32)
MAX_POINTS = 1024
_INT16 = (-32768, 32767)


def quantise(landmarks: Landmarks) -> IntArray:
    return np.clip(np.rint(landmarks * STEPS), *_INT16).astype(np.int32)


def dequantise(codes: IntArray) -> Landmarks:
    return (codes.astype(np.float32) / STEPS).astype(np.float32)


@dataclass
class LandmarkEncoder:
    delta: DeltaEncoder = field(default_factory=DeltaEncoder)

    def reset(self) -> None:
        self.delta.reset()

    def encode(self, landmarks: Landmarks, intra: bool = False) -> bytes:
        current = quantise(landmarks)
        residual, predicted = self.delta.residual(current, intra)
        wide = not predicted or bool(np.abs(residual).max(initial=0) > 127)
        flags = (0 if predicted else _INTRA) | (_WIDE if wide else 0)
        return _HEAD.pack(CODE_VERSION, flags, current.shape[0]) + self.delta.pack(residual, "<i2" if wide else np.int8)


@dataclass
class LandmarkDecoder:
    delta: DeltaDecoder = field(default_factory=DeltaDecoder)

    def reset(self) -> None:
        self.delta.reset()

    def decode(self, payload: bytes) -> Landmarks:
        if len(payload) < _HEAD.size:
            raise PayloadError("landmark code shorter than its header")
        version, flags, count = _HEAD.unpack_from(payload)
        if version != CODE_VERSION or not 1 <= count <= MAX_POINTS:
            raise PayloadError(f"landmark code version {version} with {count} points not supported")
        codes = self.delta.unpack(
            payload[_HEAD.size:], (count, 3), "<i2" if flags & _WIDE else np.int8, not flags & _INTRA, "landmark residual",
            valid=lambda values: bool(values.min() >= _INT16[0] and values.max() <= _INT16[1]),
        )
        return dequantise(codes)
