"""Dense piecewise-affine warps: one backward map over a triangulation, applied with one cv2.remap.

Each output pixel is looked up in the triangle that covers it (a triangle-id raster drawn back
to front, so folded parts of a turning head are hidden by the parts in front) and mapped by that
triangle's affine transform to the source. The raster is drawn on a coarse grid (every `step`
pixels) and the maps are upsampled bilinearly, which is exact inside triangles and sub-pixel at
their shared edges; only the per-frame affine coefficients and the raster change per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.types import Image

Points = npt.NDArray[np.float32]
FloatMap = npt.NDArray[np.float32]
PointMap = npt.NDArray[np.float32]  # (h, w, 2): x and y interleaved
_SHIFT = 4  # fixed-point bits for sub-pixel triangle rasterisation


@dataclass(frozen=True)
class Region:
    """An axis-aligned rectangle of the output, in pixels (x0, y0 inclusive; width, height)."""

    x0: int
    y0: int
    width: int
    height: int

    @classmethod
    def around(cls, points: Points, frame_size: tuple[int, int], margin: float, step: int = 1) -> Region:
        """The bounding box of `points` grown by `margin` pixels, clipped to the frame, sizes multiple of step."""
        width, height = frame_size
        x0 = int(max(0, np.floor(points[:, 0].min() - margin)))
        y0 = int(max(0, np.floor(points[:, 1].min() - margin)))
        x1 = int(min(width, np.ceil(points[:, 0].max() + margin)))
        y1 = int(min(height, np.ceil(points[:, 1].max() + margin)))
        w = max(step, -(-(x1 - x0) // step) * step)
        h = max(step, -(-(y1 - y0) // step) * step)
        return cls(x0, y0, w, h)

    @classmethod
    def full(cls, frame_size: tuple[int, int]) -> Region:
        return cls(0, 0, frame_size[0], frame_size[1])

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.height), slice(self.x0, self.x0 + self.width)

    def clip_to(self, frame_size: tuple[int, int]) -> tuple[slice, slice, slice, slice]:
        """Slices into the frame and into a region-sized array for the part inside the frame."""
        w = min(self.width, frame_size[0] - self.x0)
        h = min(self.height, frame_size[1] - self.y0)
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w), slice(0, h), slice(0, w)


def fill_polygon(mask: npt.NDArray[np.uint8], points: npt.NDArray[np.floating], value: int = 255) -> None:
    """Fill the polygon through `points` (x, y) into `mask` in place, its corners at 1/16-pixel precision."""
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], value, cv2.LINE_8, shift=4)


def affine_coefficients(dst: Points, src: Points) -> npt.NDArray[np.float64]:
    """Per triangle the 2x3 affine (flattened to 6) mapping destination corners onto source corners.

    dst, src: (T, 3, 2). Degenerate destination triangles cover no pixel; they get the constant
    map to their first source corner so nothing divides by zero.
    """
    # Closed form per triangle (2x2 edge matrices): a batched 3x3 inverse costs ten times more.
    d = dst.astype(np.float64)
    s = src.astype(np.float64)
    e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]
    f1, f2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    ok = np.abs(det) > 1e-6
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    coef = np.empty((dst.shape[0], 2, 3))
    for row in range(2):
        a = (f1[:, row] * e2[:, 1] - f2[:, row] * e1[:, 1]) * inv_det
        b = (f2[:, row] * e1[:, 0] - f1[:, row] * e2[:, 0]) * inv_det
        coef[:, row, 0] = a
        coef[:, row, 1] = b
        coef[:, row, 2] = s[:, 0, row] - a * d[:, 0, 0] - b * d[:, 0, 1]
    return coef.reshape(-1, 6)


def triangle_raster(dst: Points, region: Region, step: int, order: npt.NDArray[np.intp] | None = None) -> npt.NDArray[np.int32]:
    """Index+1 of the triangle covering each coarse-grid sample of `region` (0 where none).

    Coarse pixel j samples the output pixel x0 + (j + 0.5) * step - 0.5 (the sample point cv2.resize
    assumes when upsampling), and a sample belongs to a triangle when it lies inside it or on its edge;
    where triangles overlap, the later one in `order` wins (it is drawn on top). Degenerate triangles
    cover nothing. Only samples inside a triangle ever take its affine map: a sample of a neighbour
    (an outline drawn half a pixel fat, say) would extrapolate a sliver's map far off its source.

    A vectorised scanline fill: per triangle and coarse row the span of samples inside all three
    edges, then every span written at once (one OpenCV call per triangle cost ~1 us each, ~1000 a frame).
    """
    ranks, ids = _ranked_raster(dst, region, step, order)
    if order is None:
        return ranks  # drawn in index order: a rank is the index + 1
    lookup = np.concatenate([[0], ids + 1]).astype(np.int32)
    return np.asarray(lookup[ranks], np.int32)


def _ranked_raster(dst: Points, region: Region, step: int,
                   order: npt.NDArray[np.intp] | None) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.intp]]:
    """triangle_raster's samples as drawing ranks (k + 1: the triangle `ids[k]`, drawn k-th; 0 where none) and `ids`
    (the triangles in drawing order): _coarse_map gathers its coefficients by rank, without the per-sample lookup."""
    rows, cols = region.height // step, region.width // step
    raster = np.zeros((rows, cols), np.int32)
    ids = np.arange(len(dst)) if order is None else np.asarray(order, np.intp)
    if rows == 0 or cols == 0 or len(ids) == 0:
        return raster, ids
    # Corners in coarse-pixel units, one row per corner: (3, T) arrays keep every step elementwise.
    corners = dst.astype(np.float64)[ids]
    x = ((corners[..., 0] - (region.x0 + 0.5 * step - 0.5)) / step).T
    y = ((corners[..., 1] - (region.y0 + 0.5 * step - 0.5)) / step).T
    ymin, ymax = np.minimum(np.minimum(y[0], y[1]), y[2]), np.maximum(np.maximum(y[0], y[1]), y[2])
    xmin, xmax = np.minimum(np.minimum(x[0], x[1]), x[2]), np.maximum(np.maximum(x[0], x[1]), x[2])
    area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    first_row = np.maximum(np.ceil(ymin - _EDGE_EPS), 0.0)
    last_row = np.minimum(np.floor(ymax + _EDGE_EPS), rows - 1.0)
    keep = np.flatnonzero((area != 0.0) & (last_row >= first_row) & (xmax >= -_EDGE_EPS) & (xmin <= cols - 1 + _EDGE_EPS))
    if len(keep) == 0:
        return raster, ids
    x, y, area = x[:, keep], y[:, keep], area[keep]
    # Each edge bounds x on a row: x <= or >= x_i + slope * (row - y_i). Inside is left of an edge when
    # the corners run counter-clockwise (area > 0), so there an edge going down the rows (dy > 0) bounds
    # x from above. Horizontal edges bound only the rows (first_row, last_row see to that): slope 0 at +-_FAR.
    upper = np.empty((3, len(keep)), bool)
    params = np.empty((9, len(keep)))
    for e in range(3):
        dx, dy = x[(e + 1) % 3] - x[e], y[(e + 1) % 3] - y[e]
        sloped = dy != 0.0
        upper[e] = (dy > 0.0) == (area > 0.0)
        params[3 * e] = np.where(sloped, x[e], np.where(upper[e], _FAR, -_FAR))
        params[3 * e + 1] = y[e]
        params[3 * e + 2] = dx / np.where(sloped, dy, np.inf)
    counts = (last_row[keep] - first_row[keep] + 1.0).astype(np.intp)
    total = int(counts.sum())
    # One entry per (triangle, row), triangles in drawing order.
    starts = np.cumsum(counts) - counts
    row = np.repeat(first_row[keep] - starts, counts) + np.arange(total)
    per_row = np.repeat(params, counts, axis=1)
    kind = np.repeat(upper, counts, axis=1)
    left = np.full(total, -_FAR)
    right = np.full(total, _FAR)
    for e in range(3):
        bound = per_row[3 * e] + per_row[3 * e + 2] * (row - per_row[3 * e + 1])
        np.minimum(right, bound, out=right, where=kind[e])
        np.maximum(left, bound, out=left, where=~kind[e])
    x0 = np.maximum(np.ceil(left - _EDGE_EPS), 0.0)
    x1 = np.minimum(np.floor(right + _EDGE_EPS), cols - 1.0)
    # int32 from here on: a raster has far fewer than 2**31 samples, and half the bytes move faster.
    lengths = np.maximum(x1 - x0 + 1.0, 0.0).astype(np.int32)
    pixels = int(lengths.sum())
    offsets = np.cumsum(lengths, dtype=np.int32) - lengths
    index = np.repeat((row * cols + x0).astype(np.int32) - offsets, lengths) + np.arange(pixels, dtype=np.int32)
    # Overlaps resolved by drawing rank (maximum.at has a defined result for repeated pixels); triangle_raster maps ranks to ids.
    rank = np.repeat(np.repeat(keep.astype(np.int32) + 1, counts), lengths)
    np.maximum.at(raster.reshape(-1), index, rank)
    return raster, ids


_EDGE_EPS = 1e-9  # samples this close to an edge count as on it: shared edges leave no gaps
_FAR = 1e30


def _coarse_map(
    dst: Points,
    src: Points,
    region: Region,
    step: int,
    order: npt.NDArray[np.intp] | None,
    fallback: npt.NDArray[np.float64] | None,
) -> tuple[PointMap, npt.NDArray[np.int32]]:
    """The backward map on the coarse grid of `region` (one sample every `step` pixels) and its raster of drawing
    ranks (_ranked_raster: 0 where no triangle covers a sample)."""
    raster, ids = _ranked_raster(dst, region, step, order)
    # Coefficients in drawing order (row k + 1: triangle ids[k]), so the samples' ranks index them directly.
    coef = np.empty((len(ids) + 1, 6))
    coef[0] = (fallback if fallback is not None else np.array([[1.0, 0, 0], [0, 1.0, 0]])).reshape(6)
    coef[1:] = affine_coefficients(dst, src) if order is None else affine_coefficients(dst[ids], src[ids])
    return sampled_affine(coef, raster, region, step), raster


def sampled_affine(coef: npt.NDArray[np.float64], index: npt.NDArray[np.int32], region: Region, step: int) -> PointMap:
    """The map on the coarse grid of `region` where each sample takes the affine map `coef[index]` (rows of 6)."""
    rows, cols = index.shape
    xs = (region.x0 + (np.arange(cols) + 0.5) * step - 0.5).astype(np.float32)[None, :]
    ys = (region.y0 + (np.arange(rows) + 0.5) * step - 0.5).astype(np.float32)[:, None]
    # take(axis=0) gathers whole 6-coefficient rows: five times faster than fancy indexing or six 1-D takes.
    c = coef.astype(np.float32).take(index.ravel(), axis=0).reshape(rows, cols, 6)
    maps = np.empty((rows, cols, 2), np.float32)
    maps[..., 0] = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    maps[..., 1] = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    return maps


def warp_map(
    dst: Points,
    src: Points,
    region: Region,
    step: int,
    order: npt.NDArray[np.intp] | None = None,
    fallback: npt.NDArray[np.float64] | None = None,
) -> tuple[PointMap, npt.NDArray[np.uint8]]:
    """One (h, w, 2) backward map for cv2.remap over `region`, and the coverage mask (255 = covered).

    dst, src: (T, 3, 2) triangle corners in output and source pixels. `fallback` is a 2x3 affine
    used where no triangle covers a pixel (identity when None). Interleaved x/y: one upsampling
    resize instead of two, and cv2.remap takes it as is.
    """
    maps, raster = _coarse_map(dst, src, region, step, order, fallback)
    covered = cv2.compare(raster, 0, cv2.CMP_GT)
    if step > 1:
        size = (region.width, region.height)
        maps = np.asarray(cv2.resize(maps, size, interpolation=cv2.INTER_LINEAR), np.float32)
        covered = np.asarray(cv2.resize(covered, size, interpolation=cv2.INTER_LINEAR), np.uint8)
    return maps, covered


@dataclass(frozen=True)
class CoarseMap:
    """A backward map kept on its coarse grid; full-resolution pieces are made only where they are needed.

    `box(ys, xs)` equals warp_map's full map of the region sliced to that box (bilinear upsampling by
    an integer step reads only the neighbouring coarse samples, so a crop with one sample of margin
    gives the same values) without upsampling the rest of the region.
    """

    coarse: PointMap
    region: Region
    step: int

    @classmethod
    def build(cls, dst: Points, src: Points, region: Region, step: int,
              order: npt.NDArray[np.intp] | None = None, fallback: npt.NDArray[np.float64] | None = None) -> CoarseMap:
        return cls(_coarse_map(dst, src, region, step, order, fallback)[0], region, step)

    def full(self) -> PointMap:
        if self.step == 1:
            return self.coarse
        size = (self.region.width, self.region.height)
        return np.asarray(cv2.resize(self.coarse, size, interpolation=cv2.INTER_LINEAR), np.float32)

    def remap(self, source: npt.NDArray[np.uint8]) -> Image:
        """`remap(source, self.full())`, the full map made and used a band of rows at a time: a whole frame's
        map (2 floats a pixel) and its fixed-point copy never exist, and each band's stay in the core's cache.
        The same bytes: a band's map is the full map's rows (`box`), converted to fixed point as `remap` converts
        a map that large, and remap reads each output pixel from its own map value."""
        width, height = self.region.width, self.region.height
        if self.step == 1 or width * height < FIXED_POINT_PIXELS:
            return remap(source, self.full())
        out = np.empty((height, width, *source.shape[2:]), source.dtype)
        xs = slice(self.region.x0, self.region.x0 + width)
        for top in range(0, height, _REMAP_BAND):
            rows = slice(top, min(top + _REMAP_BAND, height))
            fixed, fraction = cv2.convertMaps(self.box(slice(self.region.y0 + rows.start, self.region.y0 + rows.stop), xs), None,
                                              cv2.CV_16SC2)
            cv2.remap(source, fixed, fraction, cv2.INTER_LINEAR, dst=out[rows], borderMode=cv2.BORDER_REPLICATE)
        return out

    def box(self, ys: slice, xs: slice) -> PointMap:
        """The full map over frame rows `ys` and columns `xs` (inside the region)."""
        y0, y1, x0, x1 = ys.start - self.region.y0, ys.stop - self.region.y0, xs.start - self.region.x0, xs.stop - self.region.x0
        if self.step == 1:
            return self.coarse[y0:y1, x0:x1]
        k = self.step
        rows, cols = self.coarse.shape[:2]
        cy0, cx0 = max(0, y0 // k - 1), max(0, x0 // k - 1)
        cy1, cx1 = min(rows, -(-y1 // k) + 1), min(cols, -(-x1 // k) + 1)
        up = cv2.resize(self.coarse[cy0:cy1, cx0:cx1], ((cx1 - cx0) * k, (cy1 - cy0) * k), interpolation=cv2.INTER_LINEAR)
        oy, ox = y0 - cy0 * k, x0 - cx0 * k
        return np.asarray(up[oy : oy + y1 - y0, ox : ox + x1 - x0], np.float32)


def warp_maps(
    dst: Points,
    src: Points,
    region: Region,
    step: int,
    order: npt.NDArray[np.intp] | None = None,
    fallback: npt.NDArray[np.float64] | None = None,
) -> tuple[FloatMap, FloatMap, npt.NDArray[np.uint8]]:
    """warp_map as separate (map_x, map_y) and the coverage mask."""
    maps, covered = warp_map(dst, src, region, step, order, fallback)
    return np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1]), covered


def similarity_2d(src: Points, dst: Points) -> npt.NDArray[np.float64]:
    """Least-squares 2-D similarity (2x3) taking the first 468 src points onto dst (deterministic)."""
    a = src[:468, :2].astype(np.float64)
    b = dst[:468, :2].astype(np.float64)
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - ma, b - mb
    var = max(float((a0**2).sum()), 1e-9)
    c = float((a0 * b0).sum()) / var
    s = float((a0[:, 0] * b0[:, 1] - a0[:, 1] * b0[:, 0]).sum()) / var
    rot = np.array([[c, -s], [s, c]])
    return np.hstack([rot, (mb - rot @ ma)[:, None]])


def remap(source: npt.NDArray[np.uint8], map_x: FloatMap | PointMap, map_y: FloatMap | None = None) -> Image:
    """Bilinear lookup; `map_x` alone may be an interleaved (h, w, 2) map."""
    if map_y is None and map_x.shape[0] * map_x.shape[1] >= FIXED_POINT_PIXELS:
        # Fixed-point maps remap a whole frame faster than the conversion costs.
        fixed, fraction = cv2.convertMaps(map_x, None, cv2.CV_16SC2)
        out: Image = cv2.remap(source, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out
    out = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


_REMAP_BAND = 64  # rows of a frame's map CoarseMap.remap makes at a time (32-96 were alike at 640x480; 160 slower)
# Maps of at least this many pixels are remapped in fixed point (1/32 px): a caller that must match `remap`
# byte for byte on part of such a map (mesh.py's bands) converts its part the same way.
FIXED_POINT_PIXELS = 100_000


def paste(canvas: Image, patch: npt.NDArray[np.generic], region: Region) -> None:
    """Write a region-sized patch into the canvas, dropping what falls outside the frame."""
    fy, fx, py, px = region.clip_to((canvas.shape[1], canvas.shape[0]))
    canvas[fy, fx] = patch[py, px]
