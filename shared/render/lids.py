"""Closing lids: the warp's stretched lid smoothed into skin, and a lash line where the lids meet.

An open eye shows a thin band of upper lid between the lashes and the crease. As the eye closes
the mesh stretches that band over the whole eyeball, so its lashes and crease become vertical
streaks, and what is left of the opening shows as a torn dark slit. As an eye closes past about
a third, the region from the crease down to the lower lid is blended with a copy of itself
blurred along the eye (which keeps the lid's shading from crease to lashes but not the streaks),
and a soft dark line is drawn where the lids meet. Nearly shut, what is left of the opening is
covered with the lid just above it: a tracked blink rarely closes the mesh's lids completely, and
a drawn (cartoon) eye's bright white would show through that slit as a white line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.render.eyes_mouth import RIGHT_LID_ABOVE, RIGHT_LID_LASHES, lid_closing
from facewire.shared.types import Image, Landmarks

IndexArray = npt.NDArray[np.int32]

# Closing fractions (eyes_mouth.lid_closing: the gap across the eye) where the smoothing starts and is complete.
# The sender's own lids: a tracked blink or wink reads 0.83-0.99, a squint or a lid lowered by a glance 0.3-0.7.
_START, _FULL = 0.35, 0.88
_BLUR = 0.3  # of the eye's width: the length of the blur along the eye
_FEATHER = 0.06  # of the eye's width: the soft edge of the smoothed region
_LASH = 0.04  # of the eye's width: the lash line's thickness
_LASH_DARKNESS = 0.45
_SHUT_START, _SHUT_FULL = 0.62, 0.77  # closing fractions where the slit starts being covered and is covered
_LID_SAMPLE = 0.08  # of the eye's width above the upper margin: the lid colour the slit is covered with
_SUBPIXEL = 4
_RIM = 0.12  # of the eye's width: the band of skin round the eye a redrawn lid takes its colour from
# A closed avatar lid's lashes (close_lids' `own_lashes`): the open eye's band from its upper margin towards its lashes'
# ring (these fractions of the way), where its lashes, liner or lash shadow are, laid along the closed margin from
# _LASH_ABOVE lash thicknesses above it to _LASH_BELOW below, root up, tips down: the avatar's own lash colour and
# texture, not a uniform grey bar, which left its closed eyes a stranger's (dlib distance 0.60-0.65 on w0's blinks).
_LASH_ROOTS, _LASH_TIPS = 0.05, 0.55
_LASH_ABOVE, _LASH_BELOW = 0.8, 3.2
_LASH_FULL = 2.5  # over (1 - x^2) across the eye (x: -1 to 1 corner to corner): where the line is at its full depth
_LASH_END = 0.3  # of its full depth: the line's at the corners
_LASH_TIPS_FADE = 0.5  # of the depth below the margin over which the lash tips fade out


_STRIP_SAMPLES = 8  # per pixel of the picture, along the margin and across the band: a lash strip's samples


@dataclass(frozen=True)
class LashStrip:
    """One open eye's lash band in a picture (close_lids' `own_lashes`), sampled once: brightness (luma) by depth
    across the band (rows: `_LASH_ROOTS` to `_LASH_TIPS` of the way from its upper margin to its lashes' ring) and
    arc-length fraction along the margin (columns: 0 to 1), at `_STRIP_SAMPLES` a picture pixel each way.

    A closed lid's line looks it up by those two coordinates alone, so a frame computes only where each drawn pixel is
    on its closed margin. The picture's bilinear samples an eighth of its pixel apart, looked up bilinearly, are
    within a few grey levels of the picture sampled at each drawn pixel, at its sharpest lash edges (d3 x s5's and w0's
    composed frames: 3-4 at most, ~0.001 on average), about what cv2.remap's 1/32-pixel positions alone vary by there."""

    luma: npt.NDArray[np.float32]


@dataclass(frozen=True)
class LashSource:
    """The picture a closed avatar lid takes its lash line from (close_lids' `own_lashes`): the avatar's own open
    eyes' lash strips, right eye then left, from its picture at about the scale the face is drawn at. Build it once
    per picture (`of`, ~0.6 ms): sampled at each drawn pixel, the picture cost ~0.2 ms a closed eye every frame."""

    strips: tuple[LashStrip, LashStrip]

    @classmethod
    def of(cls, image: Image, points: npt.NDArray[np.float32]) -> LashSource:
        """`image`'s lash strips; `points` the face's landmarks (x, y) in `image`'s pixels."""
        source = points.astype(np.float64)
        right, left = (_lash_strip(image, source[ring], source[lashes]) for ring, _, lashes in _eyes())
        return cls((right, left))


def _lash_strip(image: Image, ring: npt.NDArray[np.float64], lashes: npt.NDArray[np.float64]) -> LashStrip:
    """The open eye's lash band in `image` (`ring` its ring, `lashes` its lashes' ring there) as a LashStrip."""
    half = len(ring) // 2
    margin = ring[: half + 1]
    tips_line = np.concatenate([ring[:1], lashes, ring[half : half + 1]])
    span = float(np.linalg.norm(np.diff(margin, axis=0), axis=1).sum())
    reach = (_LASH_TIPS - _LASH_ROOTS) * float(np.linalg.norm(tips_line - margin, axis=1).max())
    along = np.linspace(0.0, 1.0, int(np.ceil(_STRIP_SAMPLES * span)) + 2)
    share = np.linspace(_LASH_ROOTS, _LASH_TIPS, int(np.ceil(_STRIP_SAMPLES * reach)) + 2)[:, None, None]
    roots, tips = _polyline_at(margin, along)[None], _polyline_at(tips_line, along)[None]
    where = (roots + share * (tips - roots)).astype(np.float32)
    samples = cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return LashStrip(np.ascontiguousarray(samples.astype(np.float32) @ LUMA_BGR))


@dataclass(frozen=True)
class LidStyle:
    """How `close_lids` draws a closing lid.

    The sender's own face (self mode) only needs its stretched lid smoothed: the stretch is of its own
    lid. An avatar's visible lid band is often a few pixels of lashes, crease shadow or a make-up
    highlight; stretched over the eye and smoothed it reads as a pale or grey band, so `redraw` fills
    the upper lid with the skin round the eye (its rim: the skin under the brow, the corners and the
    lower lid) and draws the lash line darker and thicker, which is what says "closed" on a small tile.
    """

    redraw: bool = False
    start: float = _START  # closing fractions where the redrawn lid and the lash line start and are complete
    full: float = _FULL
    shut: tuple[float, float] = (_SHUT_START, _SHUT_FULL)  # closing fractions over which the slit is covered
    lash: float = _LASH
    lash_darkness: float = _LASH_DARKNESS
    smooth_opening: bool = True  # the smoothing reaches down to the lower lid, over what is left of the opening
    # What is left of a shut eye's opening covered whole: the opening's blurred polygon covers a slit thinner than
    # its blur only in part (a 3-px slit: ~40%), and a drawn eye's white or iris showed through a wink as a line.
    cover_whole: bool = False
    # The redrawn lid reaches up to the lashes' ring only, the band above it (to the crease) kept as the picture's: a
    # closed eye keeps its own fold, lid shadow or make-up over the skin-coloured lid and its lash line. Redrawn up to
    # the crease, a shut avatar eye was a bare dark line on blank skin (w0's near-shut frames, 12 and 36, where most of its
    # misses as the avatar are). Below the lashes' ring the picture has only lashes and the eye: that band is redrawn.
    keep_crease: bool = False


SMOOTHED = LidStyle()
# The avatar closes its lids as far as the sender does (retarget: the same ratio of its own opening) and is drawn by
# the sender's closing (close_lids' `closings`). A wink or blink the tracker follows settles at 0.8-0.99 (d3's winks
# 0.8-0.88, d14's blinks 0.93-0.99, w0's blinks peak at 0.82-0.97): there the avatar's stretched lid band (lashes,
# liner, a socket's shadow) is a dark smear, and a closed lid of its skin with a lash line is what says "closed". A
# glance down or a squint lowers the lids to ~0.3-0.79 (w0's lowered eyes 0.47-0.79, d3's 0.54-0.77, the iris
# showing): that eye is open. Its own lid band stretched is what a lowered lid looks like, and redrawing it from low
# closings made a blank lid a face recogniser no longer took for the avatar's (dlib distance +0.02 to +0.09 on w1's
# glances). What is left of its opening, the drawn iris in it, is neither smeared along the eye (`smooth_opening`) nor
# covered below 0.78: covered from 0.62, as the sender's own slit is, a lowered eye read as shut. The tracker's lid
# lags a fast blink by a frame or two, so a frame going into or out of one can read 0.6-0.77 and show a slit: one
# frame, where a lowered gaze lasts.
REDRAWN = LidStyle(
    redraw=True,
    start=0.55,
    full=0.78,
    shut=(0.78, 0.86),
    lash=0.05,
    lash_darkness=0.6,
    smooth_opening=False,
    cover_whole=True,
    keep_crease=True,
)


@cache
def _eyes() -> tuple[tuple[IndexArray, IndexArray, IndexArray], ...]:
    """Each eye's ring, crease ring and lashes' ring: the right eye's, then the left's."""
    sym = topo.symmetry()
    return (
        (topo.right_eye_ring(), np.array(RIGHT_LID_ABOVE, np.int32), np.array(RIGHT_LID_LASHES, np.int32)),
        (topo.left_eye_ring(), np.asarray(sym[list(RIGHT_LID_ABOVE)], np.int32), np.asarray(sym[list(RIGHT_LID_LASHES)], np.int32)),
    )


@cache
def _brow_outlines() -> tuple[IndexArray, IndexArray]:
    """Each brow as a polygon (its upper edge, then its lower edge back), in `_eyes()`'s order."""
    return topo.brows()


def _smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def close_lids(
    face: Image,
    landmarks: Landmarks,
    neutral: Landmarks,
    style: LidStyle = SMOOTHED,
    closings: tuple[float, float] | None = None,
    own_lashes: LashSource | None = None,
) -> None:
    """Smooth (or redraw: `style`) each closing lid in `face` (in place); `landmarks` in `face`'s pixels,
    `neutral` the face's own open eyes.

    `closings` (right eye, left; eyes_mouth.eye_closings) says how shut each eye is, where the face's own would not:
    an avatar's lids follow the sender's by retarget's measure (the facing lid points' distance), which leaves the
    avatar's eye at 0.72-0.93 of lid_closing when the sender's winks or blinks (0.8-1.0) and at 0.4-0.78 when the
    sender's is lowered (0.45-0.79): on the avatar's own measure a wink and a glance down overlap.
    """
    h, w = face.shape[:2]
    for k, ((ring, crease, lashes), brow) in enumerate(zip(_eyes(), _brow_outlines(), strict=True)):
        closing = lid_closing(landmarks, neutral, ring) if closings is None else closings[k]
        amount = _smoothstep((closing - _START) / (_FULL - _START))  # the smoothing
        drawn = _smoothstep((closing - style.start) / (style.full - style.start))  # the redrawn lid and the lashes
        if max(amount, drawn) <= 0.0:
            continue
        half = len(ring) // 2
        points = landmarks[:, :2].astype(np.float64)
        eye_width = float(np.linalg.norm(points[ring[0]] - points[ring[half]]))
        if eye_width < 4.0:
            continue
        # Corner, crease, corner, lower lid: the lid and whatever is left of the opening.
        outline = np.concatenate([points[ring[:1]], points[crease], points[ring[half : half + 1]], points[ring[half + 1 :]]])
        pad = int(np.ceil(_BLUR * eye_width)) + 2
        x0, y0 = np.maximum(np.floor(outline.min(axis=0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(axis=0)).astype(int) + pad, [w, h])
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        origin = np.array([x0, y0], np.float64)
        shape = (int(y1 - y0), int(x1 - x0))
        region = face[y0:y1, x0:x1]
        out = region.astype(np.float32)
        lid = None  # the upper lid's soft polygon, when the smoothing has drawn it
        shut = _smoothstep((closing - style.shut[0]) / (style.shut[1] - style.shut[0]))
        if amount > 0.0:
            if style.smooth_opening:
                weight = _soft_polygon(outline - origin, shape, _FEATHER * eye_width)
            else:
                # The upper lid; the opening and the lower margin only as the eye shuts: a drawn (cartoon) eye
                # larger than the mesh's opening shows its iris and white under a wink's margin, unsmoothed.
                weight = lid = _soft_polygon(_upper_lid(outline, points[ring]) - origin, shape, _FEATHER * eye_width)
                if shut > 0.0:
                    weight = np.maximum(lid, _soft_polygon(outline - origin, shape, _FEATHER * eye_width) * np.float32(shut))
            weight = weight * np.float32(amount)
            along = max(3, int(round(_BLUR * eye_width)) | 1)
            smooth = cv2.blur(region, (along, 1), borderType=cv2.BORDER_REPLICATE)
            out = _mix(out, smooth.astype(np.float32), _channels(weight))
        if style.redraw and drawn > 0.0:  # below its start the redrawn lid is blended in by 0: not drawn
            if style.keep_crease:
                below_fold = np.concatenate([points[ring[:1]], points[lashes], points[ring[half : half + 1]]])
                lid = _soft_polygon(_upper_lid(below_fold, points[ring]) - origin, shape, _FEATHER * eye_width)
            out = _redraw_upper_lid(out, outline - origin, points[ring] - origin, points[brow] - origin, eye_width, drawn, lid)
        if shut > 0.0:
            out = _cover_slit(out, points[ring] - origin, eye_width, shut, style.cover_whole)
        if own_lashes is None:
            _darken_lash_line(out, points[ring] - origin, eye_width, style.lash, style.lash_darkness * drawn)
        elif drawn > 0.0:
            _draw_own_lashes(out, points[ring] - origin, points[crease] - origin, (style.lash * eye_width, drawn), own_lashes.strips[k])
        face[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _window(points: npt.NDArray[np.float64], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The rows and columns of `shape` within `margin` pixels of `points`' bounding box."""
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + margin + 1, [shape[1], shape[0]])
    return slice(int(y0), int(max(y0, y1))), slice(int(x0), int(max(x0, x1)))


def _darken_lash_line(out: npt.NDArray[np.float32], ring: npt.NDArray[np.float64], eye_width: float, lash: float, darkness: float) -> None:
    """Darken (in place) a line `lash` eye widths thick along the upper margin of `ring`, by `darkness` at its
    middle, thinning out towards the corners. Only round the line: elsewhere it multiplies by 1."""
    half = len(ring) // 2
    thickness = max(1, int(round(lash * eye_width)))
    ys, xs = _window(ring[: half + 1], thickness + 2, out.shape)
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return
    corner = np.array([xs.start, ys.start], np.float64)
    line = np.zeros((ys.stop - ys.start, xs.stop - xs.start), np.uint8)
    margin = (ring[: half + 1] - corner) * (1 << _SUBPIXEL)
    cv2.polylines(line, [np.round(margin).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, shift=_SUBPIXEL)
    # Lashes thin out towards the corners.
    a, b = ring[0], ring[half]
    # Each term over a row or a column, broadcast only by the sum: the same float32 values as over the whole grid.
    gx = np.arange(xs.start, xs.stop, dtype=np.float32)[None, :]
    gy = np.arange(ys.start, ys.stop, dtype=np.float32)[:, None]
    u = ((gx - 0.5 * (a[0] + b[0])) * (b[0] - a[0]) + (gy - 0.5 * (a[1] + b[1])) * (b[1] - a[1])) * np.float32(2.0 / eye_width**2)
    taper = np.clip(1.5 * (1.0 - np.square(u)), 0.0, 1.0)
    dark = 1.0 - np.float32(darkness / 255.0) * line.astype(np.float32) * taper
    out[ys, xs] *= _channels(dark)


def _draw_own_lashes(
    out: npt.NDArray[np.float32],
    ring: npt.NDArray[np.float64],
    crease: npt.NDArray[np.float64],
    band: tuple[float, float],
    strip: LashStrip,
) -> None:
    """Darken (in place) `out` along `ring`'s upper margin as much as the open eye's own lashes (`strip`) are darker
    than the lid: `band` is the lash thickness in pixels and how far the line is drawn (0-1). Only ever darker:
    between its lashes the picture's band is its lid skin, and the redrawn lid stays."""
    lash, amount = band
    half = len(ring) // 2
    margin = ring[: half + 1]
    above, below = _LASH_ABOVE * lash, _LASH_BELOW * lash
    ys, xs = _window(margin, int(np.ceil(below)) + 2, out.shape)
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return
    along, offset = _polyline_coordinates(margin, ys, xs)
    axis = margin[-1] - margin[0]
    normal = np.array([-axis[1], axis[0]]) / max(float(np.linalg.norm(axis)), 1e-6)
    if float((crease.mean(axis=0) - margin.mean(axis=0)) @ normal) > 0.0:
        normal = -normal  # away from the crease: down over the closed eye
    across = offset @ normal
    # Lashes are longest over the middle of the eye and short at the corners.
    middle = np.clip(_LASH_FULL * (1.0 - np.square(2.0 * along - 1.0)), 0.0, 1.0)
    below = below * (_LASH_END + (1.0 - _LASH_END) * middle)
    depth = np.clip((across + above) / (above + below), 0.0, 1.0)  # 0 at the roots, 1 at the tips
    rows, columns = strip.luma.shape
    at_x, at_y = (along * (columns - 1)).astype(np.float32), (depth * (rows - 1)).astype(np.float32)
    lashes = cv2.remap(strip.luma, at_x, at_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fade = np.clip((below - across) / (_LASH_TIPS_FADE * below), 0.0, 1.0)
    weight = np.clip(across + above, 0.0, 1.0) * fade * fade * (3.0 - 2.0 * fade)
    weight *= np.clip(2.0 * _LASH_FULL * (1.0 - np.square(2.0 * along - 1.0)), 0.0, 1.0) * amount
    # The lashes' darkness over the lid's, not their colour: a loose fit puts a painted eye's margin on its iris, and
    # a painted lid's band is often orange or violet make-up: laid along a closed lid in its colour, that read as an
    # open slit (s5, art_9, art_13) or a red line (s6, s7). Darkened, the lid keeps its own hue.
    region = out[ys, xs]
    ratio = np.minimum(lashes / np.maximum(region @ LUMA_BGR, np.float32(1.0)), np.float32(1.0))
    out[ys, xs] = region * _channels((1.0 - weight * (1.0 - ratio)).astype(np.float32))


def _polyline_coordinates(line: npt.NDArray[np.float64], ys: slice, xs: slice) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each pixel's (rows `ys`, columns `xs`) nearest point on the polyline `line`: its arc-length fraction along the
    line, and the pixel's offset from that point (x, y)."""
    a, d = line[:-1], np.diff(line, axis=0)
    length = np.maximum(np.einsum("ij,ij->i", d, d), 1e-12)
    # Segments first (one plane each), pixels' x and y as a row and a column broadcast: numpy's reductions and picks
    # over a short last axis were most of the time (0.45 ms a ~40x100 window where pixel-major took 1.05).
    ax, ay, dx, dy = (v[:, None, None] for v in (a[:, 0], a[:, 1], d[:, 0], d[:, 1]))
    px = np.arange(xs.start, xs.stop, dtype=np.float64)[None, None, :]
    py = np.arange(ys.start, ys.stop, dtype=np.float64)[None, :, None]
    t = ((px - ax) * dx + (py - ay) * dy) / length[:, None, None]
    np.clip(t, 0.0, 1.0, out=t)
    ex, ey = px - (ax + t * dx), py - (ay + t * dy)
    nearest = np.argmin(ex * ex + ey * ey, axis=0)
    seg = np.sqrt(length)
    start = np.concatenate([[0.0], np.cumsum(seg)])
    pick = np.ravel_multi_index((nearest, *np.indices(nearest.shape, sparse=True)), t.shape)
    along = (start[nearest] + t.ravel()[pick] * seg[nearest]) / start[-1]
    return along, np.stack([ex.ravel()[pick], ey.ravel()[pick]], axis=-1)


def _polyline_at(line: npt.NDArray[np.float64], along: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Points at arc-length fractions `along` of the polyline `line`."""
    start = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))])
    start /= max(float(start[-1]), 1e-12)
    return np.stack([np.interp(along, start, line[:, 0]), np.interp(along, start, line[:, 1])], axis=-1)


def _upper_lid(outline: npt.NDArray[np.float64], ring: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The upper lid's polygon: `outline`'s corner, crease and corner, then the upper margin back."""
    half = len(ring) // 2
    return np.concatenate([outline[: half + 1], ring[half - 1 : 0 : -1]])


def _soft_polygon(polygon: npt.NDArray[np.float64], shape: tuple[int, int], feather: float, grow: int = 0) -> npt.NDArray[np.float32]:
    """The polygon's coverage (grown by `grow` pixels) blurred by `feather`."""
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(polygon * (1 << _SUBPIXEL)).astype(np.int32)], 1.0, cv2.LINE_AA, shift=_SUBPIXEL)
    if grow > 0:
        mask = cv2.dilate(mask, _disc(grow))
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), max(0.5, feather)), np.float32)


def _cover_slit(
    out: npt.NDArray[np.float32], ring: npt.NDArray[np.float64], eye_width: float, shut: float, whole: bool = False
) -> npt.NDArray[np.float32]:
    """`out` with the opening inside `ring` covered (by `shut`) with the lid colour just above each of its columns;
    `whole`: all of it, the soft edge outside it (LidStyle.cover_whole).

    Worked only round the opening (its soft edge's reach): a closed eye's is a few rows of the lid's region.
    """
    h, w = out.shape[:2]
    half = len(ring) // 2
    feather = max(0.5, 0.03 * eye_width)
    grow = int(np.ceil(2.0 * feather)) if whole else 0
    ys, xs = _window(ring, int(np.ceil(4.0 * feather)) + 3 + grow, out.shape)
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return out
    upper = ring[: half + 1]
    order = np.argsort(upper[:, 0])
    columns = np.arange(xs.start, xs.stop)
    margin = np.interp(columns.astype(np.float64), upper[order, 0], upper[order, 1])
    rows = np.clip(np.round(margin - _LID_SAMPLE * eye_width), 0, h - 1).astype(np.intp)
    lid = out[rows, columns]  # one colour per column
    corner = np.array([xs.start, ys.start], np.float64)
    weight = _soft_polygon(ring - corner, (ys.stop - ys.start, xs.stop - xs.start), feather, grow) * np.float32(shut)
    out[ys, xs] = _mix(out[ys, xs], lid[None, :, :], _channels(weight))
    return out


def _redraw_upper_lid(
    out: npt.NDArray[np.float32],
    outline: npt.NDArray[np.float64],
    ring: npt.NDArray[np.float64],
    brow: npt.NDArray[np.float64],
    eye_width: float,
    amount: float,
    lid: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """`out` with the upper lid (crease to upper margin) blended, by `amount`, towards the skin round the eye
    (`outline`: corner, crease, corner, lower lid) filled smoothly inwards from a rim just outside it; `lid` the
    upper lid's soft polygon if it is at hand.

    The brow (`brow`, its polygon) is neither redrawn nor a colour for the lid: a frown brings it
    down onto the crease, and smoothed into the lid it fades where it should read strongest.
    The rim, its skin and the fill are worked at half size: the fill is smooth, and a closed eye redraws in
    every frame it stays closed (at full size the rim's dilations, the skin's share and the pyramid cost
    ~1 ms of a receiver's frame).
    """
    h, w = out.shape[:2]
    feather = max(0.5, _FEATHER * eye_width)
    if lid is None:
        lid = _soft_polygon(_upper_lid(outline, ring), (h, w), _FEATHER * eye_width)
    scale = 0.5 if min(h, w) >= 8 else 1.0
    small = cv2.pyrDown(out) if scale < 1.0 else out
    shape = (int(small.shape[0]), int(small.shape[1]))
    gap = max(1, int(round(0.02 * eye_width * scale)))
    reach = gap + max(1, int(round(_RIM * eye_width * scale)))
    face = _polygon(outline * scale, shape)
    outer = cv2.dilate(face, _disc(reach))
    brow_mask = cv2.dilate(_polygon(brow * scale, shape), _disc(gap))
    rim = cv2.subtract(cv2.subtract(outer, cv2.dilate(face, _disc(gap))), brow_mask)
    rimf = rim.astype(np.float32) * np.float32(1.0 / 255.0)
    if rimf.sum() < 4.0 * scale * scale:
        return out
    filled = _fill_from_rim(small, rimf * _skin_share(small, rimf))
    if filled.shape[:2] != (h, w):
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    weight = lid * np.float32(amount)
    if cv2.countNonZero(cv2.bitwise_and(brow_mask, outer)) > 0:  # a brow brought down near the lid (a frown)
        brow_full = brow_mask if scale == 1.0 else cv2.resize(brow_mask, (w, h), interpolation=cv2.INTER_LINEAR)
        weight *= 1.0 - cv2.GaussianBlur(brow_full.astype(np.float32) * np.float32(1.0 / 255.0), (0, 0), feather)
    return np.asarray(cv2.blendLinear(filled, out, weight, 1.0 - weight), np.float32)


_SKIN_BRIGHTNESS = (0.75, 0.9)  # of the rim's bright skin (_SKIN_PERCENTILE): a rim pixel's weight goes from 0 to 1 over this
_SKIN_PERCENTILE = 75.0


def _skin_share(out: npt.NDArray[np.float32], rim: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """How much each pixel of `out` is skin rather than a shadow or make-up, by its brightness against the rim's.

    The rim round an eye holds the socket's shadow under the brow, eyeliner, the lash line at the corners and
    dark eye make-up; a lid filled from them is a dark smear over a closed eye (a shadowed or made-up eye:
    happy, sad, s5, art_11). A closed lid is the skin's colour, which is the rim's brighter part.
    """
    luma = out @ LUMA_BGR
    values = luma[rim > 0.5]
    if values.size < 4:
        return np.ones_like(rim)
    k = int(round(_SKIN_PERCENTILE / 100.0 * (values.size - 1)))
    skin = float(np.partition(values, k)[k])  # the percentile's nearest rank: np.percentile costs ~5x more
    low, high = _SKIN_BRIGHTNESS
    return np.asarray(np.clip((luma / max(skin, 1.0) - low) / (high - low), 0.0, 1.0), np.float32)


def _polygon(points: npt.NDArray[np.float64], shape: tuple[int, int]) -> npt.NDArray[np.uint8]:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points * (1 << _SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_8, shift=_SUBPIXEL)
    return mask


def _disc(radius: int) -> npt.NDArray[np.uint8]:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _fill_from_rim(image: npt.NDArray[np.float32], known: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`image` where `known` is 1, elsewhere a smooth fill from the known pixels round it (pull-push: the
    known pixels averaged down a pyramid, each level filled from the coarser one where it had none)."""
    levels = [(image * _channels(known), known)]
    while min(levels[-1][1].shape) > 3:
        colour, weight = levels[-1]
        levels.append((cv2.pyrDown(colour), cv2.pyrDown(weight)))
    colour, weight = levels[-1]
    total = float(weight.sum())
    filled = np.empty_like(colour)
    filled[:] = (colour.reshape(-1, 3).sum(axis=0) / max(total, 1e-6)).astype(np.float32)
    for colour, weight in reversed(levels):
        up = cv2.resize(filled, (weight.shape[1], weight.shape[0]), interpolation=cv2.INTER_LINEAR)
        trust = _channels(np.clip(weight * np.float32(4.0), 0.0, 1.0))
        filled = colour / _channels(np.maximum(weight, np.float32(1e-6))) * trust + up * (1.0 - trust)
    return np.asarray(filled, np.float32)


def _channels(weight: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A one-channel float32 array repeated over three channels. numpy's `weight[..., None]` broadcast over a BGR
    image runs its loops three elements at a time (2-4x slower); merged, the same products come out."""
    return np.asarray(cv2.merge((weight, weight, weight)), np.float32)


def _mix(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], weight: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`a * (1 - weight) + b * weight` (`weight` per channel, _channels), in the same float32 operations and order,
    so the same bytes, with one temporary; `weight` is overwritten."""
    towards = b * weight
    np.subtract(np.float32(1.0), weight, out=weight)
    weight *= a
    weight += towards
    return weight
