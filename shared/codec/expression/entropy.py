"""The range coder of the expression code: constriction's RangeEncoder under two-sided geometric
(discrete Laplace) models built from integer frequency tables.

A value v under model b is coded as u = v >> shift(b) with a categorical model over u in [-U, U]
plus two escape symbols (below, above); after all of them, each escape's magnitude |u| - U as its
bit length (uniform over 0..30) and its bits below the leading one, then the shift(b) low bits of
every v (uniform, in chunks of at most 16 bits). So any value up to about 2^31 codes, a typical one
costs what its model says, and decoding any bytes does a bounded amount of work.

The tables are built from integer square roots and IEEE basic operations only, so every platform
builds the same ones (a table that differed would desynchronise encoder and decoder; a test pins
their sha256).
"""

from __future__ import annotations

import math

import constriction
import numpy as np
import numpy.typing as npt

from facewire.shared.codec.predictive import CodeError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_U = 24
_ALPHABET = 2 * _U + 3  # index 0: escape below, 1..2U+1: u = -U..U, 2U+2: escape above
_FREQ_BITS = 20
_MAX_ESCAPE_BITS = 31
_CHUNK = 16  # bits per uniform symbol; the models' shifts stay below it (assert below)
# mean |v| of each model, in 1/16: steps of about sqrt(2) from 1/16 to 2^17 (integer square roots)
BIN_MEAN16: tuple[int, ...] = tuple(sorted({math.isqrt(1 << k) for k in range(0, 43)}))
MODELS = len(BIN_MEAN16)
STATE_CAP16 = 16 * 4095  # running means are capped here (in 1/16 of a step)
_PAD = 0x80


def _theta(mean: float) -> float:
    # two-sided geometric p(v) ~ t^|v| has E|v| = 2t / (1 - t^2); solve for t (sqrt is exact IEEE)
    return (math.sqrt(1.0 + mean * mean) - 1.0) / mean


def _shift_for(mean: float) -> int:
    s = 0
    while mean > 4.0 * (1 << s):
        s += 1
    return s


def _table(mean16: int) -> tuple[F64, int]:
    """(frequencies over the alphabet, shift) of the model with mean |v| = mean16 / 16."""
    mean = mean16 / 16.0
    t = _theta(mean)
    shift = _shift_for(mean)
    tw = t
    for _ in range(shift):  # t^(2^shift) by squaring: basic operations only
        tw = tw * tw
    norm = (1.0 - t) / (1.0 + t)
    block = (1.0 - tw) / (1.0 - t)  # sum of t^j over one block of w = 2^shift values
    # u >= 0 covers v in [u*w, (u+1)*w): mass norm * t^(u*w) * block
    p_pos = []
    power = 1.0
    for _u in range(_U + 1):
        p_pos.append(norm * power * block)
        power *= tw
    tail_pos = norm * power / (1.0 - t)
    # u < 0 covers |v| from -(u+1)*w + 1 to -u*w: mass norm * t^(-(u+1)*w + 1) * block
    p_neg = []
    power = t
    for _u in range(1, _U + 1):
        p_neg.append(norm * power * block)
        power *= tw
    tail_neg = norm * power / (1.0 - t)
    scale = float(1 << _FREQ_BITS)
    freqs = np.zeros(_ALPHABET)
    freqs[0] = math.floor(tail_neg * scale) + 1
    for i, p in enumerate(reversed(p_neg)):  # u = -U .. -1
        freqs[1 + i] = math.floor(p * scale) + 1
    for i, p in enumerate(p_pos):  # u = 0 .. U
        freqs[1 + _U + i] = math.floor(p * scale) + 1
    freqs[-1] = math.floor(tail_pos * scale) + 1
    return freqs, shift


_TABLES = [_table(mean) for mean in BIN_MEAN16]
TABLE_FREQS = np.stack([freqs for freqs, _ in _TABLES])
_TABLE_SHIFTS = np.array([shift for _, shift in _TABLES], np.int64)
assert int(_TABLE_SHIFTS.max()) < _CHUNK
_BIN_PRODUCTS = np.array(BIN_MEAN16[:-1], np.int64) * np.array(BIN_MEAN16[1:], np.int64)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()


def model_bin(mean16: npt.ArrayLike) -> I64:
    """Model index for running means |v| in 1/16 units: the model whose mean is nearest in ratio
    (integers only, compared with products of neighbouring means, so both sides agree exactly)."""
    m = np.asarray(mean16, dtype=np.int64)
    return np.searchsorted(_BIN_PRODUCTS, m * m, side="right").astype(np.int64)


def bin_for_mean(mean: float) -> int:
    """The model for a mean |v| given as a float (encoder-side choices and basis statistics)."""
    return int(model_bin(min(STATE_CAP16 * 64, max(0, int(round(mean * 16))))))


def _split_bits(value: int, nbits: int) -> list[tuple[int, int]]:
    """(chunk, size) pairs, most significant first, each at most 16 bits."""
    out = []
    while nbits > 0:
        n = min(_CHUNK, nbits)
        nbits -= n
        out.append(((value >> nbits) & ((1 << n) - 1), 1 << n))
    return out


def range_encode(values: npt.ArrayLike, bins: npt.ArrayLike) -> bytes:
    """Integers under the models `bins` (one each), as little-endian range-coder words with the
    trailing bytes that the decoder's 0x80 padding restores trimmed off."""
    v = np.asarray(values, dtype=np.int64)
    b = np.asarray(bins, dtype=np.int64)
    shifts = _TABLE_SHIFTS[b]
    u = v >> shifts
    escaped = (u < -_U) | (u > _U)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode((np.clip(u, -_U - 1, _U + 1) + _U + 1).astype(np.int32), _CATEGORICAL, TABLE_FREQS[b])
    if escaped.any() or shifts.any():
        lengths: list[int] = []
        bits: list[tuple[int, int]] = []
        for i in np.flatnonzero(escaped):
            e = abs(int(u[i])) - _U  # >= 1
            n = e.bit_length()
            if n > _MAX_ESCAPE_BITS:
                raise CodeError(f"value {int(v[i])} beyond the expression code's range")
            lengths.append(n - 1)
            bits.extend(_split_bits(e - (1 << (n - 1)), n - 1))
        shifted = shifts > 0  # every shift is below 16 bits: one chunk per value
        chunks = np.concatenate([np.array([c for c, _ in bits], np.int64), (v - (u << shifts))[shifted]])
        sizes = np.concatenate([np.array([size for _, size in bits], np.int64), np.left_shift(1, shifts[shifted])])
        if lengths:
            enc.encode(np.array(lengths, np.int32), _UNIFORM, np.full(len(lengths), _MAX_ESCAPE_BITS, np.int32))
        if len(chunks):
            enc.encode(chunks.astype(np.int32), _UNIFORM, sizes.astype(np.int32))
    words = enc.get_compressed().astype("<u4").tobytes()
    return _trim(words, v, b)


def _trim(words: bytes, values: I64, bins: I64) -> bytes:
    # The coder flushes whole 32-bit words; drop trailing bytes of the last word while the padded
    # rest still decodes to the same values (one decode of ~10 us each; saves ~0.3 B a frame).
    best = words
    for cut in range(len(words) - 1, max(len(words) - 4, 0) - 1, -1):
        try:
            same = np.array_equal(range_decode(words[:cut], bins), values)
        except CodeError:
            same = False
        if not same:
            break
        best = words[:cut]
    return best


def range_decode(body: bytes, bins: npt.ArrayLike) -> I64:
    """Inverse of `range_encode` for the same `bins`: any bytes decode to some values or raise
    CodeError, with no more work than the fixed symbol count and 31-bit escapes."""
    b = np.asarray(bins, dtype=np.int64)
    words = np.frombuffer(body + bytes([_PAD]) * (-len(body) % 4), dtype="<u4").astype(np.uint32)
    shifts = _TABLE_SHIFTS[b]
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        sym = np.asarray(dec.decode(_CATEGORICAL, TABLE_FREQS[b]), np.int64)
        u = sym - (_U + 1)
        escaped = np.flatnonzero((sym == 0) | (sym == _ALPHABET - 1))
        if not len(escaped) and not shifts.any():
            return u
        lengths = ([int(n) for n in dec.decode(_UNIFORM, np.full(len(escaped), _MAX_ESCAPE_BITS, np.int32))]
                   if len(escaped) else [])
        plan = lengths + [int(s) for s in shifts[shifts > 0]]
        sizes = [size for n in plan for _, size in _split_bits(0, n)]
        chunks = [int(c) for c in dec.decode(_UNIFORM, np.array(sizes, np.int32))] if sizes else []
    except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:
        raise CodeError(f"range-coded body does not decode: {exc}") from None
    pos = 0

    def take(nbits: int) -> int:
        nonlocal pos
        out = 0
        for _, size in _split_bits(0, nbits):
            out = (out << (size.bit_length() - 1)) | chunks[pos]
            pos += 1
        return out

    for i, n1 in zip(escaped, lengths, strict=True):
        e = (1 << n1) + take(n1)
        u[i] = -(_U + e) if sym[i] == 0 else _U + e
    v = u << shifts
    shifted = shifts > 0
    v[shifted] += np.array(chunks[pos:], np.int64)
    return v
