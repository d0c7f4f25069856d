"""Alpha-composites the rendered person over the receiver's background."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from shared.types import Image, RenderedPerson

_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


class BackgroundError(ValueError):
    """A --background that is neither #RRGGBB nor a readable image."""


def load_background(spec: str | None, size: tuple[int, int]) -> Image:
    width, height = size
    if spec is None:
        spec = "#30343c"
    match = _HEX.match(spec)
    if match:
        rgb = bytes.fromhex(match.group(1))
        return np.full((height, width, 3), (rgb[2], rgb[1], rgb[0]), np.uint8)
    path = Path(spec)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise BackgroundError(f"background {spec!r} is neither #RRGGBB nor a readable image file")
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class Compositor:
    def __init__(self, background: str | None, size: tuple[int, int], mirror: bool = False) -> None:
        self.size = size
        self.mirror = mirror
        self._background = load_background(background, size).astype(np.float32)

    def compose(self, person: RenderedPerson) -> Image:
        image, alpha = person.image, person.alpha
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
            alpha = cv2.resize(alpha, self.size, interpolation=cv2.INTER_LINEAR)
        a = alpha[:, :, None]
        out = image.astype(np.float32) * a + self._background * (1.0 - a)
        result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return result[:, ::-1].copy() if self.mirror else result
