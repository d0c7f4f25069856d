"""Alpha-composites the rendered person over the receiver's background.

Backgrounds: `#RRGGBB`, an image file, a video file (looped, one frame per composed frame) or
`blur` (the person's own keyframe surroundings, blurred). Edges: green/blue spill is removed where
the matte is soft, and a little of the new background's light wraps around the person's edge so
the cut-out does not look pasted on. `mirror` flips the output (a selfie view).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from shared.types import Alpha, Image, RenderedPerson

_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
BLUR = "blur"
DEFAULT_BACKGROUND = "#30343c"
FloatImage = npt.NDArray[np.float32]


class BackgroundError(ValueError):
    """A --background that is neither #RRGGBB, `blur`, a readable image nor a readable video."""


def _colour(spec: str, size: tuple[int, int]) -> Image | None:
    match = _HEX.match(spec)
    if not match:
        return None
    rgb = bytes.fromhex(match.group(1))
    return np.full((size[1], size[0], 3), (rgb[2], rgb[1], rgb[0]), np.uint8)


def load_background(spec: str | None, size: tuple[int, int]) -> Image:
    """A still background (colour or image) at `size`; raises BackgroundError otherwise."""
    spec = DEFAULT_BACKGROUND if spec is None else spec
    colour = _colour(spec, size)
    if colour is not None:
        return colour
    path = Path(spec)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise BackgroundError(f"background {spec!r} is neither #RRGGBB, blur, nor a readable image or video file")
    return _fill(image, size)


def _fill(image: Image, size: tuple[int, int]) -> Image:
    """Scale to cover `size` and centre-crop, so the background is never stretched."""
    w, h = size
    scale = max(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)  # fmt: skip
    y0 = (resized.shape[0] - h) // 2
    x0 = (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])


class VideoBackground:
    """Frames of a video file at `size`, looping forever."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        self.path = path
        self.size = size
        self._capture = cv2.VideoCapture(str(path))
        first = self._read()
        if first is None:
            self._capture.release()
            raise BackgroundError(f"background video {path} has no readable frames")
        self._first = first
        self.frames_read = 1
        self._pending: Image | None = first

    def _read(self) -> Image | None:
        ok, frame = self._capture.read()
        return _fill(frame, self.size) if ok and frame is not None else None

    def next(self) -> Image:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        frame = self._read()
        if frame is None:  # end of file: loop
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = self._read()
            if frame is None:  # some containers do not seek; reopen
                self._capture.release()
                self._capture = cv2.VideoCapture(str(self.path))
                frame = self._read()
                if frame is None:
                    frame = self._first
        self.frames_read += 1
        return frame

    def close(self) -> None:
        self._capture.release()


@dataclass(frozen=True)
class EdgeOptions:
    despill: bool = True
    light_wrap: float = 0.35  # 0 disables; fraction of background light at the very edge
    wrap_radius: float = 0.012  # of the image diagonal


def despill(image: FloatImage, alpha: Alpha) -> FloatImage:
    """Remove green and blue screen spill where the matte is soft (and just inside it).

    The key colour's channel is limited to the mean of the other two, only in the soft edge band,
    so a green sweater in the middle of the person keeps its colour.
    """
    band = cv2.dilate(((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8), np.ones((5, 5), np.uint8))
    if not band.any():
        return image
    b, g, r = image[..., 0], image[..., 1], image[..., 2]
    green_limit = np.minimum(g, 0.5 * (r + b))
    blue_limit = np.minimum(b, 0.5 * (r + g))
    out = image.copy()
    m = band.astype(bool)
    out[..., 1][m] = green_limit[m]
    # Blue spill only where the pixel is clearly blue-dominated, so skin and denim are left alone.
    blue = m & (b > 1.15 * np.maximum(r, g))
    out[..., 0][blue] = blue_limit[blue]
    return out


class Compositor:
    def __init__(
        self,
        background: str | None,
        size: tuple[int, int],
        mirror: bool = False,
        edges: EdgeOptions | None = None,
    ) -> None:
        self.size = size
        self.mirror = mirror
        self.edges = edges or EdgeOptions()
        self._video: VideoBackground | None = None
        self._still: FloatImage | None = None
        self._blur = background == BLUR
        if self._blur:
            return
        spec = DEFAULT_BACKGROUND if background is None else background
        path = Path(spec)
        if _colour(spec, size) is None and path.suffix.lower() in VIDEO_SUFFIXES:
            if not path.is_file():
                raise BackgroundError(f"background video {spec!r} does not exist")
            self._video = VideoBackground(path, size)
        else:
            self._still = load_background(spec, size).astype(np.float32)

    def _background(self, person: Image) -> FloatImage:
        if self._still is not None:
            return self._still
        if self._video is not None:
            return self._video.next().astype(np.float32)
        w, h = self.size
        small = cv2.resize(person, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 2.5)
        return cv2.resize(small, self.size, interpolation=cv2.INTER_LINEAR).astype(np.float32)

    def compose(self, person: RenderedPerson) -> Image:
        image, alpha = person.image, person.alpha
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        if alpha.shape[::-1] != self.size:
            alpha = cv2.resize(alpha, self.size, interpolation=cv2.INTER_LINEAR)
        alpha = np.clip(alpha.astype(np.float32, copy=False), 0.0, 1.0)
        background = self._background(image)
        fg = image.astype(np.float32)
        if self.edges.despill:
            fg = despill(fg, alpha)
        if self.edges.light_wrap > 0:
            fg = self._light_wrap(fg, alpha, background)
        a = alpha[:, :, None]
        out = fg * a + background * (1.0 - a)
        result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(result[:, ::-1]) if self.mirror else result

    def _light_wrap(self, fg: FloatImage, alpha: Alpha, background: FloatImage) -> FloatImage:
        """Blend blurred background light into the person near the edge (strongest at the edge)."""
        w, h = self.size
        factor = 4
        small = (max(1, w // factor), max(1, h // factor))
        sigma = max(0.8, self.edges.wrap_radius * float(np.hypot(w, h)) / factor)
        outside = cv2.GaussianBlur(cv2.resize(1.0 - alpha, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
        bg_small = cv2.resize(background, small, interpolation=cv2.INTER_AREA)
        light = cv2.GaussianBlur(bg_small * (1.0 - cv2.resize(alpha, small))[..., None], (0, 0), sigma)
        light = light / np.maximum(outside, 1e-3)[..., None]
        weight = cv2.resize(outside, self.size, interpolation=cv2.INTER_LINEAR) * alpha * self.edges.light_wrap
        if float(weight.max()) <= 1e-3:
            return fg
        light_full = cv2.resize(light, self.size, interpolation=cv2.INTER_LINEAR)
        wgt = weight[..., None]
        return fg * (1.0 - wgt) + light_full * wgt

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
