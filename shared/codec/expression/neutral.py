"""The sender's neutral face: estimated online from the frames that look neutral, and carried to
the receiver in a setup payload when it changes.

Only the part of the neutral *outside* the basis' span changes what the receiver draws (the
coefficients absorb the rest), so a new neutral is sent only when that part moved; the first one
is provisional (the first frame with its in-span expression taken out) and replaced as soon as a
neutral-looking frame arrives. About 440-610 bytes, 2-4 times in the first minute, then rarely.

Setup payload (protocol.md 7.4; every setup stands alone, so a receiver needs only the last one):

    u8 version (1), u8 flags (bit 0 TREE; others 0), u8 generation, u8 stage count S,
    u32 basis id (the first 4 bytes of the basis file's sha256, big-endian as a number),
    5 x u32 steps (angle, translation, log-scale, mesh x-y, mesh z) and S x u32 coefficient steps,
        each in 1e-5 of its unit,
    u16 point count (478), 3 x u8 model per axis,
    the range-coded 478 x 3 mesh indices minus the basis' mean neutral on the same grid (TREE: each
        point minus its parent along the basis' mesh tree), row-major.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facewire.shared.codec.expression.basis import STEP_FIXED, ExpressionBasis, Steps, to_fixed
from facewire.shared.codec.expression.code import CANONICAL_LIMIT, Grid, Neutral, exact_decode
from facewire.shared.codec.expression.entropy import MODELS, bin_for_mean, range_encode
from facewire.shared.codec.predictive import CodeError
from facewire.shared.face.measures import eye_open_ratio, mouth_ratio
from facewire.shared.face.topology import MESH_SIZE
from facewire.shared.types import HeadPose

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SETUP_VERSION = 1
SETUP_TREE = 0x01
MAX_SETUP_BYTES = 16384
_HEAD = struct.Struct("<BBBBI")  # version, flags, generation, stage count, basis id
_STEPS = struct.Struct("<5I")  # angle, translation, log-scale, mesh x-y, mesh z
_MESH = struct.Struct("<HBBB")  # point count, model per axis


def _reference(grid: Grid) -> I64:
    return np.rint(grid.basis.mean_neutral.astype(np.float64) / grid.steps.mesh_steps()).astype(np.int64)


def _to_tree(d: I64, parent: I64) -> I64:
    out = d.copy()
    has = parent >= 0
    out[has] -= d[parent[has]]
    return out


def _from_tree(v: I64, parent: I64, order: I64) -> I64:
    d = v.copy()
    for i in order[1:]:  # parents first; the root keeps its value
        d[i] += d[parent[i]]
    return d


def encode_setup(neutral: Neutral) -> bytes:
    """The setup payload of `neutral`: its mesh plain or along the mesh tree, whichever is shorter."""
    grid = neutral.grid
    basis, steps = grid.basis, grid.steps
    stages = len(basis.stage_sizes)
    head_steps = _STEPS.pack(*(to_fixed(v) for v in (steps.angle_deg, steps.translation_px, steps.log_scale,
                                                      steps.mesh, steps.mesh_z)))
    head_steps += struct.pack(f"<{stages}I", *(to_fixed(c) for c in steps.coeff))
    d = neutral.q - _reference(grid)
    best = b""
    for tree in (False, True):
        values = _to_tree(d, basis.mesh_parent) if tree else d
        bins = [bin_for_mean(float(np.mean(np.abs(values[:, axis])))) for axis in range(3)]
        head = _HEAD.pack(SETUP_VERSION, SETUP_TREE if tree else 0, neutral.generation & 0xFF, stages, basis.basis_id)
        body = range_encode(values.reshape(-1), np.tile(np.array(bins, np.int64), MESH_SIZE))
        payload = head + head_steps + _MESH.pack(MESH_SIZE, *bins) + body
        if not best or len(payload) < len(best):
            best = payload
    return best


def decode_setup(basis: ExpressionBasis, payload: bytes) -> Neutral:
    """The neutral a setup payload carries; CodeError for anything malformed or made for another basis."""
    if not _HEAD.size <= len(payload) <= MAX_SETUP_BYTES:
        raise CodeError(f"expression setup of {len(payload)} bytes")
    version, flags, generation, stages, basis_id = _HEAD.unpack_from(payload)
    if version != SETUP_VERSION:
        raise CodeError(f"expression setup version {version}, this decoder reads {SETUP_VERSION}")
    if flags & ~SETUP_TREE:
        raise CodeError(f"expression setup flags {flags:#04x} not defined")
    if basis_id != basis.basis_id:
        raise CodeError(f"expression setup made for basis {basis_id:08x}, this receiver holds {basis.basis_id:08x} "
                        "(sender and receiver ship different expression bases)")
    if stages != len(basis.stage_sizes):
        raise CodeError(f"expression setup declares {stages} stages, the basis has {len(basis.stage_sizes)}")
    offset = _HEAD.size
    if len(payload) < offset + _STEPS.size + 4 * stages + _MESH.size:
        raise CodeError("expression setup shorter than its header")
    fixed = _STEPS.unpack_from(payload, offset)
    offset += _STEPS.size
    coeff = struct.unpack_from(f"<{stages}I", payload, offset)
    offset += 4 * stages
    count, *bins = _MESH.unpack_from(payload, offset)
    offset += _MESH.size
    if count != MESH_SIZE:
        raise CodeError(f"expression setup declares {count} points, expected {MESH_SIZE}")
    if any(b >= MODELS for b in bins):
        raise CodeError("expression setup names an unknown model")
    try:
        angle, translation, log_scale, mesh, mesh_z = (v * STEP_FIXED for v in fixed)
        steps = Steps(angle, translation, log_scale, tuple(c * STEP_FIXED for c in coeff), mesh, mesh_z)
        grid = Grid(basis, steps)
    except ValueError as exc:
        raise CodeError(f"expression setup: {exc}") from None
    values = exact_decode(payload[offset:], np.tile(np.array(bins, np.int64), MESH_SIZE)).reshape(MESH_SIZE, 3)
    if np.any(np.abs(values) > (1 << 40)):
        raise CodeError("expression setup values out of range")
    d = _from_tree(values, basis.mesh_parent, basis.mesh_order) if flags & SETUP_TREE else values
    q = _reference(grid) + d
    if np.any(np.abs(q.astype(np.float64) * steps.mesh_steps()) > CANONICAL_LIMIT):
        raise CodeError("expression setup's neutral face out of range")
    return Neutral(generation, q, grid)


@dataclass(frozen=True)
class NeutralConfig:
    """Which frames show the neutral face, and when a new estimate is worth a setup.

    A frame counts when the mouth is closed (inner-lip gap under `mouth_closed` of the mouth width),
    both eyes are at least `eye_open` of the recent typical openness (blinks and squints are out,
    whatever the person's eye shape), and the head is within `max_angle_deg` of frontal (MediaPipe's
    depth, hence the canonical shape, bends with large turns). Every `stride`-th such frame enters a
    buffer of `buffer` meshes; the estimate is their stage-wise median, recomputed every `refresh`
    frames once `warmup` meshes are in. A provisional neutral is replaced as soon as `first_warmup`
    are in. Later, a new neutral goes when the part outside the basis' span moved by more than
    `threshold` canonical units RMS (x, y), or the whole by more than `threshold_full`; the wait
    between them starts at `min_interval` frames and doubles after each, up to `max_interval`.
    (R1's measurements on the project's clips chose these; REPORT of the expression code.)"""

    mouth_closed: float = 0.08
    eye_open: float = 0.75
    max_angle_deg: float = 20.0
    buffer: int = 96
    stride: int = 2
    refresh: int = 30
    warmup: int = 8
    first_warmup: int = 1
    threshold: float = 0.01
    threshold_full: float = 0.03
    min_interval: int = 30
    max_interval: int = 1800
    eye_history: int = 150


def _rms_xy(d: F64) -> float:
    return float(np.sqrt(np.mean(np.sum(d[:, :2] ** 2, axis=1))))


class NeutralEstimator:
    """Online estimate of a person's neutral face in the canonical frame (one per sender)."""

    def __init__(self, basis: ExpressionBasis | None = None, config: NeutralConfig | None = None) -> None:
        self.config = config or NeutralConfig()
        self.basis = basis
        self._meshes: deque[F64] = deque(maxlen=self.config.buffer)
        self._eyes: deque[float] = deque(maxlen=self.config.eye_history)
        self._accepted = 0
        self._frames = 0
        self._since_proposal = 0
        self._proposals = 0
        self._estimate: F64 | None = None
        self._estimate_at = -1
        self._typical_eyes = 0.0

    @property
    def ready(self) -> bool:
        return len(self._meshes) >= self.config.warmup

    def _looks_neutral(self, canonical: F64, pose: HeadPose) -> bool:
        c = self.config
        eyes = min(eye_open_ratio(canonical, "right"), eye_open_ratio(canonical, "left"))
        self._eyes.append(eyes)
        if self._frames % 10 == 1 or len(self._eyes) < 10:  # a slow statistic: no need for it every frame
            self._typical_eyes = float(np.percentile(np.fromiter(self._eyes, float), 75))
        frontal = max(abs(pose.yaw), abs(pose.pitch), abs(pose.roll)) <= c.max_angle_deg
        return frontal and mouth_ratio(canonical) <= c.mouth_closed and eyes >= c.eye_open * self._typical_eyes

    def observe(self, canonical: npt.ArrayLike, pose: HeadPose) -> None:
        mesh = np.asarray(canonical, dtype=np.float64)
        self._frames += 1
        self._since_proposal += 1
        if self._looks_neutral(mesh, pose):
            if self._accepted % self.config.stride == 0:
                self._meshes.append(mesh.copy())
            self._accepted += 1

    def estimate(self, fresh: bool = False) -> F64 | None:
        """The stage-wise median of the neutral-looking frames seen (None before the first)."""
        if not self._meshes:
            return None
        if fresh or self._estimate is None or self._frames - self._estimate_at >= self.config.refresh:
            stacked = np.stack(self._meshes).reshape(len(self._meshes), -1)
            self._estimate = self._median(stacked).reshape(MESH_SIZE, 3)
            self._estimate_at = self._frames
        return self._estimate

    def _median(self, meshes: F64) -> F64:
        # A coordinate-wise median of faces with different expressions leaves expression residue
        # outside the basis' span, which no coefficient can absorb: take the median of each stage's
        # coefficients and, apart, of what no stage expresses.
        if self.basis is None:
            return np.median(meshes, axis=0)
        mean = self.basis.mean_neutral.astype(np.float64).reshape(-1)
        rest = meshes - mean
        out = mean.copy()
        for rows in self.basis.stage_rows64:
            c = rest @ rows.T
            rest = rest - c @ rows
            out += np.median(c, axis=0) @ rows
        return out + np.median(rest, axis=0)

    def first_guess(self, canonical: npt.ArrayLike) -> F64:
        """A neutral from one frame of any expression: the frame with its in-span expression taken out."""
        mesh = np.asarray(canonical, dtype=np.float64)
        if self.basis is None:
            return mesh.copy()
        return mesh - self.basis.span_part(mesh - self.basis.mean_neutral)

    def proposal(self, current: F64, provisional: bool = False) -> F64 | None:
        """A new neutral worth sending, or None. provisional: `current` is a first guess."""
        c = self.config
        if provisional:
            if len(self._meshes) < c.first_warmup:
                return None
            self._since_proposal = 0
            return self.estimate(fresh=True)
        wait = min(c.max_interval, c.min_interval << min(self._proposals, 30))
        if not self.ready or self._since_proposal < wait:
            return None
        estimate = self.estimate()
        assert estimate is not None
        change = estimate - current
        outside = change - self.basis.span_part(change) if self.basis is not None else change
        if _rms_xy(outside) <= c.threshold and _rms_xy(change) <= c.threshold_full:
            return None
        self._since_proposal = 0
        self._proposals += 1
        return estimate


class NeutralSource:
    """The sender's neutral in use: fed every tracked frame, it says when a new one is adopted."""

    def __init__(self, grid: Grid, config: NeutralConfig | None = None) -> None:
        self.grid = grid
        self.estimator = NeutralEstimator(grid.basis, config)
        self.neutral: Neutral | None = None
        self._provisional = False

    def observe(self, canonical: npt.ArrayLike, pose: HeadPose, may_replace: bool = True) -> Neutral | None:
        """Feed one tracked frame (canonical mesh and pose); the new neutral when one is adopted. With
        `may_replace` false the frame only feeds the estimate (a thin link cannot afford a setup now)."""
        mesh = np.asarray(canonical, dtype=np.float64)
        self.estimator.observe(mesh, pose)
        if self.neutral is not None and not may_replace:
            return None
        if self.neutral is None:
            estimate = self.estimator.estimate() if self.estimator.ready else None
            self._provisional = estimate is None
            return self._adopt(self.estimator.first_guess(mesh) if estimate is None else estimate)
        proposal = self.estimator.proposal(self.neutral.points, self._provisional)
        if proposal is None:
            return None
        self._provisional = False
        return self._adopt(proposal)

    def _adopt(self, canonical: F64) -> Neutral | None:
        if canonical.shape != (MESH_SIZE, 3) or not np.all(np.abs(canonical) < CANONICAL_LIMIT):
            return None  # a tracker glitch far outside any face: keep the neutral in use
        q = np.rint(canonical / self.grid.steps.mesh_steps()).astype(np.int64)
        if self.neutral is not None:
            # A point that moved by one grid step keeps its place: the median's jitter would show as a
            # step in the decoded face (lids, where a step is a visible part of the opening).
            moved = q - self.neutral.q
            moved[np.abs(moved) <= 1] = 0
            q = self.neutral.q + moved
        generation = 0 if self.neutral is None else (self.neutral.generation + 1) % 256
        self.neutral = Neutral(generation, q, self.grid)
        return self.neutral
