"""Foreground colour for a matte's soft edge: the room taken out of the pixels the person only partly covers.

A pixel with alpha a shows a * person + (1 - a) * room. Sent as it is, a receiver compositing it
over a new background keeps the (1 - a) share of the old room: a pale fringe from a white wall
round the hair and shoulders over a dark background. Where the matte is soft, the person's own
colour from just inside the edge (a normalised blur of the solid pixels) stands in for the
pixel's colour, fully below alpha `keep` and fading to none at alpha 1; where nothing solid is
near, the pixel keeps its colour. The sender computes it only for keyframes, whose colours the
receiver warps for every frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from facewire.shared.types import Alpha, Image

_SOLID = 0.99  # alpha from which a pixel is the person's solid colour
_CLEAR = 0.01  # alpha this close to 0 or 1 shows the room, or the person, alone: left as it is
_NEAR = 0.01  # blurred solid support at which the spread colour is trusted fully


def decontaminate(image: Image, alpha: Alpha, reach: float = 0.02, keep: float = 0.9) -> Image:
    """`image` with its soft edge's colours replaced by the person's solid colour nearby.

    reach: how far in (a fraction of the image diagonal) the solid colour is looked for; keep: the
    alpha above which an edge pixel keeps part of its own colour.
    """
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape[:2]} and alpha {alpha.shape} differ in size")
    h, w = alpha.shape
    # The colour varies slowly along the edge: estimated at half size, and looked up per edge pixel.
    half = (max(1, w // 2), max(1, h // 2))
    sigma = max(1.0, reach * float(np.hypot(w, h)) / 2.0)
    small_alpha = cv2.resize(alpha.astype(np.float32), half, interpolation=cv2.INTER_AREA)
    solid = (small_alpha >= _SOLID).astype(np.float32)
    support = cv2.GaussianBlur(solid, (0, 0), sigma)
    colour = cv2.resize(image, half, interpolation=cv2.INTER_AREA).astype(np.float32)
    spread = cv2.GaussianBlur(colour * solid[..., None], (0, 0), sigma) / np.maximum(support, 1e-6)[..., None]
    near = np.clip(support / _NEAR, 0.0, 1.0)
    spread_full = cv2.resize(spread, (w, h), interpolation=cv2.INTER_LINEAR)
    near_full = cv2.resize(near, (w, h), interpolation=cv2.INTER_LINEAR)
    soft = (alpha > _CLEAR) & (alpha < 1.0 - _CLEAR)
    weight = np.clip((1.0 - alpha) / (1.0 - keep), 0.0, 1.0) * near_full * soft
    out = image.astype(np.float32) + (spread_full - image.astype(np.float32)) * weight[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
