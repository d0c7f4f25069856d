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

from shared.types import Image

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
    """Index+1 of the triangle covering each coarse-grid pixel of `region` (0 where none).

    Triangles are drawn in `order` (later ones on top). Coarse pixel j stands for the output
    pixel x0 + (j + 0.5) * step - 0.5, the sample point cv2.resize uses when upsampling.
    """
    rows, cols = region.height // step, region.width // step
    raster = np.zeros((rows, cols), np.int32)
    offset = np.array([region.x0 - 0.5 * step + 0.5, region.y0 - 0.5 * step + 0.5], np.float64)
    fixed = np.round((dst.astype(np.float64) - offset) / step * (1 << _SHIFT)).astype(np.int32)
    lo = fixed.min(axis=1)
    hi = fixed.max(axis=1)
    limit = np.array([cols << _SHIFT, rows << _SHIFT])
    visible = np.all(hi >= 0, axis=1) & np.all(lo < limit, axis=1)
    indices = np.arange(len(dst)) if order is None else order
    drawn = indices[visible[indices]]
    # ~1000 calls a frame: a local function, plain positional arguments and pre-split corners keep the loop cheap.
    fill, line = cv2.fillConvexPoly, cv2.LINE_8
    for corners, colour in zip(list(fixed[drawn]), (drawn + 1).tolist(), strict=True):
        fill(raster, corners, colour, line, _SHIFT)
    return raster


def _coarse_map(
    dst: Points,
    src: Points,
    region: Region,
    step: int,
    order: npt.NDArray[np.intp] | None,
    fallback: npt.NDArray[np.float64] | None,
) -> tuple[PointMap, npt.NDArray[np.int32]]:
    """The backward map on the coarse grid of `region` (one sample every `step` pixels) and its triangle raster."""
    raster = triangle_raster(dst, region, step, order)
    coef = np.empty((len(dst) + 1, 6))
    coef[0] = (fallback if fallback is not None else np.array([[1.0, 0, 0], [0, 1.0, 0]])).reshape(6)
    coef[1:] = affine_coefficients(dst, src)
    rows, cols = raster.shape
    xs = (region.x0 + (np.arange(cols) + 0.5) * step - 0.5).astype(np.float32)[None, :]
    ys = (region.y0 + (np.arange(rows) + 0.5) * step - 0.5).astype(np.float32)[:, None]
    # take(axis=0) gathers whole 6-coefficient rows: five times faster than fancy indexing or six 1-D takes.
    c = coef.astype(np.float32).take(raster.ravel(), axis=0).reshape(rows, cols, 6)
    maps = np.empty((rows, cols, 2), np.float32)
    maps[..., 0] = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    maps[..., 1] = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    return maps, raster


def warp_map(
    dst: Points,
    src: Points,
    region: Region,
    step: int,
    order: npt.NDArray[np.intp] | None = None,
    fallback: npt.NDArray[np.float64] | None = None,
    coverage: bool = True,
) -> tuple[PointMap, npt.NDArray[np.uint8] | None]:
    """One (h, w, 2) backward map for cv2.remap over `region`, and the coverage mask (255 = covered).

    dst, src: (T, 3, 2) triangle corners in output and source pixels. `fallback` is a 2x3 affine
    used where no triangle covers a pixel (identity when None). Interleaved x/y: one upsampling
    resize instead of two, and cv2.remap takes it as is. `coverage=False` skips the mask (None).
    """
    maps, raster = _coarse_map(dst, src, region, step, order, fallback)
    covered = cv2.compare(raster, 0, cv2.CMP_GT) if coverage else None
    if step > 1:
        size = (region.width, region.height)
        maps = np.asarray(cv2.resize(maps, size, interpolation=cv2.INTER_LINEAR), np.float32)
        if covered is not None:
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
    assert covered is not None
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
    if map_y is None and map_x.shape[0] * map_x.shape[1] >= _FIXED_POINT_PIXELS:
        # Fixed-point maps remap a whole frame faster than the conversion costs.
        fixed, fraction = cv2.convertMaps(map_x, None, cv2.CV_16SC2)
        out: Image = cv2.remap(source, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out
    out = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


_FIXED_POINT_PIXELS = 100_000


def paste(canvas: Image, patch: npt.NDArray[np.generic], region: Region) -> None:
    """Write a region-sized patch into the canvas, dropping what falls outside the frame."""
    fy, fx, py, px = region.clip_to((canvas.shape[1], canvas.shape[0]))
    canvas[fy, fx] = patch[py, px]
