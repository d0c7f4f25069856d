"""The low-resolution residual layer (issue 11, deliverable 4): a tiny realtime AV1 video of the face box.

The sender codes what the receiver's own prediction (the warped keyframe) gets wrong, in a small
square box that follows the head (translation, scale and roll from the head pose the features already
carry), so the codec sees an almost still picture. The receiver decodes the box, holds it, and applies
it to every frame's prediction with that frame's box: the warp carries the motion, the layer the low
frequencies the warp cannot (mouth interior, lids, light), the prediction keeps part of its detail.

Pieces, all pure functions or small explicit-state objects:

* geometry: `BoxGeometry`, `face_box_transform(pose)`, `to_box` (prefiltered shrink), `from_box`;
* sender: `residual_box(frame, prediction, alpha, transform, size)`: alpha x (frame - prediction),
  shrunk into the box, x RESIDUAL_GAIN + 128, so nothing outside the matte leaves;
* codec: `LayerEncoder` (SVT-AV1 through PyAV, realtime, CBR, no lookahead: one packet per call) and
  `LayerDecoder` (dav1d, no frame delay), with a small header so a lost packet is noticed;
* receiver: `apply_residual(prediction, decoded_box, transform)`: the fusion, in integer OpenCV ops
  on the box's region only, bit-identical wherever the same inputs are given (the sender runs it as
  the receiver's replica); `hold_box` + `apply_held` are the same in two halves, the box's own part made
  once for all the frames the box is held for.

Packet (3 bytes of header: at 10 packets a second every byte costs 0.08 kbps): u8 code version << 1 | key,
u8 sequence number (+1 per packet, mod 256), u8 the box's side / 2, then one AV1 temporal unit (a key
unit carries its sequence header, which declares the size again; dav1d is held to the box's size).
"""

from __future__ import annotations

import math
import struct
import weakref
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import cast

import av
import av.video.frame
import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.codec.predictive import CodeError
from facewire.shared.process.scheduling import time_shared_threads
from facewire.shared.types import HeadPose, Image

Affine = npt.NDArray[np.float64]  # 2x3: frame pixels -> box pixels
Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels

CODE_VERSION = 1
_HEAD = struct.Struct("<BBB")
MIN_SIDE, MAX_SIDE = 16, 256
MAX_PACKET_BYTES = 64 * 1024
GREY = 128
# The residual is coded x2: at a few kbps the codec flattens small differences, and the face's
# corrections rarely pass +-64 grey levels (R2: gain 2 beat 1 at equal rate).
RESIDUAL_GAIN = 2
_SHRINK_K = 0.6  # pyrDown until the warp shrinks by no more than this (a bilinear warp then barely aliases)


# ------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class BoxGeometry:
    size: int = 96  # the box's side in pixels
    span: float = 3.8  # the box's side in head-canonical units (eye-corner-midpoint distances)
    drop: float = 0.55  # the box's centre below the point between the eyes, in canonical units

    def __post_init__(self) -> None:
        if not (MIN_SIDE <= self.size <= MAX_SIDE and self.size % 2 == 0):
            raise ValueError(f"box side {self.size} must be even and in [{MIN_SIDE}, {MAX_SIDE}]")
        if not (self.span > 0 and math.isfinite(self.span) and math.isfinite(self.drop)):
            raise ValueError("box span must be positive and drop finite")


def _on_grid(transform: Affine) -> Affine:
    # sin/cos may differ by an ulp between two machines' maths libraries; on a fixed grid the sender and
    # the receiver warp with the same matrix (warpAffine turns it into fixed point anyway).
    out = np.empty((2, 3), np.float64)
    out[:, :2] = np.round(transform[:, :2] * 2.0**20) / 2.0**20
    out[:, 2] = np.round(transform[:, 2] * 2.0**12) / 2.0**12
    return out


def face_box_transform(pose: HeadPose, geometry: BoxGeometry = BoxGeometry()) -> Affine:
    """The similarity (2x3) from frame pixels to the box: the face upright, centred, at a fixed size.

    Only roll, (tx, ty) and scale are used: yaw and pitch turn the face inside the box, which the layer
    codes as picture. Both sides hold the pose (it travels in every frame), so both build the same box.
    """
    values = (pose.roll, pose.tx, pose.ty, pose.scale)
    if not all(math.isfinite(v) for v in values) or pose.scale <= 0:
        raise ValueError(f"pose {pose} cannot place a face box")
    theta = math.radians(pose.roll)  # roll > 0: the head tilts counter-clockwise in the picture
    c, s = math.cos(theta), math.sin(theta)
    centre_x = pose.tx + geometry.drop * pose.scale * s  # the head's "down" is (sin, cos) in image axes
    centre_y = pose.ty + geometry.drop * pose.scale * c
    k = geometry.size / (geometry.span * pose.scale)
    half = geometry.size / 2.0
    # rotate by +roll (undoing the tilt), scale by k, the centre to the box's centre
    transform = np.array([[k * c, -k * s, half - k * (c * centre_x - s * centre_y)],
                          [k * s, k * c, half - k * (s * centre_x + c * centre_y)]], np.float64)
    return _on_grid(transform)


def box_scale(transform: Affine) -> float:
    """Box pixels per frame pixel."""
    return math.hypot(float(transform[0, 0]), float(transform[0, 1]))


def _pyramid_levels(transform: Affine) -> int:
    k, levels = box_scale(transform), 0
    while k < _SHRINK_K and levels < 6:
        k *= 2.0
        levels += 1
    return levels


def box_region(transform: Affine, size: int, shape: tuple[int, ...], margin: int = 0) -> Region:
    """The frame region (x0, y0, x1, y1), clipped to the frame, that the box covers, grown by `margin`."""
    inv = cv2.invertAffineTransform(transform)
    corners = np.array([[0.0, 0.0], [size, 0.0], [0.0, size], [size, size]])
    points = corners @ inv[:, :2].T + inv[:, 2]
    h, w = shape[:2]
    x0, y0 = (math.floor(v) - margin for v in points.min(axis=0))
    x1, y1 = (math.ceil(v) + margin for v in points.max(axis=0))
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def _shift(transform: Affine, x0: int, y0: int) -> Affine:
    """The transform read from a crop whose top-left corner is (x0, y0) in the frame."""
    out = transform.copy()
    out[:, 2] += out[:, :2] @ np.array([x0, y0], np.float64)
    return out


def to_box(image: npt.NDArray[np.generic], transform: Affine, size: int) -> npt.NDArray[np.generic]:
    """The box of `image` (uint8 or int16, any channels), shrunk without aliasing: pyrDown of the box's
    region until the remaining warp shrinks by at most 0.6, then a bilinear warp, borders replicated."""
    levels = _pyramid_levels(transform)
    x0, y0, x1, y1 = box_region(transform, size, image.shape, margin=4 << levels)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the box lies off the frame: no pyramid, the warp replicates the border
        src, tr = image, transform.copy()
    else:
        src, tr = image[y0:y1, x0:x1], _shift(transform, x0, y0)
        for _ in range(levels):
            src = cv2.pyrDown(src)  # output pixel i is input pixel 2i's neighbourhood
            tr[:, :2] *= 2.0
    return cast(npt.NDArray[np.generic], cv2.warpAffine(src, tr, (size, size), flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_REPLICATE))


@lru_cache(maxsize=8)
def _coverage(size: int) -> npt.NDArray[np.int32]:
    """1 (as 256) inside the box, ramping to 0 over its outer eighth, so the layer's seam is soft."""
    i = np.arange(size, dtype=np.float64)
    ramp = np.clip(np.minimum(i + 0.5, size - 0.5 - i) / max(size / 8.0, 1.0), 0.0, 1.0)
    c = np.rint(np.outer(ramp, ramp) * 256).astype(np.int32)
    c.setflags(write=False)
    return c


def from_box(box: Image, transform: Affine, shape: tuple[int, int]) -> tuple[Image, npt.NDArray[np.float32]]:
    """The box put back at frame size (bilinear, border replicated) and its coverage (1 inside, soft edge);
    for pictures and checks: the receiver's fusion is `apply_residual`."""
    h, w = shape
    image = cv2.warpAffine(box, transform, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpAffine(_coverage(box.shape[0]).astype(np.float32) / 256.0, transform, (w, h),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cast(Image, image), cast(npt.NDArray[np.float32], cover)


def _check_frame(name: str, image: npt.NDArray[np.generic], shape: tuple[int, ...] | None = None) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be HxWx3 uint8, got {image.dtype} {image.shape}")
    if shape is not None and image.shape[:2] != shape[:2]:
        raise ValueError(f"{name} is {image.shape[:2]}, expected {shape[:2]}")


# ---------------------------------------------------------------------------------------------- sender
def residual_region(transform: Affine, size: int, shape: tuple[int, ...]) -> Region:
    """The frame region `residual_box` reads of the frame, the prediction and the alpha (the sender's
    replica draws the prediction there only)."""
    return box_region(transform, size, shape, margin=4 << _pyramid_levels(transform))


# The layer corrects the face: what the warp gets wrong there (mouth interior, lids, light) is what it is for. Past
# the face the box holds hair, ears and the matte's soft edge, where the camera's pixels mix in the room's colour that
# the keyframe's picture left out (keyframe.person_only): corrections there are room pixels, drawn at a silhouette
# the receiver's own alpha places elsewhere. The residual is weighed by the face oval, full inside and fading to 0
# over about FACE_FADE face widths outside (d18 at 16 kbps: the layer's key frame 917 -> 273 bytes, more of the rate left
# for the face). FACE_FADE is the Gaussian's sigma over the face's width; the blurred oval is doubled, so the oval's own
# edge keeps full weight.
FACE_FADE = 0.06
_FACE_GRID = 4  # the weight is smooth: drawn on a grid this much coarser, then brought up


def _face_sigma(points: npt.NDArray[np.float64]) -> float:
    return FACE_FADE * max(float(np.ptp(points[:, 0])), 1.0)


def _face_box(points: npt.NDArray[np.float64], sigma: float) -> Region:
    """The grid-aligned box around the oval `points` outside which `face_weight` is 0."""
    margin, g = 3.0 * sigma + 2 * _FACE_GRID, _FACE_GRID
    bx0, by0 = (int(math.floor((v - margin) / g)) * g for v in points.min(axis=0))
    bx1, by1 = (int(math.ceil((v + margin) / g)) * g for v in points.max(axis=0))
    return bx0, by0, bx1, by1


def face_support(oval: npt.NDArray[np.floating], shape: tuple[int, ...], region: Region) -> Region:
    """The part of `region` (and of a frame of `shape`) where `face_weight` may be above 0; empty: x1 <= x0.
    A residual weighed by it reads the prediction there only, so the sender's replica draws no more."""
    points = np.asarray(oval, np.float64)[:, :2]
    bx0, by0, bx1, by1 = _face_box(points, _face_sigma(points))
    x0, y0, x1, y1 = region
    return max(bx0, x0, 0), max(by0, y0, 0), min(bx1, x1, shape[1]), min(by1, y1, shape[0])


def face_weight(oval: npt.NDArray[np.floating], shape: tuple[int, ...], region: Region) -> npt.NDArray[np.float32]:
    """Per pixel of `region` (x0, y0, x1, y1) of a frame of `shape`, 0..1: 1 inside the face oval (polygon `oval`,
    Nx2 frame pixels), fading to 0 outside it over ~2 x FACE_FADE face widths. Drawn on a grid fixed to the frame
    (not to the region), so any region reads the same weight at the same pixel."""
    x0, y0, x1, y1 = region
    out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), np.float32)
    points = np.asarray(oval, np.float64)[:, :2]
    sigma = _face_sigma(points)
    bx0, by0, bx1, by1 = _face_box(points, sigma)
    ix0, iy0, ix1, iy1 = face_support(oval, shape, region)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    g = _FACE_GRID
    mask = np.zeros(((by1 - by0) // g, (bx1 - bx0) // g), np.uint8)
    cv2.fillPoly(mask, [np.round((points - (bx0, by0)) / g * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    soft = cv2.GaussianBlur(mask, (0, 0), sigma / g, borderType=cv2.BORDER_CONSTANT).astype(np.float32)
    up = cv2.resize(soft * np.float32(2.0 / 255.0), (bx1 - bx0, by1 - by0), interpolation=cv2.INTER_LINEAR)
    out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = np.minimum(up[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0], np.float32(1.0))
    return out


def residual_box(frame: Image, prediction: Image, alpha: npt.NDArray[np.float32], transform: Affine,
                 size: int) -> Image:
    """What the layer codes: alpha x (frame - prediction) shrunk into the box, x RESIDUAL_GAIN + 128.

    alpha x (frame - prediction) is the difference of the two pictures composited over the same grey,
    so outside the matte it is 0 and nothing of the room leaves. The receiver's `apply_residual`
    undoes the gain and the offset.
    """
    _check_frame("frame", frame)
    _check_frame("prediction", prediction, frame.shape)
    if alpha.shape != frame.shape[:2]:
        raise ValueError(f"alpha is {alpha.shape}, frame {frame.shape[:2]}")
    x0, y0, x1, y1 = residual_region(transform, size, frame.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.full((size, size, 3), GREY, np.uint8)
    a8 = cv2.convertScaleAbs(alpha[y0:y1, x0:x1], alpha=255.0)
    weighted = np.zeros((y1 - y0, x1 - x0, 3), np.int16)
    bx, by, bw, bh = cv2.boundingRect(a8)  # where the matte is not 0 (the rest is 0 whatever the pictures say)
    if bw > 0 and bh > 0:
        ys, xs = slice(y0 + by, y0 + by + bh), slice(x0 + bx, x0 + bx + bw)
        a = a8[by:by + bh, bx:bx + bw]
        diff = cv2.subtract(frame[ys, xs], prediction[ys, xs], dtype=cv2.CV_16S)
        # x8: three fractional bits survive the integer pyramid (|8 x 255| fits int16)
        weighted[by:by + bh, bx:bx + bw] = cv2.multiply(diff, cv2.merge([a, a, a]), scale=8.0 / 255.0, dtype=cv2.CV_16S)
    small = to_box(weighted, _shift(transform, x0, y0), size).astype(np.int32)
    coded = (small * RESIDUAL_GAIN + 4) // 8 + GREY
    return np.clip(coded, 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------------- receiver
def _coarse_step(transform: Affine) -> int:
    """The grid step (a power of two, at most 8) at which the region samples the box at least once a box pixel."""
    k, step = box_scale(transform), 1
    while step < 8 and 2 * step * k <= 1.0:
        step *= 2
    return step


def _up(box: Image, transform: Affine, region: Region, step: int, border: int) -> Image:
    """`box` (uint8) warped to the frame region: a warp to a grid `step` times coarser, then an exact
    bilinear resize. The box holds only low frequencies, so the two-stage interpolation costs nothing
    visible and runs ~10x faster than a full-size warp; both stages are OpenCV's 8-bit fixed point, which
    gives the same bytes on every machine (16-bit and float warps interpolate in float)."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    cw, ch = -(-w // step), -(-h // step)
    # coarse pixel j sits at frame x0 + step*j + (step-1)/2, where the resize puts its centre
    coarse = np.empty((2, 3), np.float64)
    coarse[:, :2] = transform[:, :2] * step
    coarse[:, 2] = transform[:, :2] @ np.array([x0 + (step - 1) / 2.0, y0 + (step - 1) / 2.0]) + transform[:, 2]
    small = cv2.warpAffine(box, coarse, (cw, ch), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(border, border, border, border))
    if step == 1:
        return cast(Image, small)
    return cast(Image, cv2.resize(small, (cw * step, ch * step), interpolation=cv2.INTER_LINEAR_EXACT)[:h, :w])


# Where the layer corrects a lot, the warp is wrong there (teeth drawn over pressed lips, a lid, a hand): its
# own detail is dropped and the layer's picture trusted, ramping from TRUST_FROM to TRUST_FULL grey levels of
# correction (the coded box's |value - 128| / RESIDUAL_GAIN, the largest channel, smoothed).
TRUST_FROM, TRUST_FULL = 8, 24
_TRUST_BLUR = 1.5  # box pixels


def largest_channel(image: Image) -> npt.NDArray[np.uint8]:
    """Per pixel, the largest of a 3-channel image's channels (numpy's max over a last axis of 3 is ~15x slower:
    ~0.3 ms on a 96x96 box)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def _trust(box: Image, base256: int) -> npt.NDArray[np.int32]:
    """Per box pixel, of 256, how much of the prediction's detail is replaced by the layer: `base256`
    where the correction is small, all of it where it passes TRUST_FULL. Integer and 8-bit fixed point."""
    magnitude = largest_channel(cv2.absdiff(box, np.full_like(box, GREY)))  # uint8, x RESIDUAL_GAIN
    magnitude = cv2.GaussianBlur(magnitude, (0, 0), _TRUST_BLUR)
    lo, hi = TRUST_FROM * RESIDUAL_GAIN, TRUST_FULL * RESIDUAL_GAIN
    ramp = np.clip((magnitude.astype(np.int32) - lo) * 256 // (hi - lo), 0, 256)
    return (base256 + (((256 - base256) * ramp) >> 8)).astype(np.int32)


@dataclass(frozen=True)
class HeldBox:
    """What the receiver's fusion takes of one decoded box whatever the frame (`hold_box`): the receiver holds a box
    for every frame until the next arrives (a layer frame is one in three or fewer), so this is made once per box.

    `low_weight`: per box pixel, 0 (the picture's low band is not yet known) in channels 0-2 and the share of the
    prediction's detail replaced, c*t of 256, in channel 3: the two go through the box-to-frame warp together, as
    one 4-channel image (the frame's low band is written into channels 0-2 each frame). `held`: c * D * RESIDUAL_GAIN
    + 128 (`apply_residual`)."""

    size: int
    coverage_trust: npt.NDArray[np.int32]  # c * t, of 65536, S x S x 3 (numpy's broadcasting of one channel is 2x slower)
    low_weight: Image  # S x S x 4 uint8
    held: Image  # S x S x 3 uint8
    trusted: bool  # any c * t above 0: the prediction's low band is replaced somewhere


def hold_box(decoded_box: Image, detail: float = 0.5, blur: float = 0.8) -> HeldBox:
    """The frame-independent part of `apply_residual` for this box (see there)."""
    size = decoded_box.shape[0]
    if decoded_box.shape != (size, size, 3) or decoded_box.dtype != np.uint8:
        raise ValueError(f"decoded box must be SxSx3 uint8, got {decoded_box.dtype} {decoded_box.shape}")
    if not 0.0 <= detail <= 1.0:
        raise ValueError("detail must lie in [0, 1]")
    c = _coverage(size)[..., None]
    box = cv2.GaussianBlur(decoded_box, (0, 0), blur) if blur > 0 else decoded_box  # 8-bit: fixed point, bit-exact
    ct = _coverage(size) * _trust(box, int(round((1.0 - detail) * 256)))
    low_weight = np.zeros((size, size, 4), np.uint8)
    low_weight[..., 3] = np.minimum((ct + 128) >> 8, 255)
    held = (((c * (box.astype(np.int32) - GREY) + 128) >> 8) + GREY).astype(np.uint8)
    return HeldBox(size, np.repeat(ct[..., None], 3, axis=2), low_weight, held, bool(ct.any()))


def apply_residual(prediction: Image, decoded_box: Image, transform: Affine, detail: float = 0.5,
                   blur: float = 0.8, out: Image | None = None) -> Image:
    """The receiver's fusion of one frame's prediction with the held layer box:

        out = P + c * (up(D) - t * (P - up(shrink(P)))),   D = (box - 128) / RESIDUAL_GAIN, t = 1 - detail

    i.e. the low band corrected by the layer and `detail` of the prediction's own detail kept (R2:
    detail 0.5 looked best; 0 is a soft video, 1 keeps the warp's misplaced detail). c is the box's
    coverage (soft over its outer eighth), `blur` (box pixels) softens the codec's blocks in D.

    Computed as P + up(c*D) + up(c*t*shrink(P)) - up(c*t)*P: 8-bit boxes brought up to the box's
    region (see `_up`) and integer arithmetic, nothing at frame size outside the region. Every step is
    integer or OpenCV 8-bit fixed point, so the sender's replica gets the receiver's bytes exactly.
    `out` (may be `prediction` itself) receives the result; outside the region it is the prediction.
    A caller that holds one box for many frames makes its frame-independent part once: `hold_box`, `apply_held`.
    """
    return apply_held(prediction, hold_box(decoded_box, detail, blur), transform, out)


def apply_held(prediction: Image, held: HeldBox, transform: Affine, out: Image | None = None) -> Image:
    """`apply_residual` with the box's own part made beforehand (`hold_box`): the same bytes."""
    _check_frame("prediction", prediction)
    if out is None:
        out = prediction.copy()
    elif out is not prediction:
        _check_frame("out", out, prediction.shape)
        out[...] = prediction
    size = held.size
    region = box_region(transform, size, prediction.shape)
    x0, y0, x1, y1 = region
    if x1 - x0 < 2 or y1 - y0 < 2:
        return out
    step = _coarse_step(transform)
    view = out[y0:y1, x0:x1]
    if held.trusted:
        small = to_box(prediction, transform, size).astype(np.int32)
        low_weight = held.low_weight.copy()
        low_weight[..., :3] = (held.coverage_trust * small + 32768) >> 16
        # the low band and the weight brought up as one 4-channel image: the warp and the resize interpolate each
        # channel on its own, in the same fixed point, and one 4-channel resize costs less than a 3- and a 1-channel
        up = _up(low_weight, transform, region, step, 0)
        weight = cv2.merge([cv2.extractChannel(up, 3)] * 3)  # (cv2.mixChannels to three channels: 2.5x slower)
        # P - up(c*t)*P + up(c*t*shrink(P)) is a convex blend of P and its low band: no saturation, up to rounding
        cv2.subtract(view, cv2.multiply(view, weight, scale=1.0 / 256.0), dst=view)
        cv2.add(view, cv2.cvtColor(up, cv2.COLOR_BGRA2BGR), dst=view)
    # c * D * RESIDUAL_GAIN + 128 in [0, 255]: half-level steps survive the 8-bit warp; added back at half
    # weight, exactly (x + u/2 - 64 is exact in float; OpenCV rounds the halves to even everywhere)
    cv2.addWeighted(view, 1.0, _up(held.held, transform, region, step, GREY), 1.0 / RESIDUAL_GAIN,
                    -GREY / RESIDUAL_GAIN, dst=view)
    return out


# ------------------------------------------------------------------------------------------------ codec
def _check_side(size: int) -> None:
    if not (MIN_SIDE <= size <= MAX_SIDE and size % 2 == 0):
        raise ValueError(f"layer side {size} must be even and in [{MIN_SIDE}, {MAX_SIDE}]")


def _end_stream(ctx: av.VideoCodecContext) -> None:
    ctx.encode(None)


class LayerEncoder:
    """SVT-AV1 (PyAV libsvtav1) at a constant target rate, realtime and low delay: `encode(box)` returns
    that box's packet at once (the encoder holds no frame back: rtc mode has no lookahead and no
    reordering; a call that yields no packet, or two, raises).

    The rate cannot be changed on a running encoder (neither FFmpeg's libsvtav1 nor libvpx-vp9 wrapper
    reads a new bit_rate: measured, the bytes stay at the old rate), so `set_kbps` restarts it and the
    next packet is a key frame (`next_is_key`; `last_key_bytes` says what the previous one cost). On real
    face boxes a mid-stream key frame cost 450-1330 bytes at 3-10 kbps (d3), i.e. 1-2 s of the layer's
    budget, and ~5 ms of CPU to reopen: change the rate only when it really moves.

    SVT-AV1 over libvpx-vp9: at equal real rate the two fuse to the same face SSIM (+-0.004, d3/d14/w1),
    but VP9 overshoots low targets more (3 kbps -> 5.3-8.1 real) and its key frames are 2-5x larger.
    """

    def __init__(self, size: int = 96, kbps: float = 6.0, fps: float = 10.0, preset: int = 10) -> None:
        _check_side(size)
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError("fps must be positive")
        self.size = size
        self.fps = fps
        self.preset = preset
        self._kbps = self._checked_kbps(kbps)
        self._ctx: av.VideoCodecContext | None = None
        self._finalizer: weakref.finalize | None = None
        self._force_key = False
        self._seq = 0
        self._pts = 0
        self.bytes_out = 0  # every byte returned, headers included
        self.packets = 0
        self.restarts = 0
        self.last_key_bytes: int | None = None

    @staticmethod
    def _checked_kbps(kbps: float) -> float:
        if not (0.5 <= kbps <= 10_000 and math.isfinite(kbps)):
            raise ValueError(f"layer rate {kbps} kbps out of range")
        return float(kbps)

    @property
    def kbps(self) -> float:
        return self._kbps

    @property
    def next_is_key(self) -> bool:
        """The next packet is a key frame (first packet, after set_kbps with a new rate, after force_key)."""
        return self._ctx is None or self._force_key

    def set_kbps(self, kbps: float) -> None:
        kbps = self._checked_kbps(kbps)
        if kbps != self._kbps:
            self._kbps = kbps
            self._close_codec()
            self.restarts += 1

    def force_key(self) -> None:
        """The next packet is a key frame (a receiver asked for one): a forced intra frame, no restart."""
        self._force_key = True

    def _open(self) -> av.VideoCodecContext:
        try:
            ctx = cast(av.VideoCodecContext, av.CodecContext.create("libsvtav1", "w"))
        except av.codec.codec.UnknownCodecError:
            raise RuntimeError("this PyAV build has no libsvtav1 encoder (the residual layer needs it)") from None
        ctx.width = ctx.height = self.size
        ctx.pix_fmt = "yuv420p"
        rate = Fraction(self.fps).limit_denominator(1001)
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.thread_count = 1
        ctx.gop_size = 1_000_000  # one key frame at the start; refreshes are asked for, not periodic
        ctx.bit_rate = int(round(self._kbps * 1000))
        # rtc=1: the low-delay prediction structure (no lookahead, no reordering); it allows only CBR (rc=2)
        ctx.options = {"preset": str(self.preset), "svtav1-params": "rtc=1:rc=2"}
        ctx.open()
        time_shared_threads()  # SVT-AV1 running as root made this thread and its own real-time
        self._pts = 0
        # an encoder dropped without close() still gets its end of stream (SVT logs an error otherwise)
        self._finalizer = weakref.finalize(self, _end_stream, ctx)
        return ctx

    def _close_codec(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # EOS, once; nothing is pending (one packet came out per frame)
        self._ctx, self._finalizer = None, None

    def close(self) -> None:
        self._close_codec()

    def encode(self, box: Image) -> bytes:
        """The packet (header + one AV1 temporal unit) of this box, a BGR SxSx3 uint8 picture."""
        if box.shape != (self.size, self.size, 3) or box.dtype != np.uint8:
            raise ValueError(f"layer box must be {self.size}x{self.size}x3 uint8, got {box.dtype} {box.shape}")
        if self._ctx is None:
            self._ctx = self._open()
        # OpenCV's I420 conversion is integer: the receiver converts back with its inverse
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(box, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        if self._force_key:
            frame.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        packets = self._ctx.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"the layer encoder returned {len(packets)} packets for one frame (expected exactly 1)")
        body = bytes(packets[0])
        key = bool(packets[0].is_keyframe)
        data = _HEAD.pack(CODE_VERSION << 1 | key, self._seq, self.size // 2) + body
        self._seq = (self._seq + 1) & 0xFF
        self.bytes_out += len(data)
        self.packets += 1
        if key:
            self.last_key_bytes = len(data)
        return data


def packet_is_key(packet: bytes) -> bool:
    """Whether a layer packet says it is a key frame (a relay or a receiver may want to know cheaply)."""
    return len(packet) >= _HEAD.size and bool(packet[0] & 1)


class LayerDecoder:
    """dav1d (PyAV libdav1d), one thread, no frame delay: `decode(packet)` returns that packet's box at once.

    A predicted packet that does not follow the last one decoded (a packet lost, or none decoded since the
    start or an error) raises CodeError, and so does every packet after it until a key packet: the
    receiver then asks for a key frame (`needs_key`). Sizes are checked before anything is decoded: the
    header's side against the decoder's, and dav1d is told the largest picture it may allocate.
    """

    def __init__(self, size: int = 96) -> None:
        _check_side(size)
        self.size = size
        self._ctx: av.VideoCodecContext | None = None
        self._next: int | None = None  # the sequence number a predicted packet must carry

    @property
    def needs_key(self) -> bool:
        return self._next is None

    def reset(self) -> None:
        self._ctx, self._next = None, None

    def _open(self) -> av.VideoCodecContext:
        ctx = cast(av.VideoCodecContext, av.CodecContext.create("libdav1d", "r"))
        ctx.thread_count = 1
        # max_frame_delay 1: a picture out for each packet in; max_pixels: dav1d refuses a larger
        # sequence before allocating it (FFmpeg passes it on as dav1d's frame_size_limit)
        ctx.options = {"max_frame_delay": "1", "max_pixels": str(self.size * self.size)}
        return ctx

    def decode(self, packet: bytes) -> Image:
        if len(packet) <= _HEAD.size or len(packet) > MAX_PACKET_BYTES:
            raise CodeError(f"layer packet of {len(packet)} bytes is out of range")
        head, seq, half = _HEAD.unpack_from(packet)
        version, key, side = head >> 1, bool(head & 1), 2 * half
        if version != CODE_VERSION:
            raise CodeError(f"layer code version {version} is not supported")
        if side != self.size:
            raise CodeError(f"layer packet declares a {side}x{side} box, this decoder is {self.size}x{self.size}")
        if key:
            self._ctx = self._open()  # a key unit carries its sequence header: start clean
        elif self._next is None or self._ctx is None:
            raise CodeError("layer packet predicted from pictures this decoder does not hold (needs a key frame)")
        elif seq != self._next:
            expected, self._next = self._next, None
            raise CodeError(f"layer packet {seq} where {expected} was due (a packet was lost): needs a key frame")
        try:
            frames = self._ctx.decode(av.Packet(packet[_HEAD.size:]))
        except (av.FFmpegError, ValueError) as exc:
            self.reset()
            raise CodeError(f"layer packet does not decode: {exc}") from None
        if len(frames) != 1:
            self.reset()
            raise CodeError(f"layer packet gave {len(frames)} pictures, expected 1")
        frame = frames[0]
        if (frame.width, frame.height) != (self.size, self.size) or frame.format.name != "yuv420p" \
                or (key and not frame.key_frame):
            self.reset()
            raise CodeError(f"layer packet decoded to a {frame.width}x{frame.height} {frame.format.name} picture "
                            f"(key {frame.key_frame}), expected a {self.size}x{self.size} yuv420p one")
        self._next = (seq + 1) & 0xFF
        return cast(Image, cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420))
