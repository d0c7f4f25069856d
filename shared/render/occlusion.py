"""Occluders on the sender's face in the keyframe (glasses, hair, a hand, a mask), to keep in front of an avatar.

The receiver only sees the sender in keyframes, so occluders are found there once and then warp
with the keyframe like everything else. A pixel inside the face outline is an occluder when its
colour is far from the sender's own skin (robust statistics of cheek, nose, chin and forehead
patches) and it is not one of the face's own features (eyes, brows, lips, nostrils), which are
meant to be replaced. Swapping then stops there, so the avatar appears behind the glasses.

Clear and light spectacle frames are neither another colour nor dark: they are found by their
shape instead, a closed loop of thin ridge (light or dark) round each eye at lens size and the
same shape on both sides, which skin, wrinkles, lids and brows do not make (see `find_spectacles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TypeVar, cast

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.face.measures import eye_width
from facewire.shared.render.blend import fit_field, quadratic_basis
from facewire.shared.render.delight import eye_openings, feature_mask
from facewire.shared.render.warp import Region, fill_polygon
from facewire.shared.types import Image, Landmarks

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class OcclusionOptions:
    chroma_sigmas: float = 4.0  # how far (in robust sigmas) a colour must be from skin to count
    dark_ratio: float = 0.45  # darker than this fraction of the skin's luminance: hair, dark frames
    # Of the face box. Smaller patches are noise (moles, pores) or a few hairs at the temple, which drawn
    # in front of an avatar read as brown blotches on its skin, not as hair (w1 x s42).
    min_area: float = 0.015
    inner_area: float = 0.03  # of the face: a patch that does not reach the outline must be this large
    # Of min_area: what must be left of a patch inside the outline band. On 8 clips' keyframes the temple
    # hair tips left inside measure 0.15-0.26 of it, a fringe over the forehead 0.55, a finger 0.7.
    inside_area: float = 0.5
    edge_margin: float = 0.06  # of the face width: the outline band is left to the face mask's feather
    spectacles: bool = True  # look for spectacle frames by their shape (clear and light frames too)
    # True: the sender's glasses are kept in front of the avatar (thin dark lines, and frames found by their shape).
    # False (the default): they are not, and what the colour path would take of them (dark frames, their arms at the
    # outline) is cut out of the hair and hands kept. The avatar is who the user chose to appear as: the sender's
    # glasses, warped at the sender's face's geometry onto another face, sat beside the avatar's eyes as a faint
    # doubled pair (d12), and they carry the sender's identity: d12 x 10 identities through the 24-kbps stream,
    # dlib distance to the avatar 0.488 -> 0.46 mean (art_4 recognised on 0.1 -> 0.7 of the frames).
    glasses: bool = False
    rim_scale: float = 0.008  # of the face width: the scale of a frame's rim (the ridge filter's sigma)
    # Mean ridge strength round the weaker lens, in skin-texture units, to call them frames. Measured on the
    # clips here: frontal, sharp keyframes of clear frames 1.6-2.0; faces without glasses at most 1.5.
    rim_score: float = 1.6
    # The same, for lenses an earlier keyframe showed, confirmed where they were (see SpectacleMemory).
    # At d12's lenses: d12's own frames 0.45-2.03 (median 1.13), faces without glasses at most 1.19.
    recall_score: float = 1.3


def _skin_colour(
    ycc: FloatImage, face: npt.NDArray[np.uint8], points: npt.NDArray[np.float32], patches: tuple[int, ...], radius: int
) -> tuple[float, float, FloatImage, npt.NDArray[np.bool_]] | None:
    """The skin's median luma and its spread, sampled in discs round the `patches` landmarks inside
    `face`; each pixel's distance from the skin's colour (Cr, Cb) in robust sigmas; and where it was
    sampled. None if too little skin is seen."""
    disc = np.zeros(face.shape, np.uint8)
    for i in patches:
        cv2.circle(disc, (int(points[i, 0]), int(points[i, 1])), radius, 255, -1)
    sampled = (disc > 0) & (face > 0)
    samples = ycc[sampled]
    if len(samples) < 20:
        return None
    (my, sy), (mcr, scr), (mcb, scb) = (_robust(samples[:, k]) for k in range(3))
    scr, scb = max(scr, 2.5), max(scb, 2.5)
    chroma = np.sqrt(((ycc[..., 1] - mcr) / scr) ** 2 + ((ycc[..., 2] - mcb) / scb) ** 2)
    return my, sy, np.asarray(chroma, np.float32), sampled


def _robust(values: npt.NDArray[np.float32]) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(1.4826 * np.median(np.abs(values - med)))


def _components(
    mask: npt.NDArray[np.uint8], min_px: float, edge: npt.NDArray[np.bool_] | None = None, inner_px: float = 0.0,
    opened: bool = False,
) -> npt.NDArray[np.uint8]:
    """Components of at least `min_px`; with `edge`, those not touching it need `inner_px` as well.

    The mask is opened first (single stray pixels) unless it already was (`opened`).
    """
    if not opened:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA]
    big = area >= min_px
    if edge is not None:
        touches = np.zeros(count, np.bool_)
        touches[np.unique(labels[edge & (mask > 0)])] = True
        big &= touches | (area >= inner_px)
    keep = np.zeros(count, np.uint8)
    keep[1:] = big[1:]
    return np.asarray(keep[labels], np.uint8)


def _reaching_out(blobs: npt.NDArray[np.uint8], kept: npt.NDArray[np.uint8], within: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """The components of `blobs` that `kept` keeps part of, whole inside `within`: a fringe kept inside the outline
    band is drawn on through the band to the hair it hangs from, not as a strand floating on the avatar's forehead."""
    count, labels = cv2.connectedComponents(blobs, connectivity=8)
    keep = np.zeros(count, np.uint8)
    keep[np.unique(labels[kept > 0])] = 1
    keep[0] = 0
    return np.asarray(keep[labels] * within, np.uint8)


def _rims(luma: FloatImage, width: float, skin_y: float, skin_sigma: float) -> npt.NDArray[np.bool_]:
    """Thin dark lines (a few pixels wide at this face size), much darker than the skin around them."""
    k = max(3, int(round(0.04 * width)) | 1)
    dark = cv2.subtract(_disc_morphology(False, _disc_morphology(True, luma, k // 2), k // 2), luma)  # MORPH_BLACKHAT's
    threshold = max(20.0, 3.0 * skin_sigma)
    # Really dark (frames), not the shading of a wrinkle or a fold.
    return np.asarray((dark > threshold) & (luma < 0.6 * skin_y), np.bool_)


def _long_components(mask: npt.NDArray[np.uint8], min_extent: float) -> npt.NDArray[np.uint8]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = np.zeros(count, np.uint8)
    keep[1:] = extent[1:] >= min_extent
    return np.asarray(keep[labels], np.uint8)


# Spectacle lenses in a frame at each eye's centre, in units of the eye's corner-to-corner width,
# x away from the nose and y down the face: the ranges searched for the lens's half-width,
# half-height and centre, as (low, high, steps).
_LENS_HALF_WIDTH = (0.6, 1.15, 7)
_LENS_HALF_HEIGHT = (0.4, 0.9, 7)
_LENS_CENTRE_X = (-0.15, 0.3, 6)
_LENS_CENTRE_Y = (-0.15, 0.4, 7)
_LENS_SHAPES = (2.0, 3.0)  # superellipse exponents: round or oval lenses, and rounded rectangles
_COARSE_POINTS, _LOOP_POINTS = 36, 72
_EYE_BERTH = 0.2  # of the eye's width round the opening: lids and lashes are the eye's own edges
_BROW_BERTH = 0.02  # of the face width round the brows' landmarks
_CLEAR_OPACITY = 0.7
_FORGET_AFTER = 6  # keyframes (a minute at one per 10 s): a blurred run is rarely longer, d12 confirms ~40 %
_RIDGE_CAP = 2.5  # in skin-texture units: one strong edge (a brow, a lid) must not carry a whole loop


@dataclass(frozen=True)
class Spectacles:
    loops: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # each lens's rim, closed polygons, pixels
    score: float  # mean ridge strength round the weaker lens, in skin-texture units (capped per point)
    thickness: float  # px: the rim's width to draw
    opacity: float  # of the rims kept over the avatar: clear (light) rims are partly see-through
    bridge: npt.NDArray[np.float64] | None = None  # (2, 2): its ends on the two rims, when one is seen
    # Per eye (right, left): half-width, half-height, centre x, centre y (eye widths, the eye's own frame), exponent.
    lenses: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None


@dataclass
class SpectacleMemory:
    """The sender's lenses as the last keyframe that showed them found them: explicit per-session state.

    Keyframes are whatever frame was current when one was due; glasses found in a sharp frontal one
    would vanish from the next, blurred or turned, where the rims are too faint to find anywhere.
    With the lenses remembered, a later keyframe only has to confirm them where they were.
    """

    lenses: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None
    misses: int = 0  # keyframes since the lenses were last confirmed

    def update(self, found: Spectacles | None) -> None:
        """After a keyframe: remember what it showed; forget lenses unconfirmed for `_FORGET_AFTER` keyframes
        (glasses taken off, or a renderer now showing someone else)."""
        if found is not None:
            self.lenses, self.misses = found.lenses, 0
        elif self.lenses is not None:
            self.misses += 1
            if self.misses >= _FORGET_AFTER:
                self.lenses, self.misses = None, 0


@dataclass(frozen=True)
class _Ridges:
    """Second and first derivatives of the luma at the rim's scale (pixels of the image searched)."""

    maps: FloatImage  # per pixel: xx, xy, yy, gx, gy, and 1 where a rim may be (0 on the eyes' own lids and lashes)
    noise: float  # the skin's own ridge strength (texture, pores): the unit of strength
    scale: float

    @classmethod
    def of(cls, luma: FloatImage, scale: float, skin: npt.NDArray[np.bool_], blocked: npt.NDArray[np.bool_]) -> _Ridges:
        g = cv2.GaussianBlur(luma, (0, 0), scale)
        # Scale-normalised (a line's response does not depend on the scale); Sobel's 3x3 kernels weigh 4 and 8.
        xx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3, scale=scale * scale / 4)
        yy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3, scale=scale * scale / 4)
        xy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3, scale=scale * scale / 4)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=scale / 8)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, scale=scale / 8)
        curvature = np.abs(xx[skin] + yy[skin]) / 2 + np.sqrt(((xx[skin] - yy[skin]) / 2) ** 2 + xy[skin] ** 2)
        # A floor for flat synthetic skin; real skin measures 0.3-0.7 here.
        noise = max(float(np.median(curvature)) if curvature.size else 0.0, 0.15)
        # One array, so each lookup gathers all six at once.
        maps = np.ascontiguousarray(np.dstack([xx, xy, yy, gx, gy, (~blocked).astype(np.float32)]), np.float32)
        return cls(maps, noise, scale)

    def _lookup(self, points: npt.NDArray[np.float32]) -> FloatImage:
        h, w = self.maps.shape[:2]
        qx = np.clip(points[..., 0] + np.float32(0.5), 0, w - 1).astype(np.intp)
        qy = np.clip(points[..., 1] + np.float32(0.5), 0, h - 1).astype(np.intp)
        return np.asarray(self.maps.reshape(-1, 6)[qy * w + qx], np.float32)

    def across(self, points: npt.NDArray[np.float64]) -> float:
        """The mean Laplacian at `points`: negative along a light line, positive along a dark one."""
        v = self._lookup(points.astype(np.float32))
        return float(np.mean(v[:, 0] + v[:, 2]))

    def strength(self, points: npt.NDArray[np.float32], normals: npt.NDArray[np.float32], offsets: tuple[float, ...]) -> FloatImage:
        """Ridge strength across the curve at each point (the best of `offsets`, in scales, along the normal).

        The second derivative across the curve, less the first: a thin line (light or dark) has a
        strong one and none of the other at its centre, a step (a shadow's edge, a lid) has both.
        `normals` may be smaller than `points` where it broadcasts (lenses of one size share them).
        """
        nx, ny = normals[..., 0], normals[..., 1]
        cxx, cxy, cyy = nx * nx, 2 * nx * ny, ny * ny
        best: FloatImage | None = None
        for off in offsets:
            v = self._lookup(points + normals * np.float32(off * self.scale) if off else points)
            across = cxx * v[..., 0] + cxy * v[..., 1] + cyy * v[..., 2]
            slope = nx * v[..., 3] + ny * v[..., 4]
            value = np.maximum(np.abs(across) - np.abs(slope), np.float32(0.0)) * v[..., 5]
            best = value if best is None else np.maximum(best, value)
        assert best is not None
        return np.minimum(best / np.float32(self.noise), np.float32(_RIDGE_CAP))


def _grid_axes() -> list[npt.NDArray[np.float64]]:
    return [np.linspace(lo, hi, n) for lo, hi, n in (_LENS_HALF_WIDTH, _LENS_HALF_HEIGHT, _LENS_CENTRE_X, _LENS_CENTRE_Y)]


def _grid_steps() -> npt.NDArray[np.float64]:
    return np.array([(hi - lo) / (n - 1) for lo, hi, n in (_LENS_HALF_WIDTH, _LENS_HALF_HEIGHT, _LENS_CENTRE_X, _LENS_CENTRE_Y)])


_Frame = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _eye_frames(landmarks: npt.NDArray[np.float64]) -> list[_Frame]:
    """Per eye: its centre and its x (away from the nose) and y (down) axes, each an eye's width long."""
    frames = []
    for outer, inner in (topo.RIGHT_EYE_CORNERS, topo.LEFT_EYE_CORNERS):
        o, i = landmarks[outer, :2], landmarks[inner, :2]
        x = o - i
        y = np.array([-x[1], x[0]])
        frames.append(((o + i) / 2, x, y if y[1] >= 0 else -y))
    return frames


@cache
def _unit_lens(exponent: float, count: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A unit superellipse: `count` points (2, count) and its tangents (central differences)."""
    theta = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    shape = np.stack([np.sign(c) * np.abs(c) ** (2.0 / exponent), np.sign(s) * np.abs(s) ** (2.0 / exponent)])
    return shape.astype(np.float32), (np.roll(shape, -1, axis=1) - np.roll(shape, 1, axis=1)).astype(np.float32)


def _loops(lenses: npt.NDArray[np.float64], frame: _Frame, count: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Points (K, count, 2) round each lens in pixels, and their unit outward normals."""
    centre, ax, ay = (np.asarray(v, np.float32) for v in frame)
    points = np.empty((len(lenses), count, 2), np.float32)
    normals = np.empty_like(points)
    for exponent in np.unique(lenses[:, 4]):
        rows = np.flatnonzero(lenses[:, 4] == exponent)
        (su, sv), (tu, tv) = _unit_lens(float(exponent), count)
        a, b, cu, cv = (lenses[rows, k, None].astype(np.float32) for k in range(4))
        u, v = cu + a * su, cv + b * sv
        du, dv = a * tu, b * tv  # the tangent in the lens's own plane
        points[rows] = centre + u[..., None] * ax + v[..., None] * ay
        tangent = du[..., None] * ax + dv[..., None] * ay
        normals[rows, :, 0], normals[rows, :, 1] = tangent[..., 1], -tangent[..., 0]
    normals /= np.maximum(np.sqrt(np.square(normals).sum(axis=-1, keepdims=True)), np.float32(1e-9))
    return points, normals


def _coarse_strength(ridges: _Ridges, frame: _Frame, axes: list[npt.NDArray[np.float64]], exponent: float) -> FloatImage:
    """Mean strength round every lens of the grid `axes` (half-width, half-height, centre x, centre y), at once.

    A lens's points are its size's shape plus its centre, and its normals depend on its size only:
    built on the two small grids and added, not lens by lens.
    """
    centre, ax, ay = (np.asarray(v, np.float32) for v in frame)
    (su, sv), (tu, tv) = _unit_lens(exponent, _COARSE_POINTS)
    a, b, cu, cv = (np.asarray(v, np.float32) for v in axes)
    shape = a[:, None, None, None] * (su[:, None] * ax) + b[None, :, None, None] * (sv[:, None] * ay)  # (na, nb, N, 2)
    tangent = a[:, None, None, None] * (tu[:, None] * ax) + b[None, :, None, None] * (tv[:, None] * ay)
    normals = np.stack([tangent[..., 1], -tangent[..., 0]], -1)
    normals /= np.maximum(np.sqrt(np.square(normals).sum(axis=-1, keepdims=True)), np.float32(1e-9))
    centres = centre + cu[:, None, None] * ax + cv[None, :, None] * ay  # (ncx, ncy, 2)
    points = shape[:, :, None, None] + centres[None, None, :, :, None]  # (na, nb, ncx, ncy, N, 2)
    return ridges.strength(points, normals[:, :, None, None], (0.0,)).mean(axis=-1)


def _refine(ridges: _Ridges, lens: npt.NDArray[np.float64], frame: _Frame) -> tuple[npt.NDArray[np.float64], float]:
    """One lens's parameters refined on a finer grid round `lens`, and its mean strength."""
    step = _grid_steps()
    best, score = lens, -1.0
    for shrink in (0.5, 0.25):
        deltas = np.stack(np.meshgrid(*([np.array([-1.0, 0.0, 1.0])] * 4), indexing="ij"), -1).reshape(-1, 4)
        grid = np.repeat(best[None], len(deltas), axis=0)
        grid[:, :4] += deltas * step * shrink
        points, normals = _loops(grid, frame, _LOOP_POINTS)
        strength = ridges.strength(points, normals, (-1.0, 0.0, 1.0)).mean(axis=1)
        k = int(np.argmax(strength))
        best, score = grid[k], float(strength[k])
    return best, score


def _snap(ridges: _Ridges, points: npt.NDArray[np.float32], normals: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The loop moved along its normals onto the rim's centre line (the model's shape is only near a real lens's)."""
    offsets = np.linspace(-2.0, 2.0, 9)
    strength = np.stack([ridges.strength(points, normals, (o,)) for o in offsets])
    shift = offsets[np.argmax(strength, axis=0)]
    # Weak points follow their neighbours rather than the noise; a running median round the loop.
    shift = np.where(strength.max(axis=0) >= 1.0, shift, 0.0)
    ring = np.concatenate([shift[-3:], shift, shift[:3]])
    shift = np.median(np.lib.stride_tricks.sliding_window_view(ring, 7), axis=1)
    return np.asarray(points + normals * (shift * ridges.scale)[:, None], np.float64)


def find_spectacles(
    ridges: _Ridges,
    landmarks: npt.NDArray[np.float64],
    min_score: float,
    remembered: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    recall_score: float = np.inf,
) -> Spectacles | None:
    """A pair of lens rims round the eyes, or None.

    Lenses are searched as superellipses in each eye's own frame, the same shape on both sides
    (glasses are symmetric), scored by the ridge strength round the whole loop; the best is then
    refined for each eye alone (a turned head shows the lenses differently) and snapped onto the rim.
    Faces without glasses have strong edges round the eyes too (lids, sockets, brows), but not a
    closed loop of thin line at lens size on both sides.

    `remembered` lenses (`Spectacles.lenses` of an earlier picture of the same face) are tried first,
    refined where they are, and taken at `recall_score`: a blurred or turned picture shows the rims
    too faintly to find them anywhere, but enough to confirm them where they were.
    """
    frames = _eye_frames(landmarks)
    if remembered is not None:
        found = _fit(ridges, frames, remembered, recall_score)
        if found is not None:
            return found
    axes = _grid_axes()
    a, b, cu, cv = axes
    best, top = None, -np.inf
    for exponent in _LENS_SHAPES:
        total = np.sum([_coarse_strength(ridges, frame, axes, exponent) for frame in frames], axis=0)
        total[b[None, :] > 1.05 * a[:, None]] = -np.inf  # lenses are not taller than wide
        k = np.unravel_index(int(np.argmax(total)), total.shape)
        if float(total[k]) > top:
            top = float(total[k])
            best = np.array([a[k[0]], b[k[1]], cu[k[2]], cv[k[3]], exponent])
    assert best is not None
    return _fit(ridges, frames, (best, best), min_score)


def _fit(
    ridges: _Ridges, frames: list[_Frame], starts: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]], min_score: float
) -> Spectacles | None:
    """Each lens refined from its start and snapped onto the rim; None when the weaker is below `min_score`."""
    loops, scores, lenses = [], [], []
    for frame, start in zip(frames, starts, strict=True):
        lens, score = _refine(ridges, start, frame)
        points, normals = _loops(lens[None], frame, _LOOP_POINTS)
        loops.append(_snap(ridges, points[0], normals[0]))
        scores.append(score)
        lenses.append(lens)
    if min(scores) < min_score:
        return None
    # A light line is clear or light plastic: kept partly see-through, so the avatar's skin tints it as the
    # sender's did; a dark one is opaque.
    light = ridges.across(np.concatenate(loops)) < 0.0
    bridge = _bridge(ridges, loops[0], loops[1], min_score)
    opacity = _CLEAR_OPACITY if light else 1.0
    return Spectacles((loops[0], loops[1]), min(scores), max(2.0, 2.5 * ridges.scale), opacity, bridge, (lenses[0], lenses[1]))


def _bridge(
    ridges: _Ridges, right: npt.NDArray[np.float64], left: npt.NDArray[np.float64], min_score: float
) -> npt.NDArray[np.float64] | None:
    """The bridge over the nose as a straight line between the lenses' upper inner quarters, if one is seen there.

    Loops run from the eye's outer side through its top (in each eye's own frame, see `_loops`), so
    the same indices on both are the upper inner quarter.
    """
    lo, hi = _LOOP_POINTS // 2, _LOOP_POINTS * 3 // 4
    ends = [loop[lo:hi:2] for loop in (right, left)]
    a = np.repeat(ends[0], len(ends[1]), axis=0)
    b = np.tile(ends[1], (len(ends[0]), 1))
    t = np.linspace(0.15, 0.85, 16)[None, :, None]
    points = (a[:, None] * (1 - t) + b[:, None] * t).astype(np.float32)
    direction = (b - a) / np.maximum(np.linalg.norm(b - a, axis=1, keepdims=True), 1e-9)
    normals = np.broadcast_to(np.stack([direction[:, 1], -direction[:, 0]], -1)[:, None], points.shape).astype(np.float32)
    strength = ridges.strength(points, normals, (-1.0, 0.0, 1.0)).mean(axis=1)
    k = int(np.argmax(strength))
    return np.stack([a[k], b[k]]) if float(strength[k]) >= min_score else None


def mean_eye_width(lm: npt.NDArray[np.float64]) -> float:
    """The eyes' mean corner-to-corner width."""
    return float(np.mean([eye_width(lm, side) for side in ("right", "left")]))


def _brow_hulls(shape: tuple[int, ...], lm: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Both brows' hulls in one mask."""
    return np.asarray(np.maximum.reduce(brow_hulls((shape[0], shape[1]), lm.astype(np.float32))), np.uint8)


def _eye_ridges(
    luma: FloatImage, lm: npt.NDArray[np.float64], width: float, skin: npt.NDArray[np.bool_], eyes: npt.NDArray[np.uint8],
    options: OcclusionOptions,
) -> _Ridges:
    """The ridge maps `find_spectacles` searches, blind on the eyes' own lids and lashes and on the brows."""
    berth = max(1, int(round(_EYE_BERTH * mean_eye_width(lm))))
    blocked = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * berth + 1, 2 * berth + 1))) > 0
    # Brows are lines round the eyes too; a real rim crossing one loses only those points.
    grow = max(1, int(round(_BROW_BERTH * width)))
    blocked |= cv2.dilate(_brow_hulls(luma.shape, lm), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))) > 0
    return _Ridges.of(luma, max(0.7, options.rim_scale * width), skin, blocked)


def _spectacle_mask(
    luma: FloatImage,
    landmarks: npt.NDArray[np.float32],
    width: float,
    skin: npt.NDArray[np.bool_],
    eyes: npt.NDArray[np.uint8],
    options: OcclusionOptions,
    memory: SpectacleMemory | None = None,
) -> FloatImage:
    """0..1 on the rims of spectacles found round the eyes (see `find_spectacles`), soft-edged; 0 elsewhere."""
    lm = landmarks.astype(np.float64)
    ridges = _eye_ridges(luma, lm, width, skin, eyes, options)
    remembered = memory.lenses if memory is not None else None
    found = find_spectacles(ridges, lm, options.rim_score, remembered, options.recall_score)
    if memory is not None:
        memory.update(found)
    if found is None:
        return np.zeros(luma.shape, np.float32)
    rims = np.zeros(luma.shape, np.uint8)
    thickness = max(1, int(round(found.thickness)))
    cv2.polylines(rims, [np.round(loop * 16).astype(np.int32) for loop in found.loops], True, 255, thickness, cv2.LINE_AA, shift=4)
    if found.bridge is not None:
        cv2.polylines(rims, [np.round(found.bridge * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, shift=4)
    # Where a loop passes over the eye's own lids it is the model's guess, not a rim seen.
    rims[eyes > 0] = 0
    soft = cv2.GaussianBlur(rims.astype(np.float32) * np.float32(found.opacity / 255.0), (0, 0), 0.5 * ridges.scale)
    return np.asarray(soft, np.float32)


# The avatar's own glasses (avatar_spectacles). Ridge scores round the weaker lens on 37 portraits: the two
# wearing glasses 1.62 (wire frames, turned) and 2.19 (thick black frames); every other face at most 1.26.
_AVATAR_RIM_SCORE = 1.45
# Share of each fitted loop's points (off the eyes' berths) with a frame pixel near them: with glasses 0.39 (the wire
# frames, turned) and 0.97; of the faces without, those with the strongest ridges round the eyes 0.53, 0.41, 0.34 (all of
# them far below the ridge score above), the rest at most 0.26. A guard: the ridge score is what tells glasses apart.
_FRAME_SUPPORT = 0.3
_FRAME_KERNEL = 0.08  # of the face width: a frame is thinner than this (black-hat of a closing this wide)
_FRAME_CONTRAST = 0.3  # a frame pixel is this much darker (of its surroundings' light) than the closing round it ...
_FRAME_DARK = 0.4  # ... and darker than this share of the skin's median luma (shading on skin is not)
_FRAME_BLACK = 0.25  # of the skin's median luma: darker than this is frame in any shape (a bridge, a hinge)
_FRAME_REACH = 0.45  # of the eye's width round each fitted loop: where a rim may lie (loops sit on one edge of thick ones)
_FRAME_OUTLINE = 0.04  # of the face width past the outline: the arms reach this far in the band they run in
_FRAME_EYE_BERTH = 0.08  # of the eye's width round the openings: lashes, never frame
_FRAME_WING = 0.2  # of the eye's width past each corner, along the eye: the liner's wings, never frame (drawn rigid, a
# wing stays put when the lids close)
_LINE_WIDTH = 0.025  # of the face width: dark parts this thick are hair or shade, unless black
_FRAME_SEED = 3.0  # in ridge scales: the width of the fitted loops a frame's components must touch
_GLINT_REACH = 0.006  # of the face width: how far beside a dark frame a light line is its glint
_GLINT_KERNEL = 0.03  # of the face width: a glint is thinner than this ...
_GLINT_CONTRAST = 0.08  # ... and this much lighter than the opening round it


def avatar_spectacles(image: Image, landmarks: Landmarks) -> FloatImage | None:
    """0..1 on the frames of the glasses an avatar picture wears (rims, bridge, arms), soft-edged; None: no glasses.

    The lens search (`find_spectacles`) fits loops to the rims, but to a thick frame it fits one edge
    and to a wire frame only part of it: the frame itself is segmented round the loops. A frame pixel is
    dark against what is round it at a frame's scale (a black-hat of a closing wider than any frame) and
    dark against the skin (a shading of the skin, however narrow, is not as dark), or black; it lies
    near a loop, or in the band of the lenses' upper half (the bridge and the arms); never on the eyes'
    openings and lash lines or the brows; and belongs to a dark component that runs along a loop. The
    frame must then follow most of both loops. Light frames are not looked for: a portrait's light rim is
    mostly its glint, drawn as it is.
    """
    h, w = image.shape[:2]
    lm = landmarks.astype(np.float64)
    oval = lm[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return None
    region = Region.around(oval.astype(np.float32), (w, h), 0.3 * width)
    fy, fx, _, _ = region.clip_to((w, h))
    crop = np.ascontiguousarray(image[fy, fx])
    local = lm.copy()
    local[:, :2] -= np.array([fx.start, fy.start], np.float64)
    frame = _frame_pixels(crop, local, width)
    if frame is None:
        return None
    out = np.zeros((h, w), np.float32)
    out[fy, fx] = frame
    return out


def _frame_pixels(crop: Image, lm: npt.NDArray[np.float64], width: float) -> FloatImage | None:
    shape = crop.shape[:2]
    face = np.zeros(shape, np.uint8)
    fill_polygon(face, lm[topo.face_oval_ring(), :2])
    ycc = cv2.cvtColor(crop, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    skin = _skin_colour(ycc, face, lm.astype(np.float32), topo.LOWER_SKIN_SAMPLES, max(2, int(round(0.035 * width))))
    if skin is None:
        return None
    luma = ycc[..., 0]
    eyes = eye_openings(shape, lm.astype(np.float32))
    ridges = _eye_ridges(luma, lm, width, skin[3], eyes, OcclusionOptions())
    found = find_spectacles(ridges, lm, _AVATAR_RIM_SCORE)
    if found is None:
        return None
    near, band, allowed = _frame_zone(found, face, eyes, lm, width)
    skin_luma = float(np.median(luma[skin[3]]))
    dark = _dark_lines(luma, skin_luma, width) & (near | band)
    # Only thin lines, unless black: the hair an arm runs into at the temple and a lid's crease under a rim are
    # dark too, but thicker than a wire; a thick frame's bar, bridge and hinges are black, and near the lenses.
    k = max(3, int(round(_LINE_WIDTH * width)) | 1)
    blobs = cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    blobs = cv2.dilate(blobs, np.ones((3, 3), np.uint8)) > 0
    candidates = dark & (~blobs | ((luma < _FRAME_BLACK * skin_luma) & near))
    seeds = np.zeros(shape, np.uint8)
    seed = max(3, int(round(_FRAME_SEED * ridges.scale)))
    cv2.polylines(seeds, [np.round(loop * 16).astype(np.int32) for loop in found.loops], True, 255, seed, cv2.LINE_8, shift=4)
    count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    touching = np.bincount(labels[(seeds > 0) & candidates], minlength=count) >= max(3, seed * seed // 2)
    touching[0] = False
    frame = touching[labels]
    r = max(2, int(round(2.0 * ridges.scale)))
    around = cv2.dilate(frame.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    for loop in found.loops:
        p = np.clip(np.round(loop).astype(np.intp), 0, [shape[1] - 1, shape[0] - 1])
        # Of the loop's points where a frame may be found at all (not those over the eyes' berths and the brows).
        free = allowed[p[:, 1], p[:, 0]]
        if not free.any() or float(around[p[free, 1], p[free, 0]].mean()) < _FRAME_SUPPORT:
            return None
    # Glints on a metal frame (light lines along its dark ones) and its anti-aliased edge go with it: left in
    # the skin they draw a pale ghost of the rims that bends with the mesh.
    g = max(1, int(round(_GLINT_REACH * width)))
    beside = cv2.dilate(frame.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1))) > 0
    frame8 = (frame | (beside & _light_lines(luma, width) & (eyes == 0))).astype(np.uint8)
    frame8 = cv2.morphologyEx(frame8, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    frame8 = cv2.dilate(frame8, np.ones((3, 3), np.uint8))
    return np.asarray(np.clip(cv2.GaussianBlur(frame8.astype(np.float32), (0, 0), 0.7) * 1.5, 0.0, 1.0), np.float32)


def _dark_lines(luma: FloatImage, skin_luma: float, width: float) -> npt.NDArray[np.bool_]:
    k = max(3, int(round(_FRAME_KERNEL * width)) | 1)
    light = luma + np.float32(8.0)
    closed = cv2.morphologyEx(light, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    narrow = light < np.float32(1.0 - _FRAME_CONTRAST) * closed
    return np.asarray((narrow | (luma < _FRAME_BLACK * skin_luma)) & (luma < _FRAME_DARK * skin_luma), np.bool_)


def _eye_berths(eyes: npt.NDArray[np.uint8], lm: npt.NDArray[np.float64], eye_width: float) -> npt.NDArray[np.uint8]:
    """255 round each eye's opening: its lashes above and below, and further out past its corners, its liner's wings."""
    e = max(1, int(round(_FRAME_EYE_BERTH * eye_width)))
    out = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1)))
    for ring, (outer, inner) in ((topo.right_eye_ring(), topo.RIGHT_EYE_CORNERS), (topo.left_eye_ring(), topo.LEFT_EYE_CORNERS)):
        o, i = lm[outer, :2], lm[inner, :2]
        axis = o - i
        angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
        across = np.array([-axis[1], axis[0]]) / max(float(np.linalg.norm(axis)), 1e-6)
        height = float(np.ptp((lm[ring, :2] - i) @ across))
        half = (int(round((0.5 + _FRAME_WING) * eye_width)), int(round(0.5 * height + _FRAME_EYE_BERTH * eye_width)))
        centre = tuple(int(round(v)) for v in (o + i) / 2)
        cv2.ellipse(out, centre, half, angle, 0, 360, 255, -1)
    return out


def _light_lines(luma: FloatImage, width: float) -> npt.NDArray[np.bool_]:
    """Thin lines lighter than what is round them (a white-hat of an opening a wire's glint fits in)."""
    k = max(3, int(round(_GLINT_KERNEL * width)) | 1)
    light = luma + np.float32(8.0)
    opened = cv2.morphologyEx(light, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return np.asarray(light > np.float32(1.0 + _GLINT_CONTRAST) * opened, np.bool_)


def _frame_zone(
    found: Spectacles, face: npt.NDArray[np.uint8], eyes: npt.NDArray[np.uint8], lm: npt.NDArray[np.float64], width: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Where a frame may be: near the fitted loops, and elsewhere in the band of the lenses' upper half inside the
    (grown) outline (bridge, arms); never on the eyes' openings with their lashes and wings, nor on the brows (the
    third mask: all but those)."""
    shape = face.shape
    eye_width = mean_eye_width(lm)
    loops = np.zeros(shape, np.uint8)
    cv2.polylines(loops, [np.round(loop * 16).astype(np.int32) for loop in found.loops], True, 255, 1, cv2.LINE_8, shift=4)
    near = cv2.distanceTransform((loops == 0).astype(np.uint8), cv2.DIST_L2, 3) <= _FRAME_REACH * eye_width
    points = np.concatenate(found.loops)
    top = float(points[:, 1].min()) - _FRAME_REACH * eye_width
    middle = float(np.mean([loop[:, 1].mean() for loop in found.loops]))
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    g = max(1, int(round(_FRAME_OUTLINE * width)))
    outline = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1))) > 0
    allowed = (_eye_berths(eyes, lm, eye_width) == 0) & (_brow_hulls(shape, lm) == 0)
    band = (rows >= top) & (rows <= middle) & outline & ~near & allowed
    return np.asarray(near & allowed, np.bool_), np.asarray(band, np.bool_), np.asarray(allowed, np.bool_)


@cache
def _disc_rectangles(radius: int) -> tuple[tuple[int, int], ...]:
    """cv2's elliptical structuring element of `radius` as a union of centred rectangles (half-width, half-height),
    one per width its rows come in: each row of it is a centred run, no longer than the rows nearer its middle."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    half = disc[radius:].sum(axis=1) // 2  # each row's half-width, from the middle row out
    return tuple((int(w), int(np.flatnonzero(half >= w).max())) for w in sorted(set(half.tolist())))


_Pixel = TypeVar("_Pixel", bound=np.generic)


def _disc_morphology(dilate: bool, image: npt.NDArray[_Pixel], radius: int) -> npt.NDArray[_Pixel]:
    """cv2.dilate (or cv2.erode) of `image` by cv2's elliptical structuring element of `radius`, the same values:
    a union of rectangles' dilations is the union's, and OpenCV filters a rectangle by rows then columns, where it
    takes an ellipse's every point at every pixel (a 25-39 px face's disc: 2x faster, ~3 ms a keyframe)."""
    op, combine = (cv2.dilate, np.maximum) if dilate else (cv2.erode, np.minimum)
    out: npt.NDArray[_Pixel] | None = None
    for w, h in _disc_rectangles(radius):
        part = cast(npt.NDArray[_Pixel], op(image, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * w + 1, 2 * h + 1))))
        out = part if out is None else combine(out, part, out=out)
    assert out is not None
    return out


def occluder_mask(
    image: Image,
    landmarks: Landmarks,
    options: OcclusionOptions | None = None,
    alpha: FloatImage | None = None,
    memory: SpectacleMemory | None = None,
) -> FloatImage:
    """0..1 per pixel of `image`: 1 where something covers the face, 0 on skin, features and off-face.

    Only inside the outline pulled in by `options.edge_margin`: the mesh outline often runs over
    background or the hair line at the temples, which the face mask's feather handles anyway.
    With the keyframe's `alpha`, background (alpha < 0.5) is never an occluder. `memory` carries the
    session's glasses from keyframe to keyframe (read, and updated by each keyframe that searched for them).
    """
    opts = options or OcclusionOptions()
    h, w = image.shape[:2]
    out = np.zeros((h, w), np.float32)
    oval = landmarks[topo.face_oval_ring(), :2]
    region = Region.around(oval, (w, h), 2)
    fy, fx, _, _ = region.clip_to((w, h))
    crop = image[fy, fx]
    if crop.size == 0:
        return out
    shift = np.array([fx.start, fy.start], np.float32)
    lm = landmarks[:, :2] - shift
    width = float(np.ptp(oval[:, 0]))
    face = np.zeros(crop.shape[:2], np.uint8)
    fill_polygon(face, oval - shift)
    margin = max(1, int(round(opts.edge_margin * width)))
    inner = _disc_morphology(False, face, margin)
    ycc = cv2.cvtColor(crop, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    radius = max(2, int(round(0.035 * width)))
    skin = _skin_colour(ycc, face, lm, topo.SKIN_SAMPLES, radius)
    if skin is None:
        return out
    my, sy, chroma, sampled = skin
    sy = max(sy, 6.0)
    # Another colour, or much darker (hair, dark frames). Not brighter: that is mostly shine on skin.
    odd = (chroma > opts.chroma_sigmas) | (ycc[..., 0] < opts.dark_ratio * my)

    eyes = eye_openings(crop.shape, lm)
    features = np.zeros(crop.shape[:2], np.uint8)
    fill_polygon(features, lm[topo.outer_lip_ring()])
    lines_ok = np.ones(crop.shape[:2], np.uint8)
    for brow in topo.brows():
        hull = cv2.convexHull(np.round(lm[brow]).astype(np.int32))
        cv2.fillConvexPoly(features, hull, 255)
    for i in topo.NOSTRILS:
        cv2.circle(features, (int(lm[i, 0]), int(lm[i, 1])), radius, 255, -1)
    grow = max(1, int(round(0.03 * width)))
    features = _disc_morphology(True, features, grow)
    lines_ok[features > 0] = 0
    # Eye sockets (make-up, shadows, lashes) are the face's own: a wider berth than other features.
    socket = max(1, int(round(0.07 * width)))
    features |= _disc_morphology(True, eyes, socket)

    # Areas of another colour that come in from outside the face (hair, a hand) or are large (a
    # mask). A small patch inside the face with skin all round is the face's own (a flush between
    # the brows, a birthmark, make-up) and is replaced with the rest of it.
    candidates = (odd & (face > 0) & (features == 0)).astype(np.uint8)
    from_edge = (face > 0) & (inner == 0)
    face_area = float(np.count_nonzero(face))
    blobs = _components(candidates, opts.min_area * crop.size / 3, from_edge, opts.inner_area * face_area)
    # Thin dark lines crossing the face, long ones only: spectacle frames. (Clear rims are too faint
    # to tell from skin texture this way; erasing them leaves no ghost, just no glasses.)
    near_eyes = cv2.dilate(eyes, np.ones((3, 3), np.uint8))
    rims = _rims(ycc[..., 0], width, my, sy) & (face > 0) & (near_eyes == 0) & (lines_ok > 0)
    rims = _long_components(rims.astype(np.uint8), 0.25 * width)
    allowed = (inner > 0) if alpha is None else (inner > 0) & (alpha[fy, fx] >= 0.5)
    # Judged again once the outline band is cut away: of a patch that came in from the edge, what is
    # left inside must be large on its own. Hair tips at the temple beside the eye, cut off from
    # their hair, are drawn as dark spots on the avatar's skin, not as hair.
    least = opts.inside_area * opts.min_area * crop.size / 3
    inside = _components((blobs * allowed).astype(np.uint8), least, opened=True)
    inside = _reaching_out(blobs, inside, face > 0 if alpha is None else (face > 0) & (alpha[fy, fx] >= 0.5))
    spectacles = None
    # Glasses not drawn and nothing kept: the search (35 ms of a 67-92 ms first frame after a keyframe, on a sender
    # with no glasses) would find rims to cut out of nothing. `memory` then keeps what it had, unconfirmed or not.
    if opts.spectacles and (opts.glasses or bool(inside.any())):
        spectacles = _spectacle_mask(ycc[..., 0], lm, width, sampled, eyes, opts, memory)
    if not opts.glasses:
        inside, rims = _without_glasses(inside, rims, spectacles, crop, lm, least), np.zeros_like(rims)
    mask = np.maximum(inside, rims * allowed)
    soft = np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(0.8, 0.012 * width)) * 1.5, 0.0, 1.0)
    if spectacles is not None and opts.glasses:
        # Drawn with their own narrow edge: a wide one shows a band of the sender's skin round a thin rim.
        soft = np.maximum(soft, spectacles * allowed)
    out[fy, fx] = soft
    return out


def _without_glasses(
    kept: npt.NDArray[np.uint8], rims: npt.NDArray[np.uint8], spectacles: FloatImage | None, crop: Image,
    lm: npt.NDArray[np.float32], least: float,
) -> npt.NDArray[np.uint8]:
    """`kept` (hair, hands) without the sender's glasses: the long thin dark lines (`rims`), the rims found by their
    shape (`spectacles`) and, for dark frames, the frame segmented round them as on an avatar's picture
    (`_frame_pixels`: the lens search fits one edge of a thick frame), grown by their dark edge. Dark frames reach
    the outline at the temples, where the colour path takes them for something coming in: drawn on an avatar
    without the rest of them they are dark stubs beside its eyes. What is left of a patch once they are cut out
    must still be `least` pixels: a hinge alone is not hair."""
    glasses = rims > 0
    if spectacles is not None:
        glasses |= spectacles > 0.05
    if not kept.any() or not glasses.any():  # nothing kept, or no glasses seen (the frame search needs its lenses too)
        return kept
    width = float(np.ptp(lm[topo.face_oval_ring(), 0]))
    frame = _frame_pixels(crop, lm.astype(np.float64), width)
    if frame is not None:
        glasses |= frame > 0.05
    grow = max(1, int(round(FRAME_EDGE * width)))
    cut = cv2.dilate(glasses.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return _components(np.asarray(kept * (cut == 0), np.uint8), least, opened=True)


# Of the face width: a spectacle frame's dark edge and shadow beside its rim, taken with it (here, and where
# glasses.lift_glasses fills an avatar's frames out).
FRAME_EDGE = 0.012


# Skin for the cover's colour model: cheeks, nose and the sides of the nose, never the forehead
# (a fringe may cover all of it).


def avatar_cover(image: Image, landmarks: Landmarks, chroma_sigmas: float = 3.5, dark_ratio: float = 0.62) -> FloatImage:
    """0 or 1 per pixel: where something that is not the face's skin covers an avatar's face (hair,
    a fringe or its parting, a hat or helmet, background inside a loose outline).

    For an avatar portrait, prepared once. The skin's colour comes from robust statistics of the
    cheeks and nose (`topo.LOWER_SKIN_SAMPLES`, never the forehead: a fringe may cover all of it),
    the skin's light from a smooth field fitted to the pixels of skin colour; a pixel is cover
    when its colour is `chroma_sigmas` robust sigmas off the skin's, or when it is darker than
    `dark_ratio` of the skin's light at its place (a shadow is skin in less light and follows the
    field; hair is a step below it). Cover hangs in from the outline, so only components that touch
    the outline above the nose count, and below the eyes only near the outline: the inside of the
    lower face is the face's own (a beard, a moustache, the nose's shadow, paint). A component
    entirely above the brows counts too (a parting, a hair clip). Features are never cover, nor spectacles
    found by their shape (`find_spectacles`): glasses the avatar wears are part of its look; except a
    brow that a fringe runs into (_brows_under_hair): its hair-coloured pixels are cover, and so are
    strands that hang on below it (frontal.fill_cover draws the brow again). On the forehead a fringe's lit
    strands go with its shaded ones (_fringe_gaps), above the eyes the cover reaches past the outline as far
    as the render's feather samples (_over_the_brim). The result may so reach a little past the outline.
    """
    h, w = image.shape[:2]
    out = np.zeros((h, w), np.float32)
    oval = landmarks[topo.face_oval_ring(), :2]
    width = float(np.ptp(oval[:, 0]))
    if width < 8.0:
        return out
    face = np.zeros((h, w), np.uint8)
    fill_polygon(face, oval)
    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    skin = _skin_colour(ycc, face, landmarks, topo.LOWER_SKIN_SAMPLES, max(2, int(round(0.035 * width))))
    if skin is None:
        return out
    my, _, chroma, sampled = skin
    features = feature_mask((h, w), landmarks, width)
    # The avatar's own glasses are part of its look (and dark thin loops, which the cover would take in pieces).
    eyes = eye_openings((h, w), landmarks)
    rims = _spectacle_mask(ycc[..., 0], landmarks.astype(np.float32), width, sampled, eyes, OcclusionOptions()) > 0.05
    grow = max(1, int(round(0.02 * width)))
    features |= cv2.dilate(rims.astype(np.uint8) * 255, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    log_y = np.log(ycc[..., 0] + np.float32(8.0))
    skinish = (face > 0) & (features == 0) & (chroma < chroma_sigmas) & (np.abs(log_y - np.float32(np.log(my + 8.0))) < 0.7)
    light = smooth_field(log_y, skinish.astype(np.float32))
    # Refitted without what lies well below the first fit: a fringe's lit strands pass for skin by colour, and
    # over a forehead they cover they pulled the field down there, so its shaded strands were not dark enough
    # under it to be cover.
    skinish &= log_y - light > np.float32(np.log(_REFIT_BELOW))
    light = smooth_field(log_y, skinish.astype(np.float32))
    odd = (chroma > chroma_sigmas) | (log_y - light < np.float32(np.log(dark_ratio)))
    mask = _hanging_cover(odd, face, features, landmarks, width)
    hidden = _brows_under_hair(mask, odd, log_y, landmarks, width)
    if hidden.any():
        # A fringe over a brow: the brow's zone is cover too, and strands hanging on below it join it.
        features[hidden > 0] = 0
        mask = _hanging_cover(odd, face, features, landmarks, width)
        mask[(hidden > 0) & ~odd] = 0
    mask, reach = _over_the_brim(mask, odd, face, landmarks, width)
    mask = _fringe_gaps(mask, reach, features, landmarks, width)
    mask = _hanging_fringe(mask, reach, features, landmarks, width)
    mask[(reach == 0) | (features > 0)] = 0
    return mask.astype(np.float32)


def _over_the_brim(
    mask: npt.NDArray[np.uint8], odd: npt.NDArray[np.bool_], face: npt.NDArray[np.uint8], landmarks: Landmarks, width: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """`mask` followed out past the outline above the eyes through pixels off the skin, and the face so grown.

    The render's feathered edge samples the picture a little past the outline (its feather, _OUTLINE_REACH),
    and at the top of the forehead that is the fringe the cover stops at: its strands showed as stripes along
    the top of the rendered forehead. Hair joined to the cover there is cover too; below the eyes the sides
    keep their picture (an ear, the hair beside the cheek), which the feather shows as the avatar's own edge.
    """
    g = max(1, int(round(_OUTLINE_REACH * width)))
    grown = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
    rows = np.arange(face.shape[0], dtype=np.float32)[:, None]
    brim = (grown > 0) & (face == 0) & (rows < float(landmarks[list(topo.EYE_CORNERS), 1].mean()))
    reach = face.copy()
    reach[brim] = 255
    if not mask.any() or not brim.any():
        return mask, reach
    taken = mask > 0
    passable = taken | (brim & odd)
    step = np.ones((3, 3), np.uint8)
    for _ in range(g):
        taken = (cv2.dilate(taken.astype(np.uint8), step) > 0) & passable
    return taken.astype(np.uint8), reach


def _fringe_gaps(
    mask: npt.NDArray[np.uint8], face: npt.NDArray[np.uint8], features: npt.NDArray[np.uint8], landmarks: Landmarks, width: float
) -> npt.NDArray[np.uint8]:
    """`mask` with a fringe's lit strands above the brows taken with its shaded ones.

    A fringe's strands hang down the forehead; the lit ones are near the skin's colour and light, so only
    the shaded ones were cover, and the lit ones were left as pale stripes that the render stretches over
    the sender's forehead. On the forehead (up to the outline, or past it where the render's feather reaches:
    `face`), a gap up to _FRINGE_GAP face widths across with cover on both sides at the same height is fringe
    too. (Filling columns between cover above and below took the skin between a fringe and temple hair.) Only
    above the brows: beside the eyes a gap that wide is the eye's own corner.
    """
    if not mask.any():
        return mask
    rows = np.arange(mask.shape[0], dtype=np.float32)[:, None]
    forehead = (rows < float(landmarks[list(topo.BROW_TOPS), 1].max())) & (face > 0) & (features == 0)
    half = max(1, int(round(_FRINGE_GAP * width)))
    out = mask.copy()
    closed = cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((1, 2 * half + 1), np.uint8))
    out[(closed > 0) & forehead] = 1
    return out


def _hanging_fringe(
    mask: npt.NDArray[np.uint8], face: npt.NDArray[np.uint8], features: npt.NDArray[np.uint8], landmarks: Landmarks, width: float
) -> npt.NDArray[np.uint8]:
    """`mask` with the whole of a fringe over the forehead: everything above the brows from the top of the
    forehead down to where the cover hanging from it ends.

    A fringe's lit strands are near the skin's colour, and a run of them wider than _fringe_gaps closes (or
    one beside a brow that shows, which stops that closing) stayed in the texture as a wedge of hair between
    the painted-out strands: the render stretches it with the forehead's skin into a dark triangle as the
    head turns. The fringe hangs from the hairline, so per column the cover is followed down from the top
    of the forehead (`face`: the outline, or past it as far as the render's feather reaches; between the brows'
    outer ends) across gaps up to _FRINGE_RUN_GAP, and the run's ends are joined across columns up to
    _FRINGE_SPAN either side: columns
    of lit strands between shaded ones are fringe as deep as the shaded ones beside them. Columns whose top
    is skin (a high hairline, temple hair hanging in at the side below bare skin) take nothing.
    """
    h, w = mask.shape
    brow_bottom = int(np.ceil(float(landmarks[list(topo.BROW_TOPS), 1].max())))
    rows = min(h, max(0, brow_bottom))
    if rows == 0 or not mask[:rows].any():
        return mask
    inside = (face[:rows] > 0) & (features[:rows] == 0)
    covered = (mask[:rows] > 0) & inside
    gap = max(1, int(round(_FRINGE_RUN_GAP * width)))
    # A column's run: from its first forehead pixel, through cover, across gaps of up to `gap` pixels. A brow's
    # zone ends a run as cover does: the strands' lit ends hanging onto a brow are the fringe's (left, they stayed
    # as a pale notch above the brow that the render stretched into a wedge with the strands' dark ends).
    bridged = cv2.morphologyEx(covered.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((2 * gap + 1, 1), np.uint8)) > 0
    onto = covered | ((face[:rows] > 0) & (features[:rows] > 0))
    bridged |= cv2.morphologyEx(onto.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((gap + 1, 1), np.uint8)) > 0
    top = np.where(inside.any(axis=0), inside.argmax(axis=0), rows)
    y = np.arange(rows)[:, None]
    below_top = y >= top[None, :]
    # Rows from the top until the first one neither bridged cover nor off the forehead (a feature's berth).
    # The top rows pass too (_FRINGE_TOP): by the hairline a fringe is often lit, past the outline the cover holds
    # only its shaded strands.
    # (Counted from the forehead's highest line, level with the brows (a tilted head's is tilted), not from each
    # column's top: where the outline slopes down the sides, a window from the column's own top reached the
    # temples' cover and took the skin above it.)
    ends = landmarks[[brow[0] for brow in topo.brows()], :2]
    slope = float((ends[1, 1] - ends[0, 1]) / (ends[1, 0] - ends[0, 0])) if abs(float(ends[1, 0] - ends[0, 0])) > 1.0 else 0.0
    cols = np.arange(w, dtype=np.float64)
    level = float(np.min(np.where(top < rows, top - slope * cols, np.inf))) + slope * cols
    start = below_top & (y <= np.maximum(top + gap, level + _FRINGE_TOP * width)[None, :])
    # The run goes on from the last cover in those rows: a short fringe ending within them ends there.
    last_start = np.where((covered & start).any(axis=0), rows - 1 - np.argmax((covered & start)[::-1], axis=0), rows)
    stops = (y > last_start[None, :]) & inside & ~bridged
    first_stop = np.where(stops.any(axis=0), stops.argmax(axis=0), rows)
    hangs = (covered & start).any(axis=0)
    end = np.where(hangs, first_stop, 0).astype(np.float32)
    # Joined across columns: a closing of the runs' ends (narrow dips between shaded strands filled).
    half = max(1, int(round(_FRINGE_SPAN * width)))
    line = end[None, :]
    closed = cv2.erode(cv2.dilate(line, np.ones((1, 2 * half + 1), np.uint8)), np.ones((1, 2 * half + 1), np.uint8))[0]
    # Between the brows' outer ends only: beside them the temples' own cover (temple hair) goes by _hanging_cover,
    # and joined with the fringe's runs there it took the skin by a brow's tail.
    brow_x = landmarks[[i for brow in topo.brows() for i in brow], 0]
    x = np.arange(w)[None, :]
    between = (x >= float(brow_x.min())) & (x <= float(brow_x.max()))
    take = (y < closed[None, :]) & below_top & inside & between
    out = mask.copy()
    out[:rows][take] = 1
    return out


def _hanging_cover(
    odd: npt.NDArray[np.bool_], face: npt.NDArray[np.uint8], features: npt.NDArray[np.uint8], landmarks: Landmarks, width: float
) -> npt.NDArray[np.uint8]:
    """1 on the components of `odd` pixels that hang in from the outline above the nose (or lie wholly above the brows), closed."""
    h, w = odd.shape
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    below_nose = rows > float(landmarks[topo.SUBNASALE, 1])
    mouth_x = landmarks[list(topo.MOUTH_CORNERS), 0]
    beard = below_nose & (cols > mouth_x.min() - 0.15 * width) & (cols < mouth_x.max() + 0.15 * width)
    side = max(1, int(round(0.12 * width)))
    inner = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * side + 1, 2 * side + 1)))
    low_inside = (rows > float(landmarks[list(topo.EYE_CORNERS), 1].mean())) & (inner > 0)
    candidates = (odd & (face > 0) & (features == 0) & ~beard & ~low_inside).astype(np.uint8)
    candidates = cv2.morphologyEx(candidates, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    band = max(1, int(round(0.04 * width)))
    rim = (face > 0) & (cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))) == 0) & ~below_nose
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    touches = np.zeros(count, np.bool_)
    touches[np.unique(labels[rim & (candidates > 0)])] = True
    area = stats[:, cv2.CC_STAT_AREA]
    face_area = float(np.count_nonzero(face))
    bottom = stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT]
    above_brows = bottom < float(landmarks[list(topo.BROW_TOPS), 1].mean())
    keep = (touches & (area >= 0.001 * face_area)) | (above_brows & (area >= 0.003 * face_area))
    keep[0] = False
    mask = keep[labels].astype(np.uint8)
    if not mask.any():
        return mask
    # Strands leave gaps of skin between them: close them.
    k = max(3, int(round(0.03 * width)) | 1)
    return np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))), np.uint8)


def brow_hulls(shape: tuple[int, int], landmarks: Landmarks, grow: float = 0.0) -> list[npt.NDArray[np.uint8]]:
    """Each brow's convex hull (255 inside), grown by `grow` face widths."""
    width = float(np.ptp(landmarks[topo.face_oval_ring(), 0]))
    hulls = []
    for brow in topo.brows():
        hull = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks[brow, :2]).astype(np.int32)), 255)
        g = int(round(grow * width))
        if g > 0:
            hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
        hulls.append(hull)
    return hulls


def _brows_under_hair(
    cover: npt.NDArray[np.uint8], odd: npt.NDArray[np.bool_], log_y: FloatImage, landmarks: Landmarks, width: float
) -> npt.NDArray[np.uint8]:
    """255 over the brows (their feature zones) that a fringe runs into: hair over the brow cannot be
    told from the brow by colour, and kept as a feature it lands as a dark block over the sender's brow.

    A brow is under hair when the cover holds most of the band just above its zone and most of the
    zone is not skin, unless the brow shows (`_brow_shows`): a hairline, a hat or temple hair often
    come down near a visible brow, and a skin model fitted to the cheeks may take a pale or shaded
    forehead for cover too. Such a brow is cover (painted with skin, then redrawn by frontal.fill_cover).
    """
    h, w = cover.shape
    out = np.zeros((h, w), np.uint8)
    rows = np.arange(h, dtype=np.float32)[:, None]
    cores = brow_hulls((h, w), landmarks)
    zones = brow_hulls((h, w), landmarks, _FEATURE_GROW)
    bands = brow_hulls((h, w), landmarks, _FEATURE_GROW + _BROW_BAND)
    for brow, core, zone, band in zip(topo.brows(), cores, zones, bands, strict=True):
        top = float(landmarks[brow[:5], 1].mean())
        above = (band > 0) & (zone == 0) & (rows < top)
        inside = zone > 0
        if not above.any() or not inside.any():
            continue
        if float(cover[above].mean()) > _BROW_HIDDEN and float(odd[inside].mean()) > _BROW_HIDDEN:
            axis = landmarks[brow[4], :2] - landmarks[brow[0], :2]
            if not _brow_shows(log_y, core > 0, above, inside, axis.astype(np.float64), width):
                out[inside] = 255
    return out


def _brow_shows(
    log_y: FloatImage,
    core: npt.NDArray[np.bool_],
    above: npt.NDArray[np.bool_],
    zone: npt.NDArray[np.bool_],
    axis: npt.NDArray[np.float64],
    width: float,
) -> bool:
    """Whether a brow is seen, not hidden under a fringe: most of it has something clearly lighter
    just above it (skin, or a hat's brim: a fringe over it is as dark above as on it), and its zone is
    not crossed by strands (a brow's hairs and edges run along it; a fringe's strands run across it).
    """
    columns = np.flatnonzero(core.any(axis=0))
    steps = []
    for x in columns:
        up, on = log_y[above[:, x], x], log_y[core[:, x], x]
        if len(up) and len(on):
            steps.append(float(np.median(up)) - float(np.percentile(on, 25)))
    if not steps or float(np.mean(np.asarray(steps) > _BROW_STEP)) < _BROW_STEP_SHARE:
        return False
    smooth = cv2.GaussianBlur(log_y, (0, 0), max(0.7, 0.004 * width))
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)[zone]
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)[zone]
    u = axis / max(float(np.linalg.norm(axis)), 1e-6)
    along = float(np.sum((gx * u[0] + gy * u[1]) ** 2))
    across = float(np.sum((gy * u[0] - gx * u[1]) ** 2))
    return along < _STRANDS_ACROSS * (along + across + 1e-9)


_FEATURE_GROW = 0.025  # of the face width: feature_mask's berth round the features
_OUTLINE_REACH = 0.05  # of the face width: how far past the outline the render's feather samples (mesh's blend.feather)
_REFIT_BELOW = 0.8  # of the first fit of the skin's light: darker pixels are left out of the second
_FRINGE_GAP = 0.06  # of the face width: half the widest gap between a fringe's strands that is closed
_FRINGE_RUN_GAP = 0.03  # of the face width: the longest gap of skin down a fringe's strand still followed
_FRINGE_TOP = 0.12  # of the face width: how far below the top of the forehead a fringe's cover may start
_FRINGE_SPAN = 0.1  # of the face width: half the widest run of lit strands joined between shaded ones
_BROW_BAND = 0.04  # of the face width: the band above a brow's zone that tells whether a fringe runs into it
_BROW_HIDDEN = 0.5  # share of that band under cover, and of the zone off the skin, for a brow to be under hair
# A brow shows when at least half its columns are 0.2 lighter in log luma just above it than its
# darker quarter, and less than 45 % of its zone's gradient energy runs along it (strands across it).
# Measured on 37 portraits: visible brows under a hairline or helmet 0.53-1.0 and 0.10-0.38; fringes
# over the brows 0.01-0.44 or 0.48-0.72.
_BROW_STEP = 0.2
_BROW_STEP_SHARE = 0.5
_STRANDS_ACROSS = 0.45


def smooth_field(values: FloatImage, weight: FloatImage, scale: int = 4) -> FloatImage:
    """A quadratic surface through `values` where `weight` is, fitted at 1/`scale` size, full size."""
    h, w = values.shape[:2]
    small = (max(1, w // scale), max(1, h // scale))
    vs = cv2.resize(values, small, interpolation=cv2.INTER_AREA)
    ws = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    field = fit_field(vs, (ws > 0.99).astype(np.float32), quadratic_basis(*small))
    return np.asarray(cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
