"""The body-motion code (capability `body-motion`, role `body`; protocol.md, "Body-motion code").

The receiver draws the person by warping a keyframe: the face with its dense mesh, rings around it
following the head, and the rest of the picture — shoulders, body, hair far from the face — with
one affine motion of the body sent here, a few bytes a frame (facewire.shared.render.mesh).

- The sender estimates the motion on its analysing thread (`estimate_body_motion`): a fit (OpenCV's
  ECC) of the keyframe's person, as the receiver decoded it, to this frame's, at a width of
  ESTIMATE_WIDTH pixels, on the matte brightened by the picture's luma (the silhouette always has
  contrast, clothes add texture; the frame's matte is a learned matter's CoarseMatte where it has one:
  `frame_signal`), the face and its first ring left out (they follow the head): a
  shift, or an affine where it fits clearly better; then steadied against the last estimate
  (`smooth_motion`) so the fit's noise does not make the shoulders swim.
- The motion is relative to one keyframe, the one the frame is drawn from. The preparer estimates it
  for each keyframe the uplink may name (the one chosen for the frame, and the newest built, whose
  parts may still be crossing the link); the encoder sends the one for the keyframe the frame is
  actually drawn from (`CodedFrame.drawn_from`), nothing when it has none.
- The motion is carried as the displacement of three control points of the frame (the bottom
  corners and the top's middle), from the frame to the keyframe, in quarter pixels: an affine
  exactly, whose error inside the frame is at most that of its control points. Quantised on the
  analysing thread, so the prepared values are exactly what the receiver decodes.

Payload: u8 flags (bit 0 intra, bit 1 reserved, bits 2-7 which of the six values follow), then the
values that are not 0 as zigzag LEB128 varints: the control points' displacements (x0, y0, x1, y1,
x2, y2) in quarter pixels, as they are (intra) or less the previous payload's (predicted). A body at
rest costs one byte. Each decoded displacement lies within MAX_DISPLACEMENT of the frame's size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.codec.predictive import CodeError
from facewire.shared.codec.seam import CodedFrame, FrameDraft, NoSetup, Prepared
from facewire.shared.face import topology as topo
from facewire.shared.types import Affine, Alpha, FrameAnalysis, Image, KeyframeState, Landmarks
from facewire.shared.wire.varint import VarintError, encode_uvarint, read_uvarint

log = logging.getLogger(__name__)

CAPABILITY = "body-motion"
STEPS_PER_PIXEL = 4
# The control points, as fractions of the frame's width and height.
CONTROL = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]], np.float64)
MAX_DISPLACEMENT = 0.5  # of the frame's larger side: a body further away is another picture (a keyframe)
ESTIMATE_WIDTH = 96
FACE_MARGIN = 1.35  # the face's first ring (facewire.shared.render.mesh) follows the head, not the body
_INTRA = 1
_RESERVED = 2
_FIRST_VALUE_BIT = 2  # flag bits 2-7: which of the six values the payload carries (the others are 0)
_MAX_VALUE_BYTES = 4  # a zigzagged value of up to 28 bits: far beyond MAX_DISPLACEMENT at any frame size
SMOOTH_PX = 3.0
AFFINE_GAIN = 0.01
_MAX_LINEAR = 0.25  # an estimate that scales, shears or turns more than this is a failed fit, not a body
Quantised = tuple[int, int, int, int, int, int]
SOURCES_KEPT = 8  # keyframes whose body_signal the preparer keeps (the coder keeps up to 2 * REFERENCES of them)


def control_points(size: tuple[int, int]) -> npt.NDArray[np.float64]:
    return CONTROL * np.array(size, np.float64)


def motion_matrix(q: Quantised, size: tuple[int, int]) -> Affine:
    """The affine (frame to keyframe) of a quantised motion: the same arithmetic on both sides."""
    points = control_points(size)
    moved = points + np.array(q, np.float64).reshape(3, 2) / STEPS_PER_PIXEL
    # Solve [x y 1] @ M.T = moved for the three points.
    system = np.hstack([points, np.ones((3, 1))])
    return np.linalg.solve(system, moved).T.astype(np.float64)


def quantise_motion(matrix: Affine, size: tuple[int, int]) -> Quantised:
    points = control_points(size)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    limit = MAX_DISPLACEMENT * max(size) * STEPS_PER_PIXEL
    q = np.clip(np.rint((moved - points) * STEPS_PER_PIXEL), -limit, limit).astype(np.int64).ravel()
    return (int(q[0]), int(q[1]), int(q[2]), int(q[3]), int(q[4]), int(q[5]))


def _area_fast(shape: tuple[int, ...], size: tuple[int, int]) -> bool:
    """Whether OpenCV reduces `shape` to `size` by its integer-factor area path (cv::resize's own test): its 8-bit
    arithmetic may round otherwise than a float average rounded to even (at a factor of 2 it does)."""
    scales = (shape[1] / size[0], shape[0] / size[1])
    return all(abs(scale - round(scale)) < np.finfo(np.float64).eps for scale in scales)


def _signal(alpha: Alpha, image: Image, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if _area_fast(alpha.shape, size):
        small = cv2.resize(np.asarray(alpha, np.float32), size, interpolation=cv2.INTER_AREA)
        luma_small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    else:
        # One area reduction of (alpha, luma) instead of two, ~0.5 ms less at 640x480. OpenCV's general area path
        # averages 8-bit pixels in float and rounds as np.rint does, so the luma comes out as it would reduced alone.
        both = cv2.resize(cv2.merge([np.asarray(alpha, np.float32), luma.astype(np.float32)]), size,
                          interpolation=cv2.INTER_AREA)
        small, luma_small = both[..., 0], np.rint(both[..., 1])
    return np.asarray(small * (0.5 + luma_small * np.float32(0.5 / 255.0)), np.float32)


def _body_mask(face: Landmarks | None, size: tuple[int, int], scale: float) -> npt.NDArray[np.uint8]:
    mask = np.full((size[1], size[0]), 255, np.uint8)
    if face is not None:
        oval = face[topo.face_oval_ring(), :2].astype(np.float64)
        centre = oval.mean(axis=0)
        grown = (centre + FACE_MARGIN * (oval - centre)) * scale
        cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], 0)
    return mask


def estimate_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The (width, height) the fit runs at for frames of this shape."""
    height, width = shape[:2]
    return ESTIMATE_WIDTH, max(8, round(height * ESTIMATE_WIDTH / width))


def body_signal(alpha: Alpha, image: Image) -> npt.NDArray[np.float32]:
    """The picture the fit compares (at `estimate_size`): the matte brightened by the luma. A keyframe's is
    the same for every frame drawn from it, so the preparer computes it once (~1.3 ms at 640x480)."""
    return _signal(alpha, image, estimate_size(alpha.shape))


def frame_signal(analysis: FrameAnalysis) -> npt.NDArray[np.float32]:
    """`body_signal` of an analysed frame: from its CoarseMatte (the network's mask and the frame at the network's
    size: ~0.3 ms at 640x480, where refining the matte to the frame's size and reducing it again took ~2.7) where it
    has one, else from its matte."""
    size = estimate_size(analysis.frame.image.shape)
    if analysis.coarse is not None:
        return _signal(analysis.coarse.alpha, analysis.coarse.image, size)
    if analysis.alpha is None:
        raise ValueError("the frame has neither a matte nor a coarse one")
    return _signal(analysis.alpha, analysis.frame.image, size)


def estimate_body_motion(keyframe: KeyframeState, alpha: Alpha, image: Image, face: Landmarks | None,
                         start: Affine | None = None) -> Affine | None:
    """The affine taking this frame's body to the keyframe's (frame to keyframe), or None when the fit
    fails or finds no plausible body motion. `start`: the last estimate against this keyframe."""
    if keyframe.alpha is None or keyframe.alpha.shape != alpha.shape:
        return None
    return fit_body_motion(body_signal(alpha, image), body_signal(keyframe.alpha, keyframe.image), alpha.shape, face,
                           start)


def fit_body_motion(template: npt.NDArray[np.float32], source: npt.NDArray[np.float32], shape: tuple[int, ...],
                    face: Landmarks | None, start: Affine | None = None) -> Affine | None:
    """`estimate_body_motion` from the frame's and the keyframe's `body_signal` (frames of `shape`).

    A shift is fitted first; the full affine (starting from it) is kept only when it matches the keyframe
    better by AFFINE_GAIN of ECC's correlation. A body cut by the frame's edges leaves scale and shear
    barely constrained: fitted anyway they swing by pixels from frame to frame (1 px a frame where the
    body is on a still talking head, 0.1 px for the shift alone) and the shoulders' edges swim.
    """
    height, width = shape[:2]
    scale = ESTIMATE_WIDTH / width
    size = estimate_size(shape)
    if template.shape != (size[1], size[0]) or source.shape != template.shape:
        raise ValueError(f"body signals {template.shape} and {source.shape} are not {size[1]}x{size[0]}")
    # A low-resolution pixel's centre in full-resolution pixels: x_low = scale * x + shift.
    shift = 0.5 * scale - 0.5
    mask = _body_mask(face, size, scale)
    if int(np.count_nonzero(mask)) < 0.2 * mask.size:
        return None
    guess = np.eye(2, 3, dtype=np.float32)
    if start is not None:
        guess[:, 2] = start[:, 2] * scale + shift - start[:, :2] @ np.array([shift, shift]) + (start[:, :2] - np.eye(2)) @ [
            0.5 * size[0], 0.75 * size[1]]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 25, 1e-3)
    try:
        rho, warp = cv2.findTransformECC(template, source, guess, cv2.MOTION_TRANSLATION, criteria, mask, 5)
    except cv2.error:
        return None
    try:
        rho_affine, affine = cv2.findTransformECC(template, source, warp.copy(), cv2.MOTION_AFFINE, criteria, mask, 5)
        if rho_affine > rho + AFFINE_GAIN:
            warp = affine
    except cv2.error:
        pass
    linear = warp[:, :2].astype(np.float64)
    # Back to full resolution: keyframe = linear @ x + (linear @ [shift, shift] + t - shift) / scale.
    offset = (linear @ np.array([shift, shift]) + warp[:, 2].astype(np.float64) - shift) / scale
    matrix = np.hstack([linear, offset[:, None]])
    if not np.isfinite(matrix).all() or np.abs(linear - np.eye(2)).max() > _MAX_LINEAR:
        return None
    if np.abs(offset).max() > MAX_DISPLACEMENT * max(width, height):
        return None
    return matrix


def _body_points(size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Where a body usually is in the frame: below and beside the face."""
    return np.asarray(np.array([[0.25, 0.9], [0.75, 0.9], [0.5, 0.6]]) * np.array(size, np.float64), np.float64)


def smooth_motion(previous: Affine | None, new: Affine, size: tuple[int, int]) -> Affine:
    """`new` steadied against the last estimate for the same keyframe: half-way when they differ by less
    than SMOOTH_PX where the body is (the fit's noise, about a pixel a frame at ESTIMATE_WIDTH, would make
    the shoulders' edges swim), at once when the body really moved."""
    if previous is None:
        return new
    points = _body_points(size)
    moved = np.abs((points @ (new - previous)[:, :2].T) + (new - previous)[:, 2]).max()
    return new if moved > SMOOTH_PX else 0.5 * (previous + new)


# --- payload -------------------------------------------------------------------------------------------

def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def encode_motion(q: Quantised, previous: Quantised | None) -> bytes:
    """One frame's payload: `q` as it is (previous None) or less `previous`; values that are 0 are left out."""
    values = q if previous is None else tuple(a - b for a, b in zip(q, previous, strict=True))
    present = sum(1 << (_FIRST_VALUE_BIT + i) for i, v in enumerate(values) if v)
    flags = present | (0 if previous is not None else _INTRA)
    return bytes([flags]) + b"".join(encode_uvarint(_zigzag(v)) for v in values if v)


def decode_motion(payload: bytes, previous: Quantised | None, size: tuple[int, int]) -> Quantised:
    """The motion in `payload`; raises CodeError when it does not decode, is predicted from nothing, or
    lies beyond MAX_DISPLACEMENT of the frame."""
    if not payload:
        raise CodeError("body-motion code is empty")
    flags = payload[0]
    if flags & _RESERVED:
        raise CodeError(f"body-motion code has unknown flags {flags:#x}")
    values: list[int] = []
    position = 1
    for index in range(6):
        if not flags & (1 << (_FIRST_VALUE_BIT + index)):
            values.append(0)
            continue
        try:
            value, position = read_uvarint(payload, position, _MAX_VALUE_BYTES)
        except VarintError as exc:
            raise CodeError(f"body-motion value: {exc}") from None
        values.append(value >> 1 if not value & 1 else -(value >> 1) - 1)
    if position != len(payload):
        raise CodeError(f"body-motion code has {len(payload) - position} bytes after its values")
    if not flags & _INTRA:
        if previous is None:
            raise CodeError("body-motion code is predicted from a motion this decoder does not hold")
        values = [a + b for a, b in zip(values, previous, strict=True)]
    limit = MAX_DISPLACEMENT * max(size) * STEPS_PER_PIXEL
    if max(abs(v) for v in values) > limit:
        raise CodeError(f"body-motion displacement {max(abs(v) for v in values) / STEPS_PER_PIXEL:.0f} px is "
                        f"beyond half the frame")
    return (values[0], values[1], values[2], values[3], values[4], values[5])


# --- the seam ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BodyValues:
    """One frame's prepared motion against each keyframe the uplink may draw it from."""

    motions: Mapping[int, Quantised]


class BodyPreparer(NoSetup):
    """On the analysing thread: the motion against the keyframes the frame may be drawn from."""

    def __init__(self) -> None:
        self._last: dict[int, Affine] = {}  # per keyframe, the last estimate: the next fit starts there
        self._sources: dict[int, tuple[KeyframeState, npt.NDArray[np.float32]]] = {}  # per keyframe, its body_signal

    def prepare(self, analysis: FrameAnalysis) -> Prepared | None:
        return None  # the motion needs keyframes: FrameCoder calls prepare_body

    def prepare_body(self, analysis: FrameAnalysis, face: Landmarks | None,
                     keyframes: Mapping[int, KeyframeState]) -> Prepared | None:
        """The motion against each of `keyframes`, fitted to the frame's CoarseMatte where it has one (a learned
        matter's), else to its matte; None with neither."""
        if (analysis.alpha is None and analysis.coarse is None) or not keyframes:
            return None
        shape = analysis.frame.image.shape[:2]
        size = (shape[1], shape[0])
        motions: dict[int, Quantised] = {}
        template = None
        for kf, keyframe in keyframes.items():
            if keyframe.image.shape[:2] != shape or keyframe.alpha is None:
                continue
            template = frame_signal(analysis) if template is None else template
            previous = self._last.get(kf)
            matrix = fit_body_motion(template, self._source(kf, keyframe), shape, face, previous)
            if matrix is None:
                self._last.pop(kf, None)
                continue
            matrix = smooth_motion(previous, matrix, size)
            self._last[kf] = matrix
            motions[kf] = quantise_motion(matrix, size)
        for kf in [kf for kf in self._last if kf not in keyframes]:
            del self._last[kf]
        return Prepared(values=BodyValues(motions)) if motions else None

    def _source(self, kf: int, keyframe: KeyframeState) -> npt.NDArray[np.float32]:
        cached = self._sources.pop(kf, None)
        if cached is None or cached[0] is not keyframe:  # a new session may build another keyframe under this id
            assert keyframe.alpha is not None
            cached = (keyframe, body_signal(keyframe.alpha, keyframe.image))
        # Kept for the last few keyframes fitted, not only the frame's: the reference goes back and forth between
        # two looks, and each return made it again (~1.4 ms: 50 times in 600 frames live at 256 kbps).
        self._sources[kf] = cached
        while len(self._sources) > SOURCES_KEPT:
            del self._sources[next(iter(self._sources))]
        return cached[1]


class BodyEncoder(NoSetup):
    """At send time: the motion against the keyframe the frame is drawn from, predicted from the last one sent."""

    def __init__(self) -> None:
        self._previous: Quantised | None = None

    def encode(self, frame: CodedFrame, intra: bool) -> bytes | None:
        prepared = frame.prepared.get(CAPABILITY)
        if prepared is None or not isinstance(prepared.values, BodyValues) or frame.drawn_from is None:
            return None
        q = prepared.values.motions.get(frame.drawn_from)
        if q is None:
            return None
        payload = encode_motion(q, None if intra else self._previous)
        self._previous = q
        return payload

    def reset(self) -> None:
        self._previous = None


class BodyDecoder(NoSetup):
    def __init__(self) -> None:
        self._previous: Quantised | None = None

    def decode(self, payload: bytes, draft: FrameDraft) -> None:
        q = decode_motion(payload, self._previous, draft.size)
        self._previous = q
        draft.body = motion_matrix(q, draft.size)

    def reset(self) -> None:
        self._previous = None
