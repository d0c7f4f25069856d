"""The scene face's form on the avatar: a cheek's shade at the scale of the face's shape comes over, glasses do not."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.face import topology as topo
from facewire.shared.render.blend import BlendOptions, face_mask, face_width, match_shading
from facewire.shared.render.warp import Region
from facewire.shared.types import Image, Landmarks
from tests.render_fixtures import big_astronaut

cv2.setNumThreads(1)

FORM = BlendOptions(form_strength=1.0)
FLAT = BlendOptions(form_strength=0.0)


def _region(lm: Landmarks, shape: tuple[int, ...]) -> tuple[Region, Landmarks]:
    """The face's box grown by a fifth, on the eighth grid (as mesh._face_region), and the landmarks inside it."""
    oval = lm[topo.face_oval_ring(), :2]
    pad = 0.2 * float(np.ptp(oval[:, 0]))
    x0, y0 = (int(v - pad) // 8 * 8 for v in oval.min(axis=0))
    x1, y1 = (min(limit, -(-int(v + pad) // 8) * 8) for v, limit in zip(oval.max(axis=0), (shape[1], shape[0]), strict=True))
    local = lm.copy()
    local[:, :2] -= np.array([x0, y0], np.float32)
    return Region(x0, y0, x1 - x0, y1 - y0), local


def _darken(image: Image, centre: npt.NDArray[np.float32], sigma: float, depth: float) -> Image:
    """`image` darkened by a soft blob (log `depth` at its centre): a cheekbone's shade."""
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float32)
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma * sigma))
    return np.clip(image * np.exp(-depth * blob)[..., None] + 0.5, 0, 255).astype(np.uint8)


def _shaded(face: Image, scene: Image, lm: Landmarks, options: BlendOptions) -> npt.NDArray[np.float32]:
    region, local = _region(lm, face.shape)
    crop = (slice(region.y0, region.y0 + region.height), slice(region.x0, region.x0 + region.width))
    mask = face_mask(local, Region(0, 0, region.width, region.height), options)
    midline = (local[topo.NOSE_BRIDGE, :2], local[topo.CHIN, :2])
    out = match_shading(face[crop], scene[crop], mask, face_width(lm), options, midline, local)
    return np.log(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32) + 8.0)


def _cheek(lm: Landmarks, side: int) -> npt.NDArray[np.float32]:
    """Below the outer eye corner, between it and the mouth's corner on that side."""
    eye = lm[33 if side < 0 else 263, :2]
    mouth = lm[61 if side < 0 else 291, :2]
    return np.asarray(0.5 * (eye + mouth), np.float32)


def _at(values: npt.NDArray[np.float32], lm: Landmarks, point: npt.NDArray[np.float32], radius: int) -> float:
    region, _ = _region(lm, (10**6, 10**6))
    x, y = int(point[0]) - region.x0, int(point[1]) - region.y0
    return float(values[y - radius : y + radius + 1, x - radius : x + radius + 1].mean())


def test_a_cheekbone_shade_of_the_scene_comes_over_to_the_avatar() -> None:
    image, lm = big_astronaut()
    width = face_width(lm)
    cheek = _cheek(lm, -1)
    scene = _darken(image, cheek, 0.08 * width, 0.25)
    other = _cheek(lm, 1)
    r = max(2, int(0.03 * width))

    def depth(options: BlendOptions) -> float:
        y = _shaded(image, scene, lm, options)
        return _at(y, lm, cheek, r) - _at(y, lm, other, r)

    base = depth(BlendOptions(form_strength=0.0, shading_strength=0.0))  # the avatar's own two cheeks
    flat = depth(FLAT)
    # The smooth light fields take a blob a fifth of the face wide hardly at all; the form band carries a good part
    # of it (not all: the band-pass leaves out its broad base, which the fields would have to take).
    assert flat - base > -0.03, flat - base
    assert depth(FORM) - flat < -0.06, depth(FORM) - flat


def test_glasses_and_features_of_the_scene_do_not_come_over() -> None:
    image, lm = big_astronaut()
    width = face_width(lm)
    scene = image.copy()
    # A dark frame of glasses round each eye, three hundredths of the face wide.
    for ring in (topo.right_eye_ring(), topo.left_eye_ring()):
        eye = lm[ring, :2]
        centre = eye.mean(axis=0)
        axes = (int(0.22 * width), int(0.14 * width))
        cv2.ellipse(scene, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, (25, 25, 30), max(1, int(0.03 * width)))
    y_form = _shaded(image, scene, lm, FORM)
    y_flat = _shaded(image, scene, lm, FLAT)
    region, local = _region(lm, image.shape)
    inside = face_mask(local, Region(0, 0, region.width, region.height), FLAT) > 0.9
    # The frames are darker than the skin round them by far: left out of the form, nothing of them is drawn.
    assert float(np.abs(y_form - y_flat)[inside].max()) < 0.06
