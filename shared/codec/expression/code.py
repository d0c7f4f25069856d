"""Quantising a face (pose and expression coefficients) on fixed grids, and the frame payload.

A face is a head pose and the mesh in the head-canonical frame (facewire.shared.face.pose),
written as neutral + coefficients @ basis.rows. Every value is an integer index on a fixed grid
(pose: degrees, pixels, log-scale; coefficients: canonical units, one step per basis stage), and
quantisation is *absolute*: the indices depend on this frame and the neutral only, so the sender
knows exactly what the receiver will draw before it decides what to send. The coefficients are
taken with the *decoded* pose, stage after stage on what earlier stages left, so they absorb part
of the pose's rounding.

Only the entropy coding predicts: a predicted frame codes q - q_previous under models that follow
each value's recent activity (an integer running mean, identical on both sides), an intra frame
codes q under models from the basis statistics. The integers are the only state, so encoder and
decoder agree exactly, whatever the platforms' floating point does.

Frame payload (protocol.md 7.4): byte 0 = version (bits 7-5, = 1) | INTRA (bit 4) | neutral
generation mod 16 (bits 3-0); then the 6 pose values and K coefficients, range-coded (entropy.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from facewire.shared.codec.expression.basis import POSE_VALUES, ExpressionBasis, Steps
from facewire.shared.codec.expression.entropy import STATE_CAP16, bin_for_mean, model_bin, range_decode, range_encode
from facewire.shared.codec.predictive import CodeError
from facewire.shared.face.pose import from_canonical, to_canonical
from facewire.shared.face.topology import MESH_SIZE
from facewire.shared.types import HeadPose, Landmarks

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

CODE_VERSION = 1
FRAME_INTRA = 0x10
GENERATION_MASK = 0x0F
MAX_FRAME_BYTES = 4096
# protocol.md 6.4's ranges: angles within +-180 deg, |tx|, |ty| <= 16384, 0 < scale <= 16384
_POSE_LIMITS = np.array([180.0] * 3 + [16384.0] * 2 + [math.log(16384.0)])
CANONICAL_LIMIT = 64.0  # a face's canonical coordinates are within a few units: this only refuses garbage


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Grid:
    """Everything that follows from a basis and its steps: the grids, their ranges and the intra and
    initial predicted models."""

    basis: ExpressionBasis
    steps: Steps
    pose_steps: F64 = field(init=False, repr=False)
    coeff_steps: F64 = field(init=False, repr=False)
    limits: I64 = field(init=False, repr=False)  # largest |index| per value
    intra_bins: I64 = field(init=False, repr=False)
    initial_activity: I64 = field(init=False, repr=False)  # predicted models start from typical motion

    def __post_init__(self) -> None:
        basis, ps = self.basis, self.steps.pose_steps()
        cs = self.steps.coeff_steps(basis.stage_sizes)
        # intra models: angles about 0 by their spread, tx and ty anywhere in a frame, scale about 128 px
        pose_mean = np.abs(basis.pose_std.astype(np.float64)) * math.sqrt(2.0 / math.pi) / ps
        pose_mean[3:5] = 256.0 / ps[3:5]
        pose_mean[5] = math.log(128.0) / ps[5]
        coeff_mean = basis.coeff_std.astype(np.float64) * math.sqrt(2.0 / math.pi) / cs
        motion = np.concatenate([basis.pose_delta.astype(np.float64) / ps, basis.coeff_delta.astype(np.float64) / cs])
        for name, value in (
            ("pose_steps", ps), ("coeff_steps", cs),
            ("limits", np.concatenate([np.floor(_POSE_LIMITS / ps), np.floor(CANONICAL_LIMIT / cs)]).astype(np.int64)),
            ("intra_bins", np.array([bin_for_mean(v) for v in np.concatenate([pose_mean, coeff_mean])], np.int64)),
            ("initial_activity", np.minimum(np.rint(16 * motion), STATE_CAP16).astype(np.int64)),
        ):
            object.__setattr__(self, name, value)

    @property
    def values(self) -> int:
        return POSE_VALUES + self.basis.size


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Neutral:
    """The sender's neutral face in use: `generation` names it in frames, `q` (478, 3) are its grid
    indices at steps.mesh_steps()."""

    generation: int
    q: I64
    grid: Grid
    points: F64 = field(init=False, repr=False)  # canonical units

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", self.q.astype(np.float64) * self.grid.steps.mesh_steps())


def pose_to_values(pose: HeadPose) -> F64:
    if not (pose.scale > 0 and all(math.isfinite(v) for v in pose.as_list())):
        raise CodeError(f"pose not finite or scale not positive: {pose}")
    return np.array([pose.yaw, pose.pitch, pose.roll, pose.tx, pose.ty, math.log(pose.scale)])


def values_to_pose(values: F64) -> HeadPose:
    yaw, pitch, roll, tx, ty, log_scale = (float(v) for v in values)
    return HeadPose(yaw, pitch, roll, tx, ty, math.exp(log_scale))


def quantise(neutral: Neutral, pose: HeadPose, landmarks: npt.ArrayLike) -> I64:
    """The grid indices (6 pose values, then K coefficients) of a face; CodeError for non-finite input."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (MESH_SIZE, 3) or not np.all(np.isfinite(lm)):
        raise CodeError(f"landmarks must be a finite ({MESH_SIZE}, 3) array, got {lm.shape}")
    grid = neutral.grid
    lim = grid.limits
    qp = np.clip(np.rint(pose_to_values(pose) / grid.pose_steps).astype(np.int64), -lim[:POSE_VALUES], lim[:POSE_VALUES])
    residual = (to_canonical(lm, values_to_pose(qp * grid.pose_steps)).astype(np.float64) - neutral.points).reshape(-1)
    parts = [qp]
    for sl, rows in zip(grid.basis.stage_slices, grid.basis.stage_rows64, strict=True):
        cs = grid.coeff_steps[sl]
        stage_lim = lim[POSE_VALUES:][sl]
        q = np.clip(np.rint((rows @ residual) / cs).astype(np.int64), -stage_lim, stage_lim)
        parts.append(q)
        residual = residual - (q * cs) @ rows  # later stages code what this one left
    return np.concatenate(parts)


def reconstruct(neutral: Neutral, q: I64) -> tuple[HeadPose, Landmarks]:
    """What a receiver draws for these indices: the pose and (478, 3) float32 landmarks in pixels
    (z relative to the depth of the point between the eyes)."""
    grid = neutral.grid
    pose = values_to_pose(q[:POSE_VALUES] * grid.pose_steps)
    coefficients = q[POSE_VALUES:] * grid.coeff_steps
    canonical = neutral.points + (coefficients @ grid.basis.rows64).reshape(MESH_SIZE, 3)
    return pose, from_canonical(canonical, pose)


@dataclass
class Prediction:
    """What both ends hold between frames: the last coded indices and each value's running mean
    |residual| (in 1/16 of a step), which picks its model."""

    q: I64 | None = None
    activity16: I64 | None = None

    def reset(self) -> None:
        self.q = self.activity16 = None

    def commit(self, grid: Grid, q: I64, residual: I64 | None) -> None:
        if residual is None or self.activity16 is None:
            self.activity16 = grid.initial_activity.copy()
        else:
            # an integer running mean with weight 1/4: follows a burst of motion within a few frames
            self.activity16 = (3 * self.activity16 + 16 * np.minimum(np.abs(residual), 4095) + 2) // 4
        self.q = q


def header(intra: bool, generation: int) -> int:
    return (CODE_VERSION << 5) | (FRAME_INTRA if intra else 0) | (generation & GENERATION_MASK)


def encode_frame(neutral: Neutral, q: I64, prediction: Prediction | None) -> bytes:
    """The frame payload of `q`: intra when `prediction` is None or holds nothing, else predicted from
    it (which then holds `q`)."""
    grid = neutral.grid
    previous = None if prediction is None else prediction.q
    if previous is None:
        body = range_encode(q, grid.intra_bins)
        if prediction is not None:
            prediction.commit(grid, q, None)
        return bytes([header(True, neutral.generation)]) + body
    assert prediction is not None and prediction.activity16 is not None
    residual = q - previous
    body = range_encode(residual, model_bin(prediction.activity16))
    prediction.commit(grid, q, residual)
    return bytes([header(False, neutral.generation)]) + body


def read_header(payload: bytes) -> tuple[bool, int]:
    """(intra, generation mod 16) of a frame payload; CodeError unless its size and version are right."""
    if not 1 <= len(payload) <= MAX_FRAME_BYTES:
        raise CodeError(f"expression code of {len(payload)} bytes")
    version = payload[0] >> 5
    if version != CODE_VERSION:
        raise CodeError(f"expression code version {version}, this decoder reads {CODE_VERSION}")
    return bool(payload[0] & FRAME_INTRA), payload[0] & GENERATION_MASK


def decode_frame(neutral: Neutral, payload: bytes, prediction: Prediction | None) -> I64:
    """The indices of a frame payload coded under `neutral`; `prediction` (None for a keyframe's code,
    which must be intra) is updated only when the payload decodes."""
    intra, generation = read_header(payload)
    if generation != neutral.generation & GENERATION_MASK:
        raise CodeError(f"expression code for neutral generation {generation} (mod 16), "
                        f"this decoder holds {neutral.generation & GENERATION_MASK}")
    grid = neutral.grid
    if intra:
        q, residual = exact_decode(payload[1:], grid.intra_bins), None
    else:
        if prediction is None or prediction.q is None or prediction.activity16 is None:
            raise CodeError("predicted expression code, but this decoder holds no previous frame (an intra code decodes)")
        residual = exact_decode(payload[1:], model_bin(prediction.activity16))
        q = prediction.q + residual
    if np.any(np.abs(q) > grid.limits):
        raise CodeError("expression code decodes to values out of range")
    if prediction is not None:
        prediction.commit(grid, q, residual)
    return q


def exact_decode(body: bytes, bins: npt.ArrayLike) -> I64:
    """`range_decode`, refusing any body but the one the encoder writes for the decoded values (a
    payload with bytes added, cut or changed past what the values need is damaged, not a variant)."""
    values = range_decode(body, bins)
    if range_encode(values, bins) != body:
        raise CodeError("expression code is not the encoding of what it decodes to (trailing or damaged bytes)")
    return values
