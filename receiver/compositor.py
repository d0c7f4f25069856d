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


def despill(pixels: FloatImage) -> FloatImage:
    """Remove green and blue screen spill from edge pixels (N x 3, BGR float).

    Green is limited to the mean of red and blue; blue likewise, but only where the pixel is
    clearly blue-dominated, so skin and denim are left alone. The caller passes only the soft
    edge band, so a green sweater in the middle of the person keeps its colour.
    """
    b, g, r = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    out = pixels.copy()
    out[:, 1] = np.minimum(g, 0.5 * (r + b))
    blue = b > 1.15 * np.maximum(r, g)
    out[blue, 0] = np.minimum(b, 0.5 * (r + g))[blue]
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
        self._still: Image | None = None
        self._outside: FloatImage = np.zeros((1, 1), np.float32)
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
            self._still = load_background(spec, size)

    def _background(self, person: Image) -> Image:
        if self._still is not None:
            return self._still
        if self._video is not None:
            return self._video.next()
        w, h = self.size
        small = cv2.resize(person, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 2.5)
        return cv2.resize(small, self.size, interpolation=cv2.INTER_LINEAR)

    def compose(self, person: RenderedPerson) -> Image:
        image, alpha = person.image, person.alpha
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        if alpha.shape[::-1] != self.size:
            alpha = cv2.resize(alpha, self.size, interpolation=cv2.INTER_LINEAR)
        alpha = np.clip(alpha.astype(np.float32, copy=False), 0.0, 1.0)
        background = self._background(image)
        fg = self._edges(image, alpha, background)
        # Edge work touches only the band; the blend itself is one OpenCV pass over uint8 pictures.
        result = cv2.blendLinear(fg, background, alpha, 1.0 - alpha)
        return np.ascontiguousarray(result[:, ::-1]) if self.mirror else result

    def _edges(self, image: Image, alpha: Alpha, background: Image) -> Image:
        """Despill and light wrap, computed only on the pixels near the matte's edge."""
        weight = self._wrap_weight(alpha) if self.edges.light_wrap > 0 else None
        soft = ((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8)
        band = cv2.dilate(soft, np.ones((5, 5), np.uint8)) if self.edges.despill else np.zeros_like(soft)
        touched = band.astype(bool) if weight is None else band.astype(bool) | (weight > 1e-3)
        index = np.flatnonzero(touched)
        if index.size == 0:
            return image
        flat = image.reshape(-1, 3)
        pixels = flat[index].astype(np.float32)
        if self.edges.despill:
            in_band = band.reshape(-1)[index].astype(bool)
            pixels[in_band] = despill(pixels[in_band])
        if weight is not None:
            light = self._wrap_light(alpha, background).reshape(-1, 3)[index]
            w = weight.reshape(-1)[index][:, None]
            pixels = np.asarray(pixels * (1.0 - w) + light * w, np.float32)
        out = image.copy()
        out.reshape(-1, 3)[index] = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
        return out

    def _wrap_weight(self, alpha: Alpha) -> FloatImage:
        """How much background light reaches each pixel: strongest just inside the edge, zero outside."""
        small = self._small_size()
        outside = cv2.GaussianBlur(cv2.resize(1.0 - alpha, small, interpolation=cv2.INTER_AREA), (0, 0), self._sigma())
        self._outside = outside
        return cv2.resize(outside, self.size, interpolation=cv2.INTER_LINEAR) * alpha * self.edges.light_wrap

    def _wrap_light(self, alpha: Alpha, background: Image) -> FloatImage:
        """The background's light, spread from around the person (normalised blur of the visible background)."""
        small = self._small_size()
        bg_small = cv2.resize(background, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        visible = 1.0 - cv2.resize(alpha, small, interpolation=cv2.INTER_AREA)
        light = cv2.GaussianBlur(bg_small * visible[..., None], (0, 0), self._sigma())
        light = light / np.maximum(self._outside, 1e-3)[..., None]
        return cv2.resize(light, self.size, interpolation=cv2.INTER_LINEAR)

    def _small_size(self) -> tuple[int, int]:
        w, h = self.size
        return max(1, w // 4), max(1, h // 4)

    def _sigma(self) -> float:
        return max(0.8, self.edges.wrap_radius * float(np.hypot(*self.size)) / 4)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
