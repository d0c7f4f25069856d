"""The warp's cheaper computations give the same floats as the plain ones they replace."""

from __future__ import annotations

import numpy as np

from facewire.shared.render.warp import Region, _coarse_map, affine_coefficients, sampled_affine, triangle_raster, warp_map


def _coarse_map_by_id(dst: np.ndarray, src: np.ndarray, region: Region, step: int, order: np.ndarray | None,
                      fallback: np.ndarray) -> np.ndarray:
    """The coarse map as it was made before drawing ranks: coefficients gathered by the raster of triangle ids."""
    raster = triangle_raster(dst, region, step, order)
    coef = np.empty((len(dst) + 1, 6))
    coef[0] = fallback.reshape(6)
    coef[1:] = affine_coefficients(dst, src)
    return sampled_affine(coef, raster, region, step)


def test_the_coarse_map_by_drawing_rank_is_the_map_by_triangle_id() -> None:
    """Overlapping, degenerate and off-region triangles, any drawing order (or none): the same floats, and a sample
    is covered exactly where a triangle's id covers it."""
    rng = np.random.default_rng(11)
    fallback = np.array([[1.02, 0.01, 3.5], [-0.02, 0.97, -2.0]])
    for trial in range(120):
        count = int(rng.integers(1, 40))
        dst = rng.uniform(-20, 90, (count, 3, 2)).astype(np.float32)
        if trial % 4 == 0:
            dst[0, 2] = dst[0, 1]  # a degenerate triangle
        src = (dst + rng.normal(0, 5, dst.shape)).astype(np.float32)
        step = int(rng.choice([1, 2, 4]))
        region = Region(int(rng.integers(-8, 8)), int(rng.integers(-8, 8)), 64, 48)
        order = None if trial % 3 == 0 else rng.permutation(count)
        maps, ranks = _coarse_map(dst, src, region, step, order, fallback)
        assert np.array_equal(maps, _coarse_map_by_id(dst, src, region, step, order, fallback))
        assert np.array_equal(ranks > 0, triangle_raster(dst, region, step, order) > 0)
        full, covered = warp_map(dst, src, region, step, order, fallback)
        assert full.shape == (48, 64, 2) and covered.dtype == np.uint8
