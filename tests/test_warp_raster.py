"""The triangle-id raster behind every piecewise-affine warp: which coarse sample belongs to which triangle."""

from __future__ import annotations

import numpy as np

from facewire.shared.render.warp import Region, triangle_raster


def _sample_points(region: Region, step: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = region.height // step, region.width // step
    xs = region.x0 + (np.arange(cols) + 0.5) * step - 0.5
    ys = region.y0 + (np.arange(rows) + 0.5) * step - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    return grid_x, grid_y


def _brute_force(dst: np.ndarray, region: Region, step: int, order: np.ndarray) -> np.ndarray:
    """Point-in-triangle for every sample and triangle, later triangles in `order` on top."""
    x, y = _sample_points(region, step)
    out = np.zeros(x.shape, np.int32)
    for index in order:
        t = dst[index].astype(np.float64)
        area = (t[1, 0] - t[0, 0]) * (t[2, 1] - t[0, 1]) - (t[2, 0] - t[0, 0]) * (t[1, 1] - t[0, 1])
        if area == 0:
            continue
        inside = np.ones(x.shape, bool)
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            inside &= np.sign(area) * ((b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])) >= -1e-7
        out[inside] = index + 1
    return out


def test_raster_is_point_in_triangle_at_the_sample_points() -> None:
    rng = np.random.default_rng(3)
    for _ in range(150):
        dst = rng.uniform(-15, 75, (int(rng.integers(1, 15)), 3, 2)).astype(np.float32)
        step = int(rng.choice([1, 2, 4]))
        region = Region(int(rng.integers(-4, 6)), int(rng.integers(-4, 6)), 64, 48)
        order = rng.permutation(len(dst))
        got = triangle_raster(dst, region, step, order)
        assert got.shape == (48 // step, 64 // step) and got.dtype == np.int32
        assert np.array_equal(got, _brute_force(dst, region, step, order))
        assert np.array_equal(triangle_raster(dst, region, step), _brute_force(dst, region, step, np.arange(len(dst))))


def test_the_triangle_drawn_last_is_on_top() -> None:
    big = [[0, 0], [40, 0], [0, 40]]
    small = [[2, 2], [12, 2], [2, 12]]
    dst = np.array([big, small], np.float32)
    region = Region(0, 0, 40, 40)
    small_on_top = triangle_raster(dst, region, 1, np.array([0, 1]))
    big_on_top = triangle_raster(dst, region, 1, np.array([1, 0]))
    assert small_on_top[5, 5] == 2 and big_on_top[5, 5] == 1
    assert small_on_top[30, 5] == 1 and big_on_top[30, 5] == 1


def test_a_triangulated_square_covers_every_sample_with_no_gaps_on_shared_edges() -> None:
    """Vertices on sample points put samples exactly on shared edges: each still gets a triangle."""
    n, size = 6, 30
    grid = np.stack(np.meshgrid(np.linspace(0, size, n + 1), np.linspace(0, size, n + 1)), -1).reshape(-1, 2)
    rng = np.random.default_rng(11)
    inner = (grid[:, 0] > 0) & (grid[:, 0] < size) & (grid[:, 1] > 0) & (grid[:, 1] < size)
    grid[inner] += rng.uniform(-1.5, 1.5, (int(inner.sum()), 2))  # some vertices off the sample points
    tris = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = r * (n + 1) + c, r * (n + 1) + c + 1, (r + 1) * (n + 1) + c, (r + 1) * (n + 1) + c + 1
            tris += [(a, b, e), (a, e, d)]
    dst = grid[np.array(tris)].astype(np.float32)
    raster = triangle_raster(dst, Region(0, 0, size + 1, size + 1), 1)
    assert (raster > 0).all()


def test_degenerate_and_off_region_triangles_cover_nothing() -> None:
    dst = np.array([[[0, 0], [10, 10], [20, 20]], [[100, 100], [120, 100], [100, 120]]], np.float32)
    assert not triangle_raster(dst, Region(0, 0, 32, 32), 1).any()
    assert not triangle_raster(dst[:0], Region(0, 0, 32, 32), 2).any()
