"""Irises as rigid discs: taken once from the avatar, drawn where the sender looks, clipped by the lids.

A mesh warp moves an iris by stretching the eye around it: when the gaze turns far, or the
avatar's iris is large for its eye (cartoons), the iris smears into the white and tears. Here the
avatar's irises are lifted out of its texture once (what the lids hide completed from the iris's
own ring-by-ring colours) and painted over with the white of the eye; the clean eye is warped with
the face, and each iris is drawn on top as a disc of the avatar's own iris size (scaled with the face),
clipped by the rendered eye opening, so it slides under the lids without changing shape or size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.colour import LUMA_BGR
from facewire.shared.types import Image, Landmarks

FloatArray = npt.NDArray[np.float32]

# (eye ring, iris centre, iris ring) per eye, the subject's right eye first.
_EYES: tuple[tuple[Callable[[], npt.NDArray[np.int32]], int, tuple[int, ...]], ...] = (
    (topo.right_eye_ring, topo.RIGHT_IRIS_CENTER, topo.RIGHT_IRIS),
    (topo.left_eye_ring, topo.LEFT_IRIS_CENTER, topo.LEFT_IRIS),
)
_MIN_RADIUS = 1.5  # px: smaller irises are left to the warp
_MIN_VISIBLE = 0.45  # of the disc: below this the eye is too closed to lift its iris
_MAX_EXTENT = 1.5  # of the landmarks' radius: the largest iris looked for
_CORNERS = {topo.RIGHT_IRIS_CENTER: topo.RIGHT_EYE_CORNERS, topo.LEFT_IRIS_CENTER: topo.LEFT_EYE_CORNERS}
# Below this width (px, in the avatar's picture) an eye is a blur the iris cannot be told apart in.
_MIN_EYE_WIDTH = 20.0
_MAX_IRIS_SHARE = 0.6  # of the eye's width, the iris's diameter at most
_MIN_CONTRAST = 30.0  # grey levels between the white and the iris
_MIN_HEIGHT = 1.1  # of the iris radius: the eye opening's height through the iris centre, at least
_MAX_FIT = 1.25  # of the landmarks' radius: the largest iris lifted
_MARGIN = 1.3 * _MAX_EXTENT  # patch half-size over the landmarks' iris radius
_SUBPIXEL = 4  # bits of fixed point for polygon filling


@dataclass(frozen=True)
class Iris:
    patch: Image  # BGR, the whole iris (hidden parts completed)
    alpha: FloatArray  # the disc, soft-edged, patch-sized
    centre: tuple[float, float]  # in patch pixels
    radius: float  # the landmarks' iris radius, in patch pixels: what the drawing scales by
    span: float  # the distance between the eyes (eye_span) in the picture it was lifted from, in the same pixels


def iris_centre(landmarks: Landmarks, centre: int) -> npt.NDArray[np.float64]:
    return np.asarray(landmarks[centre, :2], np.float64)


def iris_geometry(landmarks: Landmarks, centre: int, ring: tuple[int, ...]) -> tuple[npt.NDArray[np.float64], float]:
    """The iris's centre (iris_centre) and its radius: the mean distance of its ring's landmarks from the centre."""
    c = iris_centre(landmarks, centre)
    return c, float(np.linalg.norm(landmarks[list(ring), :2].astype(np.float64) - c, axis=1).mean())


def eye_span(landmarks: Landmarks) -> float:
    """The 3-D distance between the eyes' centres (each the middle of its corners): the face's scale, which a
    head turn foreshortens much less than any 2-D length across the face (the landmarks' z is in x's units)."""
    # The four corners' rows only: it runs three times a frame, and converting all 478 rows cost more than the rest.
    right = landmarks[list(topo.RIGHT_EYE_CORNERS)].astype(np.float64).mean(axis=0)
    left = landmarks[list(topo.LEFT_EYE_CORNERS)].astype(np.float64).mean(axis=0)
    return float(np.linalg.norm(left - right))


def _fill(polygon: npt.NDArray[np.float64], shape: tuple[int, int]) -> FloatArray:
    """Anti-aliased polygon coverage, 0..1, pixel centres at integer coordinates."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * (1 << _SUBPIXEL)).astype(np.int32)], 255, cv2.LINE_AA, shift=_SUBPIXEL)
    return mask.astype(np.float32) * np.float32(1.0 / 255.0)


def _box(centre: npt.NDArray[np.float64], half: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0 = int(np.floor(centre[0])) - half, int(np.floor(centre[1])) - half
    return max(0, x0), max(0, y0), min(shape[1], x0 + 2 * half + 2), min(shape[0], y0 + 2 * half + 2)


def _radial_fill(
    patch: Image, distance: FloatArray, known: npt.NDArray[np.bool_], radius: float, source: npt.NDArray[np.bool_] | None = None
) -> Image:
    """The patch with unknown pixels of the disc set to the median colour of the `source` ones (default: the known
    ones) at the same radius; a radius without any takes the nearest radius that has some."""
    source = known if source is None else source
    bins = np.minimum(distance, radius).astype(np.int32)
    count = int(bins.max()) + 1
    profile = np.zeros((count, 3), np.float32)
    have = np.zeros(count, bool)
    for k in range(count):
        ring = source & (bins == k)
        if ring.any():
            profile[k] = np.median(patch[ring], axis=0)
            have[k] = True
    if not have.any():
        return patch
    nearest = np.flatnonzero(have)
    profile = profile[nearest[np.abs(np.arange(count)[:, None] - nearest[None, :]).argmin(axis=1)]]
    out = patch.copy()
    unknown = ~known & (distance <= radius + 1.0)
    out[unknown] = np.clip(profile[bins[unknown]] + 0.5, 0, 255).astype(np.uint8)
    return out


def _find_disc(
    luma: FloatArray, distance: FloatArray, seen: npt.NDArray[np.bool_], local: npt.NDArray[np.float64], radius: float, white: float
) -> tuple[npt.NDArray[np.float64], float]:
    """The iris as the picture shows it: centre and radius from its widest visible row (its equator).

    MediaPipe's iris ring is trained on photographs: on a painted or cartoon eye it sits inside the
    iris and off its centre, and an iris lifted there leaves a crescent of itself behind. The lids
    hide its top and bottom, rarely its equator, so the widest dark row gives both the centre and
    the radius. Falls back to the landmarks when no such row is found; an iris reaching the search
    limit (`_MAX_EXTENT` radii) comes back at that limit, which the caller takes as not fitting.
    """
    core = seen & (distance <= 0.7 * radius)
    if not core.any():
        return local, radius
    dark = float(np.median(luma[core]))
    iris = seen & (luma < dark + _EDGE_FRACTION * (white - dark)) & (distance <= _MAX_EXTENT * radius)
    count, labels = cv2.connectedComponents(iris.astype(np.uint8), connectivity=4)
    core_labels = labels[core & iris]
    if count < 2 or core_labels.size == 0:
        return local, radius
    blob = labels == np.bincount(core_labels).argmax()
    widths = blob.sum(axis=1).astype(np.float32)
    row = int(np.argmax(cv2.GaussianBlur(widths[:, None], (1, 3), 0)[:, 0]))
    xs = np.flatnonzero(blob[row])
    found = 0.5 * float(xs[-1] - xs[0] + 1)
    if found < 0.8 * radius:
        return local, radius
    return np.array([0.5 * float(xs[0] + xs[-1]), float(row)]), found


_EDGE_FRACTION = 0.6  # of the way from the iris's core brightness to the white's
_LIMBUS = 0.15  # of the iris's extent: its edge beyond the extent found, taken with it (at least a pixel)


def _outer_white(pale: npt.NDArray[np.bool_], distance: FloatArray, reach: float) -> npt.NDArray[np.bool_]:
    """The white of the eye: the `pale` pixels joined to those past an iris's reach (a catchlight inside the iris
    is not)."""
    _, labels = cv2.connectedComponents(pale.astype(np.uint8), connectivity=8)
    outer = np.unique(labels[pale & (distance > reach + 1.0)])
    return pale & np.isin(labels, outer[outer > 0])


def _white_beside(pale: npt.NDArray[np.bool_], opening: FloatArray, distance: FloatArray, reach: float) -> FloatArray:
    """0..1, the white of the eye inside an iris's drawn reach. The drawn iris leaves it to the paint-out under it,
    which is the same white at rest; carried with the iris, the white beside a painted iris (s5's pinkish one)
    or a narrowed eye's waterline drew a pale ring round the iris wherever the rendered eye opens differently."""
    white = _outer_white(pale & (opening >= 0.5), distance, reach) & (distance <= reach + 1.0)
    # Softened by a pixel: the limbus fades into the white instead of ending at a threshold.
    return np.asarray(cv2.GaussianBlur(white.astype(np.float32), (3, 3), 0), np.float32)


def _white_colour(pixels: FloatArray) -> FloatArray:
    """The white's colour among a few of its pixels: the median of their brighter half. The ones next to the iris
    are its edge blurred into the white, and a darker white filled the hole as a grey disc round the drawn iris."""
    luma = pixels @ LUMA_BGR
    return np.asarray(np.median(pixels[luma >= np.median(luma)], axis=0), np.float32)


def _smooth_rows(fill: FloatArray, sigma: float) -> FloatArray:
    """`fill` (NaN where unfilled) blurred down its columns over its filled pixels only: each row is filled from its
    own few white pixels, and rows that differ by a lash or a fleck of paint drew the hole in horizontal stripes."""
    have = ~np.isnan(fill[..., :1])
    size = 2 * int(np.ceil(2.0 * sigma)) + 1
    weight = cv2.GaussianBlur(have.astype(np.float32), (1, size), sigma)[..., None]
    total = cv2.GaussianBlur(np.where(have, fill, 0.0).astype(np.float32), (1, size), sigma)
    return np.where(have, total / np.maximum(weight, 1e-6), np.nan).astype(np.float32)


def _paint_out(pixels: Image, cover: FloatArray, sclera: npt.NDArray[np.bool_], window: int) -> Image | None:
    """`pixels` with the `cover` region filled from the white of the eye either side of it.

    Each row is interpolated between the white left and right of the iris (_white_colour of the `window`
    white pixels nearest it on each side), which keeps the eye's own shading (the shadow under the upper
    lid, the darker corners); rows with no white (the iris touching a lid) take their column's nearest
    filled row. The white in `cover` is a source as well: on a painted eye, whose iris fills most of the
    opening, the only white is a few pixels beside the iris, and the next white out was the dark corners,
    which filled the eye with a brown disc. None when no row has any white.
    """
    out = pixels.astype(np.float32)
    fill = np.full(out.shape, np.nan, np.float32)
    for y in np.flatnonzero((cover > 0).any(axis=1)):
        xs = np.flatnonzero(cover[y] > 0)
        hole = xs[~sclera[y, xs]]
        if hole.size == 0:
            fill[y, xs] = out[y, xs]
            continue
        whites = np.flatnonzero(sclera[y])
        left, right = whites[whites < hole[0]][-window:], whites[whites > hole[-1]][:window]
        if left.size == 0 and right.size == 0:
            continue
        lv = _white_colour(out[y, left]) if left.size else None
        rv = _white_colour(out[y, right]) if right.size else None
        if lv is None or rv is None:
            fill[y, xs] = lv if lv is not None else rv
        else:
            t = np.clip((xs - left[-1]) / max(float(right[0] - left[-1]), 1.0), 0.0, 1.0)[:, None]
            fill[y, xs] = lv * (1.0 - t) + rv * t
    have = ~np.isnan(fill[..., 0])
    if not have.any():
        return None
    rows = np.flatnonzero(have.any(axis=1))
    for y, x in zip(*np.nonzero((cover > 0) & ~have), strict=True):
        donors = rows[have[rows, x]]
        if donors.size == 0:
            donors = rows
            fill[y, x] = np.nanmean(fill[donors[np.abs(donors - y).argmin()]], axis=0)
        else:
            fill[y, x] = fill[donors[np.abs(donors - y).argmin()], x]
    fill = _smooth_rows(fill, window / 4.0)
    w = cover[..., None]
    blended = np.where(np.isnan(fill), out, out * (1.0 - w) + np.nan_to_num(fill) * w)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def lift_irises(image: Image, landmarks: Landmarks) -> tuple[Image, tuple[Iris | None, Iris | None]]:
    """The image with its irises painted out with the white of the eye, and the irises (right, left).

    An eye too closed, or too small, keeps its iris in the image and gets None.
    """
    clean = image.copy()
    irises: list[Iris | None] = []
    for ring_of, centre_index, iris_ring in _EYES:
        c, radius = iris_geometry(landmarks, centre_index, iris_ring)
        half = int(np.ceil(radius * _MARGIN)) + 2
        x0, y0, x1, y1 = _box(c, half, image.shape)
        if radius < _MIN_RADIUS or x1 - x0 < 4 or y1 - y0 < 4:
            irises.append(None)
            continue
        origin = np.array([x0, y0], np.float64)
        shape = (y1 - y0, x1 - x0)
        opening = _fill(landmarks[ring_of(), :2].astype(np.float64) - origin, shape)
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        local = c - origin
        distance = np.hypot(xs - np.float32(local[0]), ys - np.float32(local[1]))
        pixels = image[y0:y1, x0:x1]
        luma = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY).astype(np.float32)
        # A pixel in from the lid margins: the lashes are darker than any iris.
        seen = cv2.erode((opening > 0.99).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if int(seen.sum()) < 12:
            irises.append(None)
            continue
        brightest = float(np.percentile(luma[seen], 90))
        centre, extent = _find_disc(luma, distance, seen, local, radius, brightest)
        distance = np.hypot(xs - np.float32(centre[0]), ys - np.float32(centre[1]))
        disc = distance <= extent
        known = disc & seen
        dark = float(np.median(luma[known])) if known.any() else brightest
        # The iris's edge (its dark limbal ring, the blur into the white) lies past the extent found at
        # _EDGE_FRACTION of the way to the white: painted out with it, else a ghost ring of it stays in the
        # white and shows beside the drawn iris once the gaze moves it (a doubled, smeared eye).
        reach = extent + max(1.0, _LIMBUS * extent)
        threshold = dark + _EDGE_FRACTION * (brightest - dark)
        sclera = _outer_white(seen & (luma >= threshold), distance, reach)
        # Painted out half a pixel wider than that, inside the opening only: the lids and lashes stay. The lid line's
        # pixels, under half inside the opening, are the lid's: partly painted with the white, they came back at rest
        # as a paler line between the drawn iris and the lid (the iris, clipped there by the same opening, covers them
        # only partly).
        cover = np.clip(np.float32(reach + 1.0) - distance, 0.0, 1.0) * np.clip(2.0 * opening - 1.0, 0.0, 1.0)
        painted = _paint_out(pixels, cover, sclera, max(3, int(round(extent))))
        # An iris much larger than the landmarks' is a drawing they do not fit (a cartoon's eye
        # larger than its mesh opening): it is left to the warp rather than cut by the wrong lids.
        # No white to speak of (a statue, a deep shadow): nothing to lift the iris from.
        fits = extent <= _MAX_FIT * radius and brightest - dark >= _MIN_CONTRAST
        # White must show beside the iris, or the eye is a blur of iris, white and lid (a small
        # painted eye), and painting it out leaves a blank where the drawn iris does not reach.
        corners = landmarks[list(_CORNERS[centre_index]), :2].astype(np.float64)
        eye_width = float(np.linalg.norm(corners[0] - corners[1]))
        fits = fits and eye_width >= _MIN_EYE_WIDTH and 2.0 * extent <= _MAX_IRIS_SHARE * eye_width
        # The lids must show at least part of the iris's height: a slit shows lids, not an iris.
        column = int(np.clip(round(float(centre[0])), 0, shape[1] - 1))
        fits = fits and int((opening[:, column] > 0.5).sum()) >= _MIN_HEIGHT * extent
        if painted is None or not fits or known.sum() < _MIN_VISIBLE * max(int(disc.sum()), 1):
            irises.append(None)
            continue
        # What the lids hide is completed from the iris alone (its pixels darker than the white's threshold): the
        # white beside it, at the same radius, is no part of the iris's top or bottom. Taken with it, it drew a pale
        # ring round the disc wherever the rendered lids open wider than the picture's, and on a made-up or painted
        # eye, whose "white" is the grey-brown beside the iris, a grey ring round a dark disc.
        # Past the disc found, the profile is the iris's own edge colour: what lies beyond it at the sides is the white.
        iris_like = seen & (distance <= extent) & (luma < threshold)
        # The picture is kept wherever its opening shows it (the lid line too, a pixel in from the ring): the drawn
        # iris then matches the picture at rest, instead of outlining the lids with the fill's colour.
        patch = _radial_fill(pixels, distance, (distance <= reach + 1.0) & (opening >= 0.5), reach, iris_like)
        # Drawn out to the paint-out's reach (no ring of white between them), but not over the white inside it.
        white = _white_beside(luma >= threshold, opening, distance, reach)
        # What the lids hide is drawn out to the landmarks' radius at most: past it, a disc found larger than that
        # (a dark limbal ring, a shadow taken with the iris) is no evidence the iris goes on under the lid; drawn
        # there in its edge colour, it showed as a dark crescent under an iris whose picture shows white below it.
        hidden = np.clip(np.float32(min(extent, radius) + 1.0) - distance, 0.0, 1.0)
        drawn = np.maximum(hidden, (opening >= 0.5).astype(np.float32))
        alpha = np.clip(np.float32(reach + 1.0) - distance, 0.0, 1.0) * (1.0 - white) * drawn
        irises.append(Iris(patch, alpha, (float(local[0]), float(local[1])), radius, eye_span(landmarks)))
        clean[y0:y1, x0:x1] = painted
    return clean, (irises[0], irises[1])


def draw_irises(face: Image, landmarks: Landmarks, irises: tuple[Iris | None, Iris | None]) -> None:
    """Draw each iris in place, in `face`'s pixels: at the landmarks' iris centre, clipped by the eye opening.

    Its size is the avatar's own, scaled as the face is (eye_span), not the landmarks' iris radius: that is
    the sender's iris radius change added to the avatar's, and the tracker shrinks a turned or raised iris
    (d12 looking up and aside: by a third), which drew a small iris in a wide white, a goggling stare.
    """
    span = eye_span(landmarks)
    for iris, (ring_of, centre_index, _) in zip(irises, _EYES, strict=True):
        if iris is None:
            continue
        c = iris_centre(landmarks, centre_index)
        radius = iris.radius * span / max(iris.span, 1e-6)
        if not np.isfinite(c).all() or radius < 0.5:
            continue
        half = int(np.ceil(radius * _MARGIN)) + 2
        x0, y0, x1, y1 = _box(c, half, face.shape)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        scale = radius / iris.radius
        shift = c - np.array([x0, y0]) - scale * np.array(iris.centre)
        matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
        size = (x1 - x0, y1 - y0)
        colour = cv2.warpAffine(iris.patch, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(iris.alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        opening = _fill(landmarks[ring_of(), :2].astype(np.float64) - np.array([x0, y0], np.float64), (size[1], size[0]))
        weight = np.ascontiguousarray(alpha * opening, np.float32)
        face[y0:y1, x0:x1] = cv2.blendLinear(colour, face[y0:y1, x0:x1], weight, 1.0 - weight)
