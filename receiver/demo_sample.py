"""The demo's media, made from images that ship in installed wheels (no camera, no network, no ../shared).

Sender: scikit-image's `astronaut.png` (Eileen Collins, NASA, public domain), moved as a
head would move: a slow tilt, sway and zoom. Avatar: matplotlib's `grace_hopper.jpg` (US Navy, public domain).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from facewire.shared.types import Image


def astronaut() -> Image:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def avatar_path() -> Path:
    import matplotlib.cbook

    return Path(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def sample_frame(base: Image, index: int, fps: float = 30.0) -> Image:
    """One frame of the sample: the astronaut's head region under a smooth similarity motion."""
    t = index / fps
    height, width = base.shape[:2]
    centre = (width * 0.5, height * 0.3)
    angle = 6.0 * math.sin(2 * math.pi * t / 3.0)
    scale = 1.0 + 0.05 * math.sin(2 * math.pi * t / 4.0)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[0, 2] += 14.0 * math.sin(2 * math.pi * t / 2.5)
    matrix[1, 2] += 6.0 * math.sin(2 * math.pi * t / 3.5)
    return cv2.warpAffine(base, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_sample(directory: Path, frames: int, fps: float = 30.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    base = astronaut()
    for index in range(frames):
        cv2.imwrite(str(directory / f"{index:05d}.png"), sample_frame(base, index, fps))
    return directory


def side_by_side(left: Image, right: Image, height: int = 360) -> Image:
    def fit(image: Image) -> Image:
        return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)

    return np.hstack([fit(left), np.full((height, 8, 3), 255, np.uint8), fit(right)])
