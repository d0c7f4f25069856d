"""The receiver's fast paths give what the plain definitions give (alpha upsampling, warping only the person)."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.codec.alpha import EDGE_GAIN, upsample
from facewire.shared.render.mesh import _warp_person
from facewire.shared.render.warp import CoarseMap, Region, remap, warp_map
from tests.render_fixtures import astronaut


def test_upsample_is_bilinear_then_steepened() -> None:
    rng = np.random.default_rng(1)
    for shape, size in (((60, 80), (640, 480)), ((7, 9), (65, 50)), ((1, 1), (4, 3))):
        low = (rng.integers(0, 16, shape) / 15).astype(np.float32)
        want = np.clip((cv2.resize(low, size, interpolation=cv2.INTER_LINEAR) - 0.5) * EDGE_GAIN + 0.5, 0.0, 1.0)
        got = upsample(low, size)
        assert got.dtype == np.float32 and got.shape == (size[1], size[0])
        assert float(np.abs(got - want).max()) < 1e-5
        assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def _maps(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([xs * 0.95 + 6 + 3 * np.sin(ys / 17), ys * 1.03 - 4]).astype(np.float32)


def test_person_warp_matches_the_whole_frame_inside_the_matte() -> None:
    image = cv2.resize(astronaut(), (320, 240))
    maps = _maps(320, 240)
    alpha = np.zeros((240, 320), np.float32)
    cv2.ellipse(alpha, (150, 140), (60, 80), 0, 0, 360, 1.0, -1)
    coarse = CoarseMap(maps, Region.full((320, 240)), 1)
    got = _warp_person(image, coarse, alpha)
    whole = remap(image, maps)
    inside = alpha > 0
    assert np.array_equal(got[inside], whole[inside])
    assert np.array_equal(got[:40], image[:40])  # above the person: the keyframe as it is
    assert np.array_equal(_warp_person(image, coarse, np.ones_like(alpha)), whole)
    assert np.array_equal(_warp_person(image, coarse, np.zeros_like(alpha)), image)


def test_coarse_map_boxes_equal_the_full_map() -> None:
    """Upsampling a box of a coarse map gives the full map's values there, exactly (steps 1, 2, 4)."""
    rng = np.random.default_rng(5)
    verts_dst = np.array([[0, 0], [159, 0], [0, 119], [159, 119], [70, 50], [100, 80]], np.float32)
    verts_src = verts_dst + rng.normal(0, 4, verts_dst.shape).astype(np.float32)
    tris = np.array([[0, 1, 4], [1, 3, 5], [3, 2, 5], [2, 0, 4], [4, 1, 5], [4, 5, 2]])
    for step in (1, 2, 4):
        region = Region(8, 4, 152, 112)
        full, _ = warp_map(verts_dst[tris], verts_src[tris], region, step)
        coarse = CoarseMap.build(verts_dst[tris], verts_src[tris], region, step)
        assert np.array_equal(coarse.full(), full)
        for _ in range(30):
            y0, x0 = int(rng.integers(4, 115)), int(rng.integers(8, 159))
            y1, x1 = int(rng.integers(y0 + 1, 117)), int(rng.integers(x0 + 1, 161))
            assert np.array_equal(coarse.box(slice(y0, y1), slice(x0, x1)), full[y0 - 4 : y1 - 4, x0 - 8 : x1 - 8])


def test_coarse_map_remap_band_by_band_is_the_full_maps() -> None:
    """CoarseMap.remap makes the full map a band of rows at a time: the bytes of remapping with the full map (a region
    off the origin, rows not a multiple of the band, 3 and 4 channels; small maps take the plain path)."""
    rng = np.random.default_rng(9)
    picture = cv2.resize(astronaut(), (400, 300))
    packed = np.dstack([picture, rng.integers(0, 256, picture.shape[:2], np.uint8)])
    verts_dst = np.array([[0, 0], [399, 0], [0, 299], [399, 299], [180, 120], [250, 200]], np.float32)
    tris = np.array([[0, 1, 4], [1, 3, 5], [3, 2, 5], [2, 0, 4], [4, 1, 5], [4, 5, 2]])
    for region in (Region(0, 0, 400, 300), Region(8, 4, 392, 292), Region(0, 0, 96, 80)):
        verts_src = verts_dst + rng.normal(0, 6, verts_dst.shape).astype(np.float32)
        coarse = CoarseMap.build(verts_dst[tris], verts_src[tris], region, 4)
        for source in (picture, packed):
            assert np.array_equal(coarse.remap(source), remap(source, coarse.full()))


def test_face_region_is_on_a_fixed_grid_of_four() -> None:
    from facewire.shared.render.mesh import _face_region

    rng = np.random.default_rng(7)
    for _ in range(200):
        size = (4 * int(rng.integers(16, 170)), 4 * int(rng.integers(16, 120)))
        centre = rng.uniform(0, 1, 2) * size
        points = (centre + rng.normal(0, 30, (40, 2))).astype(np.float32)
        step = int(rng.integers(1, 3))
        region = _face_region(points, size, step)
        assert region.x0 % 4 == 0 and region.y0 % 4 == 0 and region.width % 4 == 0 and region.height % 4 == 0
        assert region.x0 + region.width <= size[0] and region.y0 + region.height <= size[1]
        inside = (points >= 0).all(axis=1) & (points[:, 0] < size[0]) & (points[:, 1] < size[1])
        if inside.any():  # every in-frame point is in the region
            p = points[inside]
            assert region.x0 <= p[:, 0].min() and p[:, 0].max() < region.x0 + region.width
            assert region.y0 <= p[:, 1].min() and p[:, 1].max() < region.y0 + region.height


def test_occluder_warp_looks_up_only_near_its_support() -> None:
    from facewire.shared.render.mesh import _warp_occluder

    rng = np.random.default_rng(11)
    h, w = 240, 320
    for case in range(12):
        occluder = np.zeros((h, w), np.uint8)
        x0, y0 = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        if case % 3 == 0:
            x0 = 0  # touching the border: the lookup replicates it
        occluder[y0 : y0 + int(rng.integers(1, 30)), x0 : x0 + int(rng.integers(1, 30))] = rng.integers(1, 256)
        occluder = cv2.GaussianBlur(occluder, (5, 5), 0)
        ys, xs = np.mgrid[0:200, 0:260].astype(np.float32)
        maps = np.dstack([xs * 1.2 - 20 + 5 * np.sin(ys / 13), ys * 1.1 - 10]).astype(np.float32)
        for region in (maps, maps[:40, :50]):  # the whole-frame (fixed-point) and the small (float) lookup
            region = np.ascontiguousarray(region)
            want = remap(occluder, region).astype(np.float32) * np.float32(1.0 / 255.0)
            assert np.array_equal(_warp_occluder(occluder, region), want)
    assert not _warp_occluder(np.zeros((h, w), np.uint8), maps).any()
