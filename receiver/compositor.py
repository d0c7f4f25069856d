"""Alpha-composites the rendered person over the receiver's background.

Backgrounds: `#RRGGBB`, an image file, a video file (looped, one frame per composed frame) or
`blur` (the person's own keyframe surroundings, blurred). Edges: green/blue spill is removed where
the matte is soft, and a little of the new background's light wraps around the person's edge so
the cut-out does not look pasted on. `mirror` flips the output (a selfie view).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facewire.shared.types import Alpha, Image, RenderedPerson

_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
BLUR = "blur"
DEFAULT_BACKGROUND = "#30343c"
FloatImage = npt.NDArray[np.float32]
Planes = tuple[FloatImage, FloatImage, FloatImage]  # B, G, R as separate float planes
Colour = tuple[float, float, float, float]  # BGR and an unused fourth, as OpenCV takes a scalar
Mask = npt.NDArray[np.uint8]
_SMALL = 4  # the light wrap works at 1/_SMALL of the frame size
_STRIP = 64  # rows composed at a time (a multiple of _SMALL)
_PART_ROWS = 128  # rows of a part of the person's edge composed at a time (a multiple of _SMALL; fewer calls)


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
    b, g, r = np.ascontiguousarray(pixels.T)  # planes: the arithmetic runs on contiguous rows, twice as fast
    out = np.empty_like(pixels)
    out[:, 2] = r
    out[:, 1] = np.minimum(g, 0.5 * (r + b))
    limit = 0.5 * (r + g)
    np.minimum(b, limit, out=limit)
    out[:, 0] = np.where(b > 1.15 * np.maximum(r, g), limit, b)
    return out


def despilled(image: Image, band: Mask) -> Planes:
    """An H x W x 3 uint8 picture in float, despill() applied where `band` is non-zero, as its B, G, R planes.

    On planes, the band chosen by masked copies: despill changes most of a band's pixels, and the band is a
    good part of the ring around the person the compositor's parts cover, so whole planes cost less than
    gathering the band's pixels and putting them back (and the float copy of the picture comes with them).
    The same arithmetic as despill(), so the same values.
    """
    b8, g8, r8 = cv2.split(image)
    b, g, r = _float_planes((b8, g8, r8))
    green = cv2.min(g, cv2.addWeighted(r, 0.5, b, 0.5, 0.0))
    # where b > 1.15 max(r, g), min(b, (r + g) / 2) is (r + g) / 2
    clear_blue = cv2.compare(b, cv2.max(r8, g8).astype(np.float32) * np.float32(1.15), cv2.CMP_GT)
    cv2.copyTo(cv2.addWeighted(r, 0.5, g, 0.5, 0.0), cv2.bitwise_and(clear_blue, band), b)
    cv2.copyTo(green, band, g)
    return b, g, r


def _float_planes(planes: Sequence[Mask]) -> Planes:
    b, g, r = (plane.astype(np.float32) for plane in planes)
    return b, g, r


def _upsample_box(small: FloatImage, box: tuple[slice, slice], factor: int) -> FloatImage:
    """cv2.resize(small, full size)[box] for a box on the coarse grid, resizing only the part the box needs.

    Bilinear resize by an integer factor samples source (x + 0.5) / factor - 0.5, so a crop with one
    coarse pixel of margin, resized by the same factor, gives the full resize's values exactly.
    """
    ys, xs = box
    sy0, sy1, sx0, sx1 = ys.start // factor, ys.stop // factor, xs.start // factor, xs.stop // factor
    cy0, cx0 = max(0, sy0 - 1), max(0, sx0 - 1)
    cy1, cx1 = min(small.shape[0], sy1 + 1), min(small.shape[1], sx1 + 1)
    crop = small[cy0:cy1, cx0:cx1]
    up = cv2.resize(crop, ((cx1 - cx0) * factor, (cy1 - cy0) * factor), interpolation=cv2.INTER_LINEAR)
    oy, ox = (sy0 - cy0) * factor, (sx0 - cx0) * factor
    return np.asarray(up[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start], np.float32)


@dataclass(frozen=True)
class _EdgeInputs:
    """Per-frame edge work (None where the option is off): the despill band over the person's box, and the
    light wrap's two maps at the coarse size, brought up to full size only where a part of the box needs them."""

    band: Mask | None  # despill band, over the box
    outside: FloatImage | None  # light wrap: the blurred share of background around each coarse pixel
    light: Planes | Colour | None  # light wrap: the background's light around the person, coarse planes (or one colour)


_WRAP_FLOOR = 1e-3  # the light wrap changes only pixels it lifts by more than this share of the background's light
_PARTS_FROM = 300_000  # pixels in the person's box: the edge is composed in parts from this size on
_JOIN = 8  # coarse columns: plain stretches narrower than this between two edge runs are composed with them


def _area(box: tuple[slice, slice]) -> int:
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start)


def _runs(columns: npt.NDArray[np.bool_], join: int) -> list[tuple[int, int]]:
    """[start, stop) of the True runs of `columns`, runs fewer than `join` apart made one."""
    flips = np.flatnonzero(np.diff(np.concatenate(([False], columns, [False])).view(np.int8)))
    out: list[tuple[int, int]] = []
    for start, stop in zip(flips[::2].tolist(), flips[1::2].tolist(), strict=True):
        if out and start - out[-1][1] < join:
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


def _uniform_colour(image: Image) -> Colour | None:
    first = image[0, 0]
    if not (image == first).all():
        return None
    return float(first[0]), float(first[1]), float(first[2]), 0.0


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
        self._colour_cache: tuple[Image, Colour | None] | None = None  # the still background's colour, if one
        # The still background in float and at the coarse size, made once (keyed by the picture itself).
        self._float_cache: tuple[Image, Planes] | None = None
        self._small_cache: tuple[Image, FloatImage] | None = None
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
        alpha = alpha.astype(np.float32, copy=False)
        if alpha.min() < 0.0 or alpha.max() > 1.0:  # numpy's reductions: ~2.5x faster than cv2.minMaxLoc here
            alpha = np.clip(alpha, 0.0, 1.0)
        background = self._background(image)
        small_alpha = np.asarray(cv2.resize(alpha, self._small_size(), interpolation=cv2.INTER_AREA), np.float32)
        result = background.copy()
        box = self._person_box(small_alpha)
        if box is None:
            return cv2.flip(result, 1) if self.mirror else result
        edges = self._edge_inputs(alpha, small_alpha, background, box)
        bg_float = self._still_colour(background) or self._background_float(background)
        # A small box: the parts' own calls (~25 each) would cost more than the pixels they leave out.
        parts = self._edge_parts(small_alpha, box, edges) if _area(box) >= _PARTS_FROM else None
        if parts is None:
            ys, xs = box
            parts = [(slice(y0, min(y0 + _STRIP, ys.stop)), xs) for y0 in range(ys.start, ys.stop, _STRIP)]
        else:
            # Off the parts a block is all 0 (the background) or all 1, the person's pixel: an average of 1 in
            # float32 leaves each pixel within 1e-6 of 1, which the blend rounds to the person's pixel too.
            ys, xs = box
            opaque = cv2.compare(small_alpha[ys.start // _SMALL : ys.stop // _SMALL, xs.start // _SMALL : xs.stop // _SMALL],
                                 1.0, cv2.CMP_GE)
            opaque = cv2.resize(opaque, (xs.stop - xs.start, ys.stop - ys.start), interpolation=cv2.INTER_NEAREST)
            result[box] = cv2.copyTo(image[box], opaque, result[box])
        # Strips of rows keep the temporaries in the core's cache (these passes are memory-bound).
        for part in parts:
            self._compose_part(result, image, alpha, bg_float, box, part, edges)
        return cv2.flip(result, 1) if self.mirror else result

    def _edge_parts(self, small_alpha: FloatImage, box: tuple[slice, slice], edges: _EdgeInputs) -> list[tuple[slice, slice]] | None:
        """The parts of the box (runs of columns in strips of rows) that hold all its `_edge_blocks`; None: compose
        the whole box (a frame off the coarse grid)."""
        blocks = self._edge_blocks(small_alpha, box, edges)
        if blocks is None:
            return None
        ys, xs = box
        rows = _PART_ROWS // _SMALL
        parts: list[tuple[slice, slice]] = []
        for r0 in range(0, blocks.shape[0], rows):
            strip = slice(ys.start + r0 * _SMALL, min(ys.start + (r0 + rows) * _SMALL, ys.stop))
            for c0, c1 in _runs(blocks[r0 : r0 + rows].any(axis=0), _JOIN):
                parts.append((strip, slice(xs.start + c0 * _SMALL, xs.start + c1 * _SMALL)))
        return parts

    def _edge_blocks(self, small_alpha: FloatImage, box: tuple[slice, slice], edges: _EdgeInputs) -> npt.NDArray[np.bool_] | None:
        """Per coarse block of the box: True where a pixel may have 0 < alpha < 1, lie on the despill band or within
        the light wrap's reach (None off the coarse grid). Everywhere else alpha is 0 or 1 and the person's
        colours are its own, so the picture is the background's pixel or the person's: most of a person is
        opaque, and the float passes need only run on the ring around its edge."""
        w, h = self.size
        if w % _SMALL or h % _SMALL:
            return None
        ys, xs = box
        small = small_alpha[ys.start // _SMALL : ys.stop // _SMALL, xs.start // _SMALL : xs.stop // _SMALL]
        # A block averaging strictly between 0 and 1 holds a soft pixel or both 0 and 1; the despill band lies
        # within 2 pixels of a pixel with 0.02 < alpha < 0.98, so within the blocks next to such a block.
        blocks = cv2.dilate(cv2.bitwise_and(cv2.compare(small, 0.0, cv2.CMP_GT), cv2.compare(small, 1.0, cv2.CMP_LT)),
                            np.ones((3, 3), np.uint8)) > 0
        if edges.outside is not None:
            # The wrap's weight is `outside` upsampled bilinearly (never above the largest of a frame pixel's 3x3
            # coarse neighbours) x alpha (<= 1) x light_wrap; where that bound is under half the floor, no weight.
            reach = cv2.dilate(edges.outside, np.ones((3, 3), np.uint8)) > 0.5 * _WRAP_FLOOR / self.edges.light_wrap
            blocks |= reach[ys.start // _SMALL : ys.stop // _SMALL, xs.start // _SMALL : xs.stop // _SMALL]
        # Where alpha is 0 the picture is the background's whatever the person's colours are (a block averages
        # above 0 exactly when one of its pixels is).
        blocks &= small > 0
        return blocks

    def _compose_part(self, result: Image, image: Image, alpha: Alpha, bg_float: Planes | Colour, box: tuple[slice, slice],
                      part: tuple[slice, slice], edges: _EdgeInputs) -> None:
        """bg + alpha (fg - bg) over `part`, fg the person's colours despilled on the band and lit by the light wrap.

        Colour by colour on planes: the alpha and the wrap's weight multiply each plane as they are, where a
        3-channel pass first needs them copied into three channels (and despill's planes merged), the per-pixel
        arithmetic unchanged."""
        ys, xs = box
        inner = (slice(part[0].start - ys.start, part[0].stop - ys.start), slice(part[1].start - xs.start, part[1].stop - xs.start))
        fg = despilled(image[part], edges.band[inner]) if edges.band is not None else _float_planes(cv2.split(image[part]))
        a = alpha[part]
        if edges.outside is not None and edges.light is not None:
            weight = cv2.multiply(self._upsample(edges.outside, part), a, scale=self.edges.light_wrap)
            _, weight = cv2.threshold(weight, _WRAP_FLOOR, 0.0, cv2.THRESH_TOZERO)
            lights = [self._upsample(c, part) if isinstance(c, np.ndarray) else c for c in edges.light[:3]]
            b, g, r = (cv2.add(plane, cv2.multiply(cv2.subtract(light, plane), weight)) for plane, light in zip(fg, lights, strict=True))
            fg = b, g, r
        # bg + alpha (fg - bg), rounded like cv2.blendLinear (which takes a slow path for this); a background of one
        # colour as scalars (the same float32 per pixel, without reading the frame-sized float copy)
        bgs = [c[part] if isinstance(c, np.ndarray) else c for c in bg_float[:3]]
        result[part] = cv2.merge([cv2.convertScaleAbs(cv2.add(cv2.multiply(cv2.subtract(plane, bg), a), bg))
                                  for plane, bg in zip(fg, bgs, strict=True)])

    def _person_box(self, small_alpha: FloatImage) -> tuple[slice, slice] | None:
        """The frame box holding every pixel with alpha > 0, on the coarse grid; outside it the output is the background.

        An area-averaged coarse pixel is > 0 exactly when one of its pixels is, so the coarse alpha finds the box.
        """
        w, h = self.size
        if w % _SMALL or h % _SMALL:
            return (slice(0, h), slice(0, w))
        x, y, bw, bh = cv2.boundingRect(np.asarray(small_alpha > 0, np.uint8))
        if bw == 0 or bh == 0:
            return None
        return slice(y * _SMALL, (y + bh) * _SMALL), slice(x * _SMALL, (x + bw) * _SMALL)

    def _background_float(self, background: Image) -> Planes:
        cached = self._float_cache
        if cached is not None and cached[0] is background:
            return cached[1]
        result = _float_planes(cv2.split(background))
        if background is self._still:
            self._float_cache = (background, result)
        return result

    def _edge_inputs(self, alpha: Alpha, small_alpha: FloatImage, background: Image, box: tuple[slice, slice]) -> _EdgeInputs:
        """The despill band over the person's box, and the light wrap's coarse maps.

        Despill changes only the band (a green sweater inside the person keeps its colour).
        """
        band = None
        if self.edges.despill:
            # Pixels outside the box have alpha 0, so the band is found and dilated within the box alone.
            a = alpha[box]
            soft = cv2.bitwise_and(cv2.compare(a, 0.02, cv2.CMP_GT), cv2.compare(a, 0.98, cv2.CMP_LT))
            band = cv2.dilate(soft, np.ones((5, 5), np.uint8))
        if self.edges.light_wrap <= 0:
            return _EdgeInputs(band, None, None)
        outside = np.asarray(cv2.GaussianBlur(1.0 - small_alpha, (0, 0), self._sigma()), np.float32)
        return _EdgeInputs(band, outside, self._wrap_light(small_alpha, background, outside))

    def _upsample(self, small: FloatImage, box: tuple[slice, slice]) -> FloatImage:
        """The coarse image resized to the frame, inside `box` only."""
        w, h = self.size
        if w % _SMALL or h % _SMALL:
            return np.asarray(cv2.resize(small, self.size, interpolation=cv2.INTER_LINEAR)[box], np.float32)
        return _upsample_box(small, box, _SMALL)

    def _wrap_light(self, small_alpha: FloatImage, background: Image, outside: FloatImage) -> Planes | Colour:
        """The background's light around the person at the coarse size (normalised blur of the visible background).

        A background of one colour c: blur(c x visible) / blur(visible) is c up to float rounding wherever
        blur(visible) = `outside` passes the division's 1e-3 floor, and short of c only below it, where the wrap's
        weight (`outside` upsampled x alpha x light_wrap, nothing under _WRAP_FLOOR) is all but nothing. So c
        itself, without the 3-channel blur (1.3 ms of 10 at 1280x720) and the per-part upsampling of the light:
        weight x |light - c| measured at most 0.008 grey levels at 640x480 and 2e-5 at 1280x720 (two clips, three
        colours), and 0-9 pixels of 18 million composed 1 level apart."""
        colour = self._still_colour(background)
        if colour is not None:
            return colour
        visible = cv2.merge([1.0 - small_alpha] * 3)
        light = cv2.GaussianBlur(cv2.multiply(self._background_small(background), visible), (0, 0), self._sigma())
        b, g, r = cv2.split(cv2.divide(light, cv2.merge([np.maximum(outside, np.float32(1e-3))] * 3)))
        return b, g, r

    def _still_colour(self, background: Image) -> Colour | None:
        """The background's colour when it is a still one of a single colour, else None."""
        if background is not self._still:
            return None
        cached = self._colour_cache
        if cached is None or cached[0] is not background:
            cached = self._colour_cache = (background, _uniform_colour(background))
        return cached[1]

    def _background_small(self, background: Image) -> FloatImage:
        cached = self._small_cache
        if cached is not None and cached[0] is background:
            return cached[1]
        result = cv2.resize(background, self._small_size(), interpolation=cv2.INTER_AREA).astype(np.float32)
        if background is self._still:
            self._small_cache = (background, result)
        return result

    def _small_size(self) -> tuple[int, int]:
        w, h = self.size
        return max(1, w // _SMALL), max(1, h // _SMALL)

    def _sigma(self) -> float:
        return max(0.8, self.edges.wrap_radius * float(np.hypot(*self.size)) / 4)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
