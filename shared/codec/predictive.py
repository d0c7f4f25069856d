"""The predictive-coding skeleton the payload codecs share: closed-loop temporal prediction of a
quantised integer array, a dead zone, and a zstd-compressed residual whose size is checked before
anything is allocated.

The encoder keeps exactly the array the decoder will hold (the previous *decoded* array, not the
previous input), so prediction never drifts. A code is either intra (the array itself) or predicted
(the residual from the previous decoded array); a decoder asked to follow a prediction it cannot
(no previous array, another shape) raises CodeError, which makes the receiver ask for a keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import zstandard

IntArray = npt.NDArray[np.int32]


class CodeError(ValueError):
    """A payload that cannot be decoded: damaged, hostile, or predicted from state this decoder lacks."""


class PayloadError(CodeError):
    """Bytes no conforming encoder produces: a declared size over its bounds or other than expected, the
    wrong format, trailing data, a body that does not decompress or decode. Unlike a lost reference (a
    plain CodeError, answered with a keyframe request), the receiver closes the connection on it.
    `field` names the message field when the raiser knows it (the frame decoder fills it in otherwise)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def decompress_exactly(body: bytes, size: int, what: str) -> bytes:
    """`body` decompressed, refused unless its zstd frame declares exactly `size` bytes and nothing follows it.

    zstd's `max_output_size` is ignored when a frame declares its content size, so a few KiB could
    otherwise claim (and get) a GiB; the declared size is read and checked first.
    """
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"{what} is not a zstd frame: {exc}") from None
    if declared != size:  # -1: no declared size (a streamed frame), which no conforming encoder writes
        raise PayloadError(f"{what} declares {declared} bytes, expected {size}")
    stream = zstandard.ZstdDecompressor().decompressobj()
    try:
        raw = stream.decompress(body)
    except (zstandard.ZstdError, MemoryError) as exc:
        raise PayloadError(f"{what} does not decompress: {exc}") from None
    if len(raw) != size or stream.unused_data:
        raise PayloadError(f"{what} holds {len(raw)} bytes and {len(stream.unused_data)} more after its frame, expected {size}")
    return raw


@dataclass
class DeltaEncoder:
    """Residuals of a quantised array against the previous decoded one; changes within `deadzone` steps
    are dropped (sub-step tremor costs bits and shows as jitter), so the decoded array stays within
    `deadzone` steps of the input."""

    deadzone: int = 1
    zstd_level: int = 9
    _previous: IntArray | None = field(default=None, repr=False)
    _compressor: zstandard.ZstdCompressor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=self.zstd_level, write_content_size=True)

    def reset(self) -> None:
        """The next code is intra (a new session, or a periodic refresh a late joiner can start from)."""
        self._previous = None

    def residual(self, current: IntArray, intra: bool) -> tuple[IntArray, bool]:
        """(residual, predicted): what to send for `current`; the encoder now holds what the decoder will."""
        current = current.astype(np.int32)
        previous = self._previous
        if intra or previous is None or previous.shape != current.shape:
            self._previous = current
            return current, False
        residual = current - previous
        residual[np.abs(residual) <= self.deadzone] = 0
        self._previous = previous + residual
        return residual, True

    def pack(self, residual: IntArray, dtype: npt.DTypeLike) -> bytes:
        return self._compressor.compress(residual.astype(dtype).tobytes())


@dataclass
class DeltaDecoder:
    _previous: IntArray | None = field(default=None, repr=False)

    def reset(self) -> None:
        self._previous = None

    def unpack(self, body: bytes, shape: tuple[int, ...], dtype: npt.DTypeLike, predicted: bool, what: str,
               valid: Callable[[IntArray], bool] | None = None) -> IntArray:
        """The decoded array: the residual in `body` added to the previous array when `predicted`.

        `valid` checks the decoded array before the decoder keeps it: a code that decodes out of range
        raises and leaves the state as it was.
        """
        item = np.dtype(dtype)
        raw = decompress_exactly(body, int(np.prod(shape)) * item.itemsize, what)
        values = np.frombuffer(raw, item).reshape(shape).astype(np.int32)
        if predicted:
            if self._previous is None or self._previous.shape != values.shape:
                raise CodeError(f"{what} is predicted from an array this decoder does not hold")
            values = values + self._previous
        if valid is not None and not valid(values):
            raise CodeError(f"{what} decodes outside its range")
        self._previous = values
        return values
