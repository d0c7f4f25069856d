"""Alpha corrections (capability `alpha-fix`, role `alpha`; protocol.md 7.6).

The receiver predicts the person's alpha: the keyframe's matte, carried by the face mesh and the
body's motion (facewire.shared.render.mesh, facewire.shared.codec.body). Where that prediction is
off (hair round a head that turned, a hand, an arm), the sender sends the matte itself, coarsely and
only there, and the receiver holds it until it is replaced:

- The frame is cut into cells of CELL x CELL pixels (the corrections are a 1/8-size matte, LEVELS
  levels) and tiles of TILE x TILE cells (32 px), the unit that is sent or dropped.
- The receiver holds, per tile, nothing (the prediction shows) or the levels of its cells. What it
  shows (`apply_fix`) is the prediction where no tile is held and the held cells upsampled (bilinear
  with a steepened ramp, as the alpha code's `upsample`) where one is, feathered over a cell at the
  held tiles' borders so no tile edge shows. The same function draws the receiver's picture and the
  sender's replica of it.
- The sender (its analysing thread, at FIX_FPS) draws the receiver's prediction with the receiver's
  own renderer (facewire.shared.render.replica) and measures, per tile, how far the prediction and
  its own matte at 1/8 size are from the full matte (`prepare_values`). At send time the encoder
  compares what the receiver shows (the prediction with the tiles it holds) with the matte, and
  sends, greedily by error removed per byte and within a byte budget (a share of the rate; tokens
  that accrue with time, so a quiet spell pays for a burst), a tile's levels (`set`) or its return to
  the prediction (`clear`); a tile whose error is below ACT_ERROR, or that no op halves, is left.
- State both sides agree on: the held tiles. Ops depend on nothing held (a tile's levels are coded
  on their own), so a receiver that lost some (a gap, a late join) shows less corrected alpha, never
  garbage; after each intra frame the encoder resends its held tiles round-robin with spare budget,
  so such a receiver converges. The first frame drawn from a newer keyframe drops every held tile
  (its prediction starts from the matte again), as does an encoder reset (a receiver that lost the
  stream).

Payload: u8 flags (bit 0: drop every held tile first; the others 0), uvarint op count, per op a
uvarint (gap << 1 | set) where gap is the tile's index (row-major) less the previous op's index + 1,
then the set tiles' levels range-coded (constriction's range coder): cell by cell (each set tile's
first cell, in op order, then each one's second, ..., cells row-major in the tile), as the residual
against the median predictor of the cells above and left in the tile (the first cell against 0),
under one of five discrete Laplace models chosen by how much those cells vary.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import constriction
import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.codec.alpha import upsample
from facewire.shared.codec.expression.entropy import TABLE_FREQS, bin_for_mean
from facewire.shared.codec.predictive import PayloadError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, NoSetup, Prepared
from facewire.shared.types import Affine, AlphaFix, FrameAnalysis, KeyframeState, Landmarks
from facewire.shared.wire.varint import VarintError, encode_uvarint, read_uvarint

if TYPE_CHECKING:
    from facewire.shared.render.replica import Replica

CAPABILITY = "alpha-fix"
CELL = 8
TILE = 4
LEVELS = 16
TILE_PX = CELL * TILE
FIX_FPS = 10.0  # the replica's prediction costs ~5 ms at 512x512: a third of a 30 fps camera's frames
_CLEAR_ALL = 1
MAX_SIDE = 8192  # a frame's side in pixels, for the decoder's bounds
# A tile's error (mean |shown - matte| over it) below this is left: 0.03 is about a 1-px edge offset
# across a 32-px tile.
ACT_ERROR = 0.03
HALVE = 0.5  # a SET must take a tile's error to at most this share of what it was
# A tile is SET only where the matte stands still (its cells moved by at most this many levels since the
# last comparison, 0.1 s before): a held tile does not follow the head, so one set on a moving edge is a
# block out of place a moment later, and the budget cannot follow motion anyway. Errors that stay are
# what corrections are for: they are paid once.
STILL_LEVELS = 2
BURST_SECONDS = 1.0  # the budget held back for bursts (a keyframe switch, a hand coming in)
MIN_BURST_BYTES = 48  # at the thinnest rates, still room for a few tiles at once
# One payload spends at most this many payloads' worth of the rate (and at least MIN_PAYLOAD_BYTES): the
# frames are essential to the send gate, and one that comes out much larger than the last makes it hold
# the next ones back; a burst is spread over a few frames instead.
PAYLOAD_SPREAD = 2.0
MIN_PAYLOAD_BYTES = 16


@dataclass(frozen=True)
class Grid:
    """The cells and tiles of a frame of `size` (width, height); the last ones may overhang its edges."""

    size: tuple[int, int]

    @property
    def tiles(self) -> tuple[int, int]:
        """(columns, rows) of tiles."""
        return -(-self.size[0] // TILE_PX), -(-self.size[1] // TILE_PX)

    @property
    def count(self) -> int:
        return self.tiles[0] * self.tiles[1]

    @property
    def padded(self) -> tuple[int, int]:
        """The frame's size grown to whole tiles, in pixels."""
        return self.tiles[0] * TILE_PX, self.tiles[1] * TILE_PX

    def empty(self) -> AlphaFix:
        columns, rows = self.tiles
        return AlphaFix(np.zeros((rows, columns), bool), np.zeros((rows * TILE, columns * TILE), np.uint8))


def _pad(alpha: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    h, w = alpha.shape
    if (w, h) == size:
        return alpha
    return np.asarray(cv2.copyMakeBorder(alpha, 0, size[1] - h, 0, size[0] - w, cv2.BORDER_REPLICATE), np.float32)


def matte_levels(alpha: npt.NDArray[np.float32], grid: Grid) -> npt.NDArray[np.uint8]:
    """The matte at 1/CELL size (each cell its pixels' mean) in LEVELS levels, over whole tiles."""
    padded = _pad(alpha.astype(np.float32, copy=False), grid.padded)
    small = cv2.resize(padded, (grid.padded[0] // CELL, grid.padded[1] // CELL), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small * (LEVELS - 1)), 0, LEVELS - 1).astype(np.uint8)


def tile_means(values: npt.NDArray[np.float32], grid: Grid) -> npt.NDArray[np.float32]:
    """The mean of `values` (a frame-sized array) over each tile (rows, columns)."""
    return np.asarray(cv2.resize(_pad(values, grid.padded), grid.tiles, interpolation=cv2.INTER_AREA), np.float32)


_SOFTEN = np.array([0.25, 0.5, 0.25], np.float32)


def apply_fix(alpha: npt.NDArray[np.float32], fix: AlphaFix | None) -> npt.NDArray[np.float32]:
    """What the receiver shows: the predicted `alpha` with the held tiles' levels in their place.

    Only the held tiles' box (grown by a tile) is touched. Inside it the low-resolution picture is the
    held levels where a tile is held and the prediction's own cell means elsewhere, upsampled as the
    alpha code does; it replaces the prediction with a weight that is 1 inside held tiles and fades to 0
    over the cell and a half beyond a held tile's edge, so it blends into the prediction beside it.
    """
    if fix is None or not fix.held.any():
        return alpha
    h, w = alpha.shape
    rows, columns = np.nonzero(fix.held)
    r0, r1 = max(int(rows.min()) - 1, 0), min(int(rows.max()) + 2, fix.held.shape[0])
    c0, c1 = max(int(columns.min()) - 1, 0), min(int(columns.max()) + 2, fix.held.shape[1])
    y0, x0 = r0 * TILE_PX, c0 * TILE_PX
    y1, x1 = min(r1 * TILE_PX, h), min(c1 * TILE_PX, w)
    box_size = ((c1 - c0) * TILE_PX, (r1 - r0) * TILE_PX)
    cells = (box_size[0] // CELL, box_size[1] // CELL)
    region = alpha[y0:y1, x0:x1].astype(np.float32, copy=False)
    own = cv2.resize(_pad(region, box_size), cells, interpolation=cv2.INTER_AREA)
    held = np.repeat(np.repeat(fix.held[r0:r1, c0:c1], TILE, axis=0), TILE, axis=1)
    levels = fix.levels[r0 * TILE:r1 * TILE, c0 * TILE:c1 * TILE].astype(np.float32) * np.float32(1.0 / (LEVELS - 1))
    low = np.where(held, levels, own).astype(np.float32)
    fixed = upsample(low, box_size)[: y1 - y0, : x1 - x0]
    # The held cells' mask spread outwards by [1 2 1] / 4 (held cells stay 1) before its bilinear upsampling:
    # a held tile's edge fades over the cell and a half beyond it, so a silhouette corrected in some tiles
    # and not yet in the next has no 32-px steps.
    mask = held.astype(np.float32)
    soft = np.maximum(mask, cv2.sepFilter2D(mask, -1, _SOFTEN, _SOFTEN, borderType=cv2.BORDER_REPLICATE))
    weight = cv2.resize(soft, box_size, interpolation=cv2.INTER_LINEAR)[: y1 - y0, : x1 - x0]
    out = alpha.astype(np.float32, copy=True)
    out[y0:y1, x0:x1] = region + weight * (fixed - region)
    return out


# --- tile levels: prediction, contexts and the range coder --------------------------------------------

def _tiles_of(levels: npt.NDArray[np.uint8], indices: npt.NDArray[np.intp], columns: int) -> npt.NDArray[np.int64]:
    """The (n, TILE, TILE) levels of the tiles at these row-major indices."""
    blocks = levels.reshape(-1, TILE, columns, TILE).transpose(0, 2, 1, 3).reshape(-1, TILE, TILE)
    return blocks[indices].astype(np.int64)


def _context(tiles: npt.NDArray[np.int64], row: int, column: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The prediction of cell (row, column) of each tile from its cells above and left (the median, LOCO-I,
    predictor), and the model it is coded under: chosen by how much those cells vary (flat: residuals are
    almost always 0; across an edge: anything)."""
    n = len(tiles)
    if row == 0 and column == 0:
        return np.zeros(n, np.int64), np.full(n, _MODELS - 1, np.int64)
    if row == 0 or column == 0:
        line = tiles[:, 0, :] if row == 0 else tiles[:, :, 0]
        k = column if row == 0 else row
        activity = np.abs(line[:, k - 1] - line[:, k - 2]) if k > 1 else np.full(n, _EDGE_ACTIVITY, np.int64)
        return line[:, k - 1], _model_of(activity)
    a, b, c = tiles[:, row, column - 1], tiles[:, row - 1, column], tiles[:, row - 1, column - 1]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    prediction = np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))
    return prediction, _model_of(np.abs(a - c) + np.abs(b - c))


# The models: discrete Laplace tables (facewire.shared.codec.expression.entropy) of these mean |residual|
# (levels), by the activity of the cells above and left (the sum of their steps): a flat neighbourhood
# almost always continues, an edge's cells are anything. Means above 4 would need the tables' shifted
# coding; residuals stay within +-(LEVELS - 1), inside the tables' alphabet, so no escape is ever coded.
_ACTIVITY_LIMITS = (0, 2, 5, 10)  # activity <= these: models 0..3; above: model 4
_MODEL_MEANS = (0.3, 0.9, 1.8, 3.0, 4.0)
_MODELS = len(_MODEL_MEANS)
_EDGE_ACTIVITY = 6  # the second cell of a tile's first row or column: nothing to go by
_FREQS = TABLE_FREQS[[bin_for_mean(mean) for mean in _MODEL_MEANS]]
_U = (TABLE_FREQS.shape[1] - 3) // 2
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_PAD = 0x80
assert LEVELS - 1 <= _U


def _model_of(activity: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.searchsorted(np.array(_ACTIVITY_LIMITS), activity, side="left").astype(np.int64)


def _cells() -> list[tuple[int, int]]:
    return [(row, column) for row in range(TILE) for column in range(TILE)]


def _symbols(tiles: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """The tiles' residuals as symbols of the tables' alphabet and their models, cell by cell (every tile's
    first cell, then every tile's second, ...: the decoder decodes one cell of every tile at a time)."""
    symbols, models = [], []
    for row, column in _cells():
        prediction, model = _context(tiles, row, column)
        symbols.append(tiles[:, row, column] - prediction + _U + 1)
        models.append(model)
    return np.concatenate(symbols).astype(np.int32), np.concatenate(models)


def encode_levels(tiles: npt.NDArray[np.int64]) -> bytes:
    """The (n, TILE, TILE) levels range-coded, with the trailing bytes the decoder's padding restores cut."""
    symbols, models = _symbols(tiles)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, _CATEGORICAL, _FREQS[models])
    words = encoder.get_compressed().astype("<u4").tobytes()
    best = words
    for cut in range(len(words) - 1, max(len(words) - 4, 0) - 1, -1):
        try:
            same = np.array_equal(decode_levels(words[:cut], len(tiles)), tiles)
        except PayloadError:
            same = False
        if not same:
            break
        best = words[:cut]
    return best


def decode_levels(body: bytes, count: int) -> npt.NDArray[np.int64]:
    """`count` tiles' levels from `body`; PayloadError when they do not decode or leave 0..LEVELS - 1."""
    words = np.frombuffer(body + bytes([_PAD]) * (-len(body) % 4), dtype="<u4").astype(np.uint32)
    tiles = np.zeros((count, TILE, TILE), np.int64)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for row, column in _cells():
            prediction, model = _context(tiles, row, column)
            symbols = np.asarray(decoder.decode(_CATEGORICAL, _FREQS[model]), np.int64)
            tiles[:, row, column] = prediction + symbols - (_U + 1)
    except (ValueError, RuntimeError, OverflowError, AssertionError) as exc:
        raise PayloadError(f"alpha-fix levels do not decode: {exc}") from None
    if tiles.min() < 0 or tiles.max() >= LEVELS:
        raise PayloadError(f"alpha-fix levels outside 0..{LEVELS - 1}")
    return tiles


_COSTS = np.asarray(-np.log2(_FREQS / _FREQS.sum(axis=1, keepdims=True)), np.float64)


def tile_bytes(tiles: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """What setting each tile costs in bytes, about: its levels under the range coder's models, and its op."""
    symbols, models = _symbols(tiles)
    bits = _COSTS[models, symbols].reshape(TILE * TILE, len(tiles)).sum(axis=0)
    return np.asarray(bits / 8.0 + 1.0, np.float64)


# --- payload ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ops:
    """One frame's corrections: drop everything first (`clear_all`), then set or clear tiles."""

    clear_all: bool = False
    indices: tuple[int, ...] = ()  # row-major tile indices, increasing
    levels: tuple[npt.NDArray[np.uint8] | None, ...] = ()  # per op: the tile's TILE x TILE levels, or None (clear)

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.levels) or any(b <= a for a, b in itertools.pairwise(self.indices)):
            raise ValueError("ops need one entry per tile, in increasing tile order")


def _read_uvarint(payload: bytes, position: int) -> tuple[int, int]:
    try:
        return read_uvarint(payload, position, 4)
    except VarintError as exc:
        raise PayloadError(f"alpha-fix code: {exc}") from None


def encode_ops(ops: Ops) -> bytes:
    out = bytearray([_CLEAR_ALL if ops.clear_all else 0])
    out += encode_uvarint(len(ops.indices))
    previous = -1
    for index, levels in zip(ops.indices, ops.levels, strict=True):
        out += encode_uvarint((index - previous - 1) << 1 | (levels is not None))
        previous = index
    sets = [levels for levels in ops.levels if levels is not None]
    if sets:
        out += encode_levels(np.stack(sets).astype(np.int64))
    return bytes(out)


def decode_ops(payload: bytes, grid: Grid) -> Ops:
    """The ops in `payload` for a frame cut by `grid`; raises PayloadError on bytes no encoder makes."""
    if not payload:
        raise PayloadError("alpha-fix code is empty")
    if payload[0] & ~_CLEAR_ALL:
        raise PayloadError(f"alpha-fix code has unknown flags {payload[0]:#x}")
    count, position = _read_uvarint(payload, 1)
    if count > grid.count:
        raise PayloadError(f"alpha-fix code has {count} ops for {grid.count} tiles")
    indices: list[int] = []
    sets: list[bool] = []
    previous = -1
    for _ in range(count):
        value, position = _read_uvarint(payload, position)
        index = previous + 1 + (value >> 1)
        if index >= grid.count:
            raise PayloadError(f"alpha-fix tile {index} is beyond the frame's {grid.count}")
        indices.append(index)
        sets.append(bool(value & 1))
        previous = index
    body = payload[position:]
    n = sum(sets)
    tiles: list[npt.NDArray[np.uint8]] = []
    if n:
        tiles = list(decode_levels(body, n).astype(np.uint8))
    elif body:
        raise PayloadError(f"alpha-fix code has {len(body)} bytes after its ops")
    it = iter(tiles)
    return Ops(bool(payload[0] & _CLEAR_ALL), tuple(indices), tuple(next(it) if s else None for s in sets))


def apply_ops(fix: AlphaFix, ops: Ops) -> AlphaFix:
    """The held tiles after `ops` (a new AlphaFix; `fix` is not changed: frames already decoded keep theirs)."""
    held = np.zeros_like(fix.held) if ops.clear_all else fix.held.copy()
    levels = fix.levels.copy()
    columns = held.shape[1]
    for index, tile in zip(ops.indices, ops.levels, strict=True):
        row, column = divmod(index, columns)
        held[row, column] = tile is not None
        if tile is not None:
            levels[row * TILE:(row + 1) * TILE, column * TILE:(column + 1) * TILE] = tile
    return AlphaFix(held, levels)


# --- the seam -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FixValues:
    """One frame's comparison of the receiver's prediction with the matte, from the analysing thread."""

    kf: int  # the keyframe the prediction was drawn from
    prediction: npt.NDArray[np.uint8]  # the receiver's predicted alpha, x255 (it is a remapped 8-bit channel)
    matte: npt.NDArray[np.uint8]  # the sender's matte, x255
    levels: npt.NDArray[np.uint8]  # the matte at 1/CELL size, whole tiles (matte_levels)
    prediction_error: npt.NDArray[np.float32]  # per tile: mean |prediction - matte|
    set_error: npt.NDArray[np.float32]  # per tile: mean |the tile's levels upsampled - matte|
    bps: float  # the corrections' rate the budget allowed


def _to_u8(alpha: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    return np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def prepare_values(kf: int, prediction: npt.NDArray[np.float32], matte: npt.NDArray[np.float32], bps: float) -> FixValues:
    """The comparison the encoder decides from: pure, on the analysing thread."""
    h, w = matte.shape
    grid = Grid((w, h))
    matte = matte.astype(np.float32, copy=False)
    levels = matte_levels(matte, grid)
    whole = upsample(levels.astype(np.float32) * np.float32(1.0 / (LEVELS - 1)), grid.padded)[:h, :w]
    return FixValues(kf, _to_u8(prediction), _to_u8(matte), levels,
                     tile_means(np.abs(prediction - matte), grid), tile_means(np.abs(whole - matte), grid), bps)


@dataclass
class AlphaFixPreparer(NoSetup):
    """On the analysing thread, at FIX_FPS: the receiver's prediction, drawn by the sender's replica of it
    (the receiver's own renderer, facewire.shared.render.replica), against the matte."""

    fps: float = FIX_FPS
    replica: Replica | None = None  # built on first use: only a sender that sends corrections loads the renderer
    _last_us: int | None = None

    def prepare_fix(self, analysis: FrameAnalysis, landmarks: Landmarks | None, keyframe: KeyframeState | None,
                    body: Affine | None, bps: float) -> Prepared | None:
        """This frame's comparison, or None: not due, no matte or keyframe, no rate, or another frame size."""
        matte, ts_us = analysis.alpha, analysis.frame.ts_us
        if matte is None or keyframe is None or bps <= 0 or matte.shape != keyframe.image.shape[:2]:
            return None
        if not (self._last_us is None or ts_us - self._last_us >= 1e6 / self.fps - 1000 or ts_us < self._last_us):
            return None  # a millisecond of slack: a 30 fps camera's third frame is 99.9 ms after the first
        if self.replica is None:
            from facewire.shared.render.replica import Replica  # the renderer: loaded when used

            self.replica = Replica.mesh()
        self.replica.use(keyframe)
        face = "lost" if analysis.face is None or landmarks is None else analysis.face.state
        prediction = self.replica.predict(self.replica.frame_state(landmarks, face, body=body)).alpha
        self._last_us = ts_us
        return Prepared(values=prepare_values(keyframe.kf, prediction, matte, bps))

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        return None  # prepared by `prepare_fix`, which needs the receiver's prediction


def _burst(bps: float) -> float:
    return max(bps / 8 * BURST_SECONDS, MIN_BURST_BYTES)


def _payload_bytes(bps: float) -> float:
    return max(PAYLOAD_SPREAD * bps / 8 / FIX_FPS, MIN_PAYLOAD_BYTES)


def payload_bound(bps: float) -> int:
    """At most what one payload costs at this rate: its spending, its flags and count, an estimate's slack."""
    return int(math.ceil(_payload_bytes(bps))) + 8


@dataclass
class AlphaFixEncoder(NoSetup):
    """At send time: what the receiver holds (only frames that are sent change it), the byte budget, the ops."""

    fix: AlphaFix | None = None
    tokens: float = 0.0
    _last_us: int | None = None
    _newest: int | None = None  # the newest keyframe a frame was drawn from
    _clear: bool = True  # the next payload drops everything (a new or lost receiver may hold anything)
    _refresh: set[int] = field(default_factory=set)  # held tiles to resend (after an intra frame)
    _levels: npt.NDArray[np.uint8] | None = None  # the matte's levels at the last comparison

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        kf = frame.drawn_from
        if kf is not None and (self._newest is None or kf > self._newest):
            # a newer keyframe's prediction starts from the matte again: what was held corrected the old one
            self._clear = self._clear or (self.fix is not None and bool(self.fix.held.any()))
            self._newest = kf
        prepared = frame.prepared.get(CAPABILITY)
        values = prepared.values if prepared is not None and isinstance(prepared.values, FixValues) else None
        grid = Grid((values.matte.shape[1], values.matte.shape[0])) if values is not None else None
        if self._clear:
            self.fix = None if grid is None else grid.empty()
        if intra and self.fix is not None:
            self._refresh = {int(i) for i in np.flatnonzero(self.fix.held)}
        chosen: dict[int, npt.NDArray[np.uint8] | None] = {}
        if values is not None and grid is not None:
            if self.fix is None or self.fix.held.shape != grid.tiles[::-1]:
                self.fix = grid.empty()
            self._accrue(frame.analysis.frame.ts_us, values.bps)
            spent = 0.0
            if values.kf == kf:
                chosen, spent = self._choose(values, grid)
            self._levels = values.levels
            # resending for a receiver that may lack tiles waits while half the burst is not in hand
            if self.tokens - spent >= 0.5 * _burst(values.bps):
                left = min(self.tokens, _payload_bytes(values.bps)) - spent
                chosen.update(self._refreshed(set(chosen), left, grid))
        if not chosen and not self._clear:
            return None
        order = sorted(chosen)
        ops = Ops(self._clear, tuple(order), tuple(chosen[i] for i in order))
        payload = encode_ops(ops)
        self.tokens -= len(payload)
        if self.fix is not None:
            self.fix = apply_ops(self.fix, ops)
        self._refresh -= set(order)
        self._clear = False
        return payload

    def _accrue(self, ts_us: int, bps: float) -> None:
        burst = _burst(bps)
        elapsed = 0.0 if self._last_us is None else min(max((ts_us - self._last_us) / 1e6, 0.0), BURST_SECONDS)
        self.tokens = min(self.tokens + bps / 8 * elapsed, burst)
        self._last_us = ts_us

    def _choose(self, values: FixValues, grid: Grid) -> tuple[dict[int, npt.NDArray[np.uint8] | None], float]:
        """Greedy by error removed per byte, within the tokens: each tile's best op that halves its error."""
        assert self.fix is not None
        shown = apply_fix(values.prediction.astype(np.float32) * np.float32(1 / 255), self.fix)
        error = tile_means(np.abs(shown - values.matte.astype(np.float32) * np.float32(1 / 255)), grid).ravel()
        candidates = np.flatnonzero(error > ACT_ERROR)
        allowance = min(self.tokens, _payload_bytes(values.bps))
        if not len(candidates) or allowance <= 0:
            return {}, 0.0
        columns = grid.tiles[0]
        held = self.fix.held.ravel()[candidates]
        wanted = _tiles_of(values.levels, candidates, columns)
        now = _tiles_of(self.fix.levels, candidates, columns)
        cost = tile_bytes(wanted)
        set_error = values.set_error.ravel()[candidates]
        clear_error = values.prediction_error.ravel()[candidates]
        limit = HALVE * error[candidates]
        # a held tile whose levels are already the matte's has nothing better to be set to
        changed = ~held | (wanted != now).any(axis=(1, 2))
        before = self._levels
        still = (np.zeros(len(candidates), bool) if before is None or before.shape != values.levels.shape else
                 (np.abs(wanted - _tiles_of(before, candidates, columns)) <= STILL_LEVELS).all(axis=(1, 2)))
        can_set = changed & still & (set_error <= limit)
        # a held tile the prediction now beats goes back to it (a byte), whether or not that halves the error
        can_clear = held & (clear_error < error[candidates])
        use_clear = can_clear & (~can_set | (clear_error <= set_error + ACT_ERROR / 3))
        gain = error[candidates] - np.where(use_clear, clear_error, set_error)
        price = np.where(use_clear, 1.0, cost)
        useful = can_set | can_clear
        chosen: dict[int, npt.NDArray[np.uint8] | None] = {}
        spent = 0.0
        for k in np.argsort(-(gain / price)):
            if not useful[k]:
                continue
            if spent + price[k] > allowance:
                continue
            spent += price[k]
            chosen[int(candidates[k])] = None if use_clear[k] else wanted[k].astype(np.uint8)
        return chosen, spent

    def _refreshed(self, chosen: set[int], left: float, grid: Grid) -> dict[int, npt.NDArray[np.uint8] | None]:
        """Held tiles resent as they are (lowest index first), with what the budget has left beyond a
        reserve (a burst of real corrections comes first)."""
        if not self._refresh or self.fix is None:
            return {}
        spare = left
        out: dict[int, npt.NDArray[np.uint8] | None] = {}
        for index in sorted(self._refresh - chosen):
            if not self.fix.held.ravel()[index]:
                continue
            tile = _tiles_of(self.fix.levels, np.array([index]), grid.tiles[0])
            cost = float(tile_bytes(tile)[0])
            if cost > spare:
                break
            spare -= cost
            out[index] = tile[0].astype(np.uint8)
        self._refresh -= {i for i in self._refresh if not self.fix.held.ravel()[i]}
        return out

    def reset(self) -> None:
        """The receiver lost the stream: it holds nothing it can rely on, so the next payload drops everything."""
        self._clear = True
        self._refresh = set()


@dataclass
class AlphaFixDecoder(NoSetup):
    """The tiles the receiver holds; every frame drawn carries them (`hold`), whether or not it brought ops."""

    fix: AlphaFix | None = None

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        if not (0 < draft.size[0] <= MAX_SIDE and 0 < draft.size[1] <= MAX_SIDE):
            raise PayloadError(f"alpha-fix for a frame of {draft.size}")
        grid = Grid(draft.size)
        fix = self.fix if self.fix is not None and self.fix.held.shape == grid.tiles[::-1] else grid.empty()
        self.fix = apply_ops(fix, decode_ops(payload, grid))

    def hold(self, draft: FrameDraft) -> None:
        fix = self.fix
        if fix is not None and fix.held.shape == Grid(draft.size).tiles[::-1] and fix.held.any():
            draft.alpha_fix = fix

    def reset(self) -> None:
        self.fix = None

