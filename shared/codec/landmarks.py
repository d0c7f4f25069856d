"""The landmark code carried in `frame.landmarks` and `keyframe.landmarks` (protocol.md, "Landmark code").

Points are quantised to 1/4 px in x and y and 1 px in z, predicted from the previous
decoded set (or not at all for an intra code), and the residual is stored as int8 when
it fits (int16 otherwise) and zstd-compressed.

Payload: u8 code version, u8 flags (bit 0 intra, bit 1 int16 residual), u16 point count,
then zstd(residual, row-major (count, 3), little-endian).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import zstandard

from facewire.shared.types import Landmarks

CODE_VERSION = 1
_HEAD = struct.Struct("<BBH")
_INTRA = 1
_WIDE = 2
STEPS = np.array([4.0, 4.0, 1.0], np.float32)
MAX_POINTS = 1024


class LandmarkCodeError(ValueError):
    """A landmark code that cannot be decoded."""


def quantise(landmarks: Landmarks) -> np.ndarray:
    return np.clip(np.rint(landmarks * STEPS), -32768, 32767).astype(np.int16)


def dequantise(codes: np.ndarray) -> Landmarks:
    return (codes.astype(np.float32) / STEPS).astype(np.float32)


@dataclass
class LandmarkEncoder:
    deadzone: int = 1
    zstd_level: int = 9
    _previous: np.ndarray | None = field(default=None, repr=False)
    _compressor: zstandard.ZstdCompressor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=self.zstd_level)

    def reset(self) -> None:
        self._previous = None

    def encode(self, landmarks: Landmarks, intra: bool = False) -> bytes:
        current = quantise(landmarks)
        predict = not intra and self._previous is not None and self._previous.shape == current.shape
        residual = current.astype(np.int32) - (self._previous if predict else 0)  # type: ignore[operator]
        if predict:
            # Sub-step tremor costs bits and shows as jitter; decoded points stay within `deadzone` steps.
            residual[np.abs(residual) <= self.deadzone] = 0
            self._previous = (self._previous + residual).astype(np.int16)  # type: ignore[operator]
        else:
            self._previous = current
        wide = bool(np.abs(residual).max(initial=0) > 127) or not predict
        flags = (0 if predict else _INTRA) | (_WIDE if wide else 0)
        body = residual.astype("<i2" if wide else np.int8).tobytes()
        return _HEAD.pack(CODE_VERSION, flags, current.shape[0]) + self._compressor.compress(body)


@dataclass
class LandmarkDecoder:
    _previous: np.ndarray | None = field(default=None, repr=False)
    _decompressor: zstandard.ZstdDecompressor = field(default_factory=zstandard.ZstdDecompressor, repr=False)

    def reset(self) -> None:
        self._previous = None

    def decode(self, payload: bytes) -> Landmarks:
        if len(payload) < _HEAD.size:
            raise LandmarkCodeError("landmark code shorter than its header")
        version, flags, count = _HEAD.unpack_from(payload)
        if version != CODE_VERSION or not 1 <= count <= MAX_POINTS:
            raise LandmarkCodeError(f"landmark code version {version} with {count} points not supported")
        item = 2 if flags & _WIDE else 1
        expected = count * 3 * item
        try:
            raw = self._decompressor.decompress(payload[_HEAD.size:], max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise LandmarkCodeError(f"landmark residual does not decompress: {exc}") from None
        if len(raw) != expected:
            raise LandmarkCodeError(f"landmark residual holds {len(raw)} bytes, expected {expected}")
        residual = np.frombuffer(raw, "<i2" if item == 2 else np.int8).reshape(count, 3).astype(np.int32)
        if not flags & _INTRA:
            if self._previous is None or self._previous.shape != residual.shape:
                raise LandmarkCodeError("landmark code predicted from a set this decoder does not hold")
            residual = residual + self._previous
        self._previous = np.clip(residual, -32768, 32767).astype(np.int16)
        return dequantise(self._previous)


