"""The keyframe that carries only the person (issue 11, deliverable 2).

* `person_only(image, alpha, pad)`: the matte's bounding box (grown by `pad`), with every pixel outside
  the matte, eroded by a pixel or two, replaced by a push-pull fill grown from the person's own colours.
  The erosion matters: the matte's soft edge (hair) holds room colour, which would come back as a light
  halo once the keyframe is composited over another background.
* `encode_person(person, max_bytes)`: AVIF through Pillow at the highest quality whose bytes fit, found
  in a few encodes; `decode_person(data, box, frame_size, background)` puts the person back at frame
  size after checking the AVIF's declared size against the box (a hostile file is refused before any
  pixel is allocated).
* `encode_keyframe_alpha` / `decode_keyframe_alpha`: the keyframe's matte in the same box (what the
  receiver warps every frame to predict the matte): a grayscale AVIF at half resolution, ~1 KB.

Every decoder raises facewire.shared.codec.predictive.PayloadError on bytes it cannot trust (images through
facewire.shared.codec.images: magic and declared size checked before decoding).
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from facewire.shared.codec import av1still
from facewire.shared.codec.images import decode_image
from facewire.shared.codec.predictive import PayloadError
from facewire.shared.types import Alpha, Image

Box = tuple[int, int, int, int]  # x, y, width, height in frame pixels
Colour = tuple[int, int, int]  # BGR

MAX_SIDE = 4096  # of a frame
MAX_KEYFRAME_BYTES = 3 * 1024 * 1024
KNOWN_THRESHOLD = 0.5  # a pixel is the person's own colour where alpha exceeds this (after erosion)
BOX_THRESHOLD = 0.02  # the person's box holds every pixel whose alpha exceeds this
AVIF_SPEED = 9  # libavif (aom) speed: ~12 ms for a 512x512 person on one core; 8 gives the same bytes and SSIM in
# ~30 ms, 6 ~15% fewer bytes at equal SSIM in ~110-160 ms (8 clips, REPORT.md)
MIN_QUALITY, MAX_QUALITY = 5, 95
COARSER_BELOW_QUALITY, COARSER_GAIN = 15, 15
_BYTES_PER_QUALITY = math.log(2.0) / 21.0  # AVIF bytes double about every 21 quality steps (speed 9, 8 clips)


# ---------------------------------------------------------------------------------------------- person
@dataclass(frozen=True)
class PersonImage:
    image: Image  # the box's pixels; outside the (eroded) matte a fill made of the person's own colours
    box: Box  # where the crop sits in the frame
    frame_size: tuple[int, int]  # width, height of the frame it came from


def _check_image(image: Image, alpha: Alpha) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    if alpha.shape != image.shape[:2]:
        raise ValueError(f"alpha is {alpha.shape}, image {image.shape[:2]}")


def person_box(alpha: Alpha, pad: int) -> Box:
    """The bounding box of alpha > BOX_THRESHOLD grown by `pad`, clipped to the frame, sides made even
    (AVIF subsamples chroma by two). Raises ValueError when the matte is empty."""
    h, w = alpha.shape
    mask = (alpha > BOX_THRESHOLD).astype(np.uint8)
    x, y, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        raise ValueError("the matte holds no person")
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(w, x + bw + pad), min(h, y + bh + pad)
    if (x1 - x0) % 2:
        x1, x0 = (x1 + 1, x0) if x1 < w else (x1, x0 - 1) if x0 > 0 else (x1 - 1, x0)
    if (y1 - y0) % 2:
        y1, y0 = (y1 + 1, y0) if y1 < h else (y1, y0 - 1) if y0 > 0 else (y1 - 1, y0)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the matte's box is empty")
    return x0, y0, x1 - x0, y1 - y0


def push_pull_fill(image: Image, known: npt.NDArray[np.bool_]) -> Image:
    """`image` where `known`, elsewhere a smooth fill grown from the known pixels only (push-pull: a
    pyramid of known-weighted averages, filled back from the coarsest level). Unknown pixels' own values
    never enter the result."""
    weight = known.astype(np.float32)
    colour = image.astype(np.float32) * weight[..., None]
    levels: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = [(colour, weight)]
    while min(levels[-1][1].shape) > 1:
        c, a = levels[-1]
        levels.append((cv2.pyrDown(c), cv2.pyrDown(a)))
    c, a = levels[-1]
    filled = c / np.maximum(a, 1e-8)[..., None]
    for c, a in reversed(levels[:-1]):
        up = cv2.pyrUp(filled, dstsize=(a.shape[1], a.shape[0]))
        if up.ndim == 2:  # OpenCV drops a 1-pixel-wide 3-channel axis back to 2-D only for 1 channel; keep 3
            up = up[..., None]
        w = np.clip(a, 0.0, 1.0)[..., None]
        filled = (c / np.maximum(a, 1e-8)[..., None]) * w + up * (1.0 - w)
    out = np.where(known[..., None], image, np.clip(filled + 0.5, 0, 255).astype(np.uint8))
    return np.ascontiguousarray(out, dtype=np.uint8)


def person_only(image: Image, alpha: Alpha, pad: int = 8, erode: int = 2) -> PersonImage:
    """The person's box with nothing of the room: pixels outside alpha > 0.5 eroded by `erode` pixels are
    replaced by the push-pull fill. A room pixel survives only inside that eroded matte."""
    _check_image(image, alpha)
    x, y, w, h = person_box(alpha, pad)
    crop = image[y:y + h, x:x + w]
    inside = (alpha[y:y + h, x:x + w] > KNOWN_THRESHOLD).astype(np.uint8)
    if erode > 0:
        # replicated border: a body cut by the frame's edge goes on past it (inside the frame the box is padded)
        eroded = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1)),
                           borderType=cv2.BORDER_REPLICATE)
        inside = eroded if eroded.any() else inside  # a sliver of a matte: keep what there is
    if not inside.any():
        raise ValueError("the matte holds no pixel above 0.5")
    return PersonImage(push_pull_fill(crop, inside.astype(bool)), (x, y, w, h), (image.shape[1], image.shape[0]))


# ------------------------------------------------------------------------------------------------ AVIF
class KeyframeTooLarge(ValueError):
    """Even the lowest quality does not fit the byte budget; `needed`: the fewest bytes an encode took."""

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


def _avif(image: Image, quality: int, speed: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(image[..., ::-1])).save(
        buf, format="AVIF", quality=int(quality), speed=speed, max_threads=1)
    return buf.getvalue()


@dataclass(frozen=True)
class EncodedPerson:
    data: bytes
    quality: int
    encodes: int  # how many AVIF encodes the search took
    scale: int = 1  # the picture is the box at 1/scale


def scaled_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """A box's picture size at 1/scale, rounded up."""
    return -(-width // scale), -(-height // scale)


def encode_person_scaled(person: PersonImage, max_bytes: int, *, start: int = 40, max_quality: int = MAX_QUALITY,
                         scale: int = 1, max_scale: int = 4, measure: Callable[[bytes], int] = len) -> EncodedPerson:
    """The person at the finest scale from `scale` up (1, 2, 4 ...) that fits `max_bytes` at some quality:
    on a thin link a softer picture beats none. A scale that fits only below COARSER_BELOW_QUALITY gives way to
    the next coarser one when that fits COARSER_GAIN qualities higher (d0's first keyframe at 6 kbps: 1183 B at
    full scale took quality 5, blocks over the eyes; half scale at quality 21-30 looked as good or better).
    Raises KeyframeTooLarge when even `max_scale` does not fit."""
    found: EncodedPerson | None = None
    while True:
        try:
            attempt = _encode_at(person, scale, max_bytes, start, max_quality, measure)
        except KeyframeTooLarge:
            if found is not None:
                return found
            if scale * 2 > max_scale:
                raise
            scale *= 2
            continue
        if found is not None:  # this attempt is the coarser scale tried for a low-quality fit
            return attempt if attempt.quality >= found.quality + COARSER_GAIN else found
        found = attempt
        if found.quality >= COARSER_BELOW_QUALITY or scale * 2 > max_scale:
            return found
        scale *= 2


def _encode_at(person: PersonImage, scale: int, max_bytes: int, start: int, max_quality: int,
               measure: Callable[[bytes], int]) -> EncodedPerson:
    h, w = person.image.shape[:2]
    image = person.image if scale == 1 else np.asarray(
        cv2.resize(person.image, scaled_size(w, h, scale), interpolation=cv2.INTER_AREA), np.uint8)
    # A coarser scale's encodes cost a quarter of the finer one's, so it gets as many: with 3, a search
    # from quality 40 that missed twice had to try the lowest quality (d6's first keyframe at 6 kbps:
    # q28 1216 B over a 1200-B budget, then q5 748 B, where q27 fitted).
    found = encode_person_search(dataclasses.replace(person, image=image), max_bytes, start=start,
                                 max_quality=max_quality, max_encodes=5, measure=measure)
    return dataclasses.replace(found, scale=scale)


def encode_person_search(person: PersonImage, max_bytes: int, *, speed: int = AVIF_SPEED, start: int = 40,
                         min_quality: int = MIN_QUALITY, max_quality: int = MAX_QUALITY,
                         max_encodes: int = 5, measure: Callable[[bytes], int] = len) -> EncodedPerson:
    """`encode_person` with the search's cost: at most `max_encodes` AVIF encodes (~60 ms each at 512x512).

    Bytes grow about exponentially with quality: each guess solves log(bytes) = a + b*quality, between the
    best fit and the lowest miss once both are known, else on the two nearest points (a typical slope
    while only one is known). The search stops one quality step short of the best at most. The lowest
    quality is tried only when nothing fits, so a refusal costs at most the encodes spent looking.
    `measure`: what an AVIF costs the link (`raw_bytes` where the container does not travel).
    """
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    if not MIN_QUALITY <= min_quality <= max_quality <= 100 or max_encodes < 2:
        raise ValueError("quality range or encode count out of range")
    tried: dict[int, int] = {}
    data_by_q: dict[int, bytes] = {}
    budget = math.log(max_bytes)
    q = min(max(start, min_quality), max_quality)
    while True:
        data_by_q[q] = _avif(person.image, q, speed)
        tried[q] = measure(data_by_q[q])
        fits = [k for k, n in tried.items() if n <= max_bytes]
        misses = [k for k, n in tried.items() if n > max_bytes]
        best, miss = max(fits, default=None), min(misses, default=None)
        lo = min_quality - 1 if best is None else best
        hi = max_quality + 1 if miss is None else miss
        # one quality step short of the best is not worth an encode (libavif has ~64 quantisers for 101 steps)
        if hi - lo <= 1 or (best is not None and hi - lo <= 2) or (best is None and miss == min_quality):
            break
        if len(tried) == max_encodes:
            break
        if best is not None and miss is not None:  # bracketed: interpolate log(bytes) between fit and miss
            la, lb = math.log(tried[best]), math.log(tried[miss])
            guess = best + (budget - la) * (miss - best) / (lb - la) if lb > la else (best + miss) / 2
        else:  # one side only: extrapolate from the nearest two points (a typical slope while one is known)
            near = sorted(tried, key=lambda k: abs(k - q))[:2]
            slope = _BYTES_PER_QUALITY
            if len(near) == 2 and tried[near[0]] != tried[near[1]]:
                slope = max((math.log(tried[near[0]]) - math.log(tried[near[1]])) / (near[0] - near[1]), 1e-3)
            aim = budget if best is not None else budget + math.log(0.95)  # going down, land a fit
            guess = q + (aim - math.log(tried[q])) / slope
        nxt = min(max(int(math.floor(guess)), lo + 1), hi - 1)
        if best is None and len(tried) == max_encodes - 1:
            nxt = min_quality  # the last encode decides whether anything fits at all
        if nxt in tried:
            nxt = (lo + hi) // 2
        q = nxt
    if best is None:
        smallest = min(tried.items(), key=lambda item: item[1])
        raise KeyframeTooLarge(
            f"the person's keyframe ({person.image.shape[1]}x{person.image.shape[0]}) needs {smallest[1]} bytes "
            f"at quality {smallest[0]}, over the budget of {max_bytes}" +
            ("" if min_quality in tried else f" (quality {min_quality} was not tried: raise max_encodes)"), smallest[1])
    return EncodedPerson(data_by_q[best], best, len(tried))


def encode_person(person: PersonImage, max_bytes: int, *, speed: int = AVIF_SPEED, start: int = 40,
                  min_quality: int = MIN_QUALITY, max_quality: int = MAX_QUALITY, max_encodes: int = 5) -> tuple[bytes, int]:
    """(AVIF bytes, quality): the highest quality found (within `max_encodes` encodes) whose bytes fit
    `max_bytes`; raises KeyframeTooLarge when none does. `start` is the first guess (pass the quality the
    last keyframe got to save an encode)."""
    found = encode_person_search(person, max_bytes, speed=speed, start=start, min_quality=min_quality,
                                 max_quality=max_quality, max_encodes=max_encodes)
    return found.data, found.quality


def check_box(box: Box, frame_size: tuple[int, int]) -> None:
    """Raises PayloadError unless `box` lies inside a frame of `frame_size` (width, height) no larger than MAX_SIDE."""
    fw, fh = frame_size
    x, y, w, h = box
    if not (0 < fw <= MAX_SIDE and 0 < fh <= MAX_SIDE):
        raise PayloadError(f"frame of {fw}x{fh} is out of range", "width")
    if not (w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= fw and y + h <= fh):
        raise PayloadError(f"box {box} does not lie inside the {fw}x{fh} frame", "box")


def _open_checked(data: bytes, fmt: str, mode: Literal["RGB", "L"], box: Box, what: str,
                  scale: int = 1) -> npt.NDArray[np.uint8]:
    """The image in `data` decoded only after its magic matched `fmt` and its declared size the box's at 1/scale
    (`av1`: a still picture's OBUs, checked, then decoded as the AVIF they came out of)."""
    if len(data) > MAX_KEYFRAME_BYTES:
        raise PayloadError(f"keyframe image of {len(data)} bytes is over {MAX_KEYFRAME_BYTES}", what)
    size = scaled_size(box[2], box[3], scale)
    if fmt == AV1:
        head = av1still.still_header(data, what)
        if (head.width, head.height) != size:
            raise PayloadError(f"image declares {head.width}x{head.height}, expected {size[0]}x{size[1]}", what)
        if head.monochrome != (mode == "L"):
            raise PayloadError(f"a {'greyscale' if mode == 'L' else 'colour'} picture was expected", what)
        data, fmt = av1still.wrap(data, what), "avif"
    return decode_image(data, fmt, what, mode=mode, size=size)


# Keyframe pictures in the `keyframe-av1` form (protocol.md 7.3): the AVIF's OBUs without its container.
AV1: Final = "av1"


def raw_bytes(avif: bytes) -> int:
    """What an AVIF costs the link where the container does not travel (`keyframe-av1`)."""
    return len(raw_picture(avif)[0])


def raw_picture(avif: bytes) -> tuple[bytes, Literal["avif", "av1"]]:
    """A keyframe's picture for a session with `keyframe-av1`, and its `image_format`: the OBUs, or the AVIF as it
    is when the container is not the one the receiver rebuilds."""
    obus = av1still.strip(avif)
    return (avif, "avif") if obus is None else (obus, AV1)


def decode_person(data: bytes, box: Box, frame_size: tuple[int, int], background: Image | Colour | None = None,
                  scale: int = 1, fmt: str = "avif") -> Image:
    """The keyframe at frame size: the AVIF person (the box at 1/scale, brought back to the box's size) put
    in its box over `background` (an image of the frame's size, a BGR colour, or None: the box's edges
    replicated, i.e. more of the person's own fill, which is what a warp reading past the box should find)."""
    check_box(box, frame_size)
    if not 1 <= scale <= 4:
        raise PayloadError(f"keyframe scale {scale} is out of range", "scale")
    rgb = _open_checked(data, fmt, "RGB", box, "image", scale)
    crop = np.ascontiguousarray(rgb[..., ::-1])
    x, y, w, h = box
    if scale > 1:
        crop = np.asarray(cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC), np.uint8)
    fw, fh = frame_size
    if background is None:
        return np.asarray(cv2.copyMakeBorder(crop, y, fh - y - h, x, fw - x - w, cv2.BORDER_REPLICATE), np.uint8)
    if isinstance(background, np.ndarray):
        if background.shape != (fh, fw, 3) or background.dtype != np.uint8:
            raise ValueError(f"background must be {fh}x{fw}x3 uint8")
        out = background.copy()
    else:
        out = np.empty((fh, fw, 3), np.uint8)
        out[...] = np.asarray(background, np.uint8)
    out[y:y + h, x:x + w] = crop
    return out


# ----------------------------------------------------------------------------------------------- alpha
ALPHA_VERSION = 1
RAW_ALPHA_VERSION = 2  # `keyframe-av1`: the grayscale AVIF's OBUs without its container
_ALPHA_HEAD = struct.Struct("<BB")  # version, factor; then an 8-bit grayscale AVIF of the box at 1/factor
ALPHA_FACTOR = 2
ALPHA_QUALITY = 30
# Measured on 3 frames of each of the 8 clips (REPORT.md): grayscale AVIF beats a quantised low-res matte
# + zstd at every size (1/2, q30: ~1.0 KB, IoU 0.9965, MAD 0.0031; 1/4 with 16 levels + zstd: 0.9 KB for
# MAD 0.0037; today's full-frame PNG: 15.7 KB). Plain bilinear upsampling: steepening the edge, which
# helps at 1/8, made every 1/2 and 1/4 code worse on these soft mattes.


def _lowres(size: tuple[int, int], factor: int) -> tuple[int, int]:
    return max(1, -(-size[0] // factor)), max(1, -(-size[1] // factor))


def encode_keyframe_alpha(alpha: Alpha, box: Box, factor: int = ALPHA_FACTOR, quality: int = ALPHA_QUALITY,
                          speed: int = AVIF_SPEED) -> bytes:
    """The keyframe's matte inside `box`: area-downsampled by `factor`, 8 bits, grayscale AVIF."""
    if not (1 <= factor <= 8 and 0 <= quality <= 100):
        raise ValueError("alpha factor must lie in [1, 8] and quality in [0, 100]")
    check_box(box, (alpha.shape[1], alpha.shape[0]))
    x, y, w, h = box
    crop = np.ascontiguousarray(alpha[y:y + h, x:x + w], dtype=np.float32)
    small = cv2.resize(crop, _lowres((w, h), factor), interpolation=cv2.INTER_AREA) if factor > 1 else crop
    grey = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="AVIF", quality=quality, speed=speed, max_threads=1)
    return _ALPHA_HEAD.pack(ALPHA_VERSION, factor) + buf.getvalue()


def raw_alpha(data: bytes) -> bytes:
    """A keyframe's alpha code for a session with `keyframe-av1`: version 2, its AVIF's OBUs, when the container is
    the one the receiver rebuilds (else as it is)."""
    version, factor = _ALPHA_HEAD.unpack_from(data)
    obus = av1still.strip(data[_ALPHA_HEAD.size:]) if version == ALPHA_VERSION else None
    return data if obus is None else _ALPHA_HEAD.pack(RAW_ALPHA_VERSION, factor) + obus


def decode_keyframe_alpha(data: bytes, box: Box, frame_size: tuple[int, int]) -> Alpha:
    """The keyframe's matte at frame size (0 outside the box), upsampled bilinearly into the box."""
    check_box(box, frame_size)
    if len(data) <= _ALPHA_HEAD.size:
        raise PayloadError("keyframe alpha shorter than its header", "alpha")
    version, factor = _ALPHA_HEAD.unpack_from(data)
    if version not in (ALPHA_VERSION, RAW_ALPHA_VERSION) or not 1 <= factor <= 8:
        raise PayloadError(f"keyframe alpha version {version}, factor {factor} not supported", "alpha")
    x, y, w, h = box
    sw, sh = _lowres((w, h), factor)
    fmt = "avif" if version == ALPHA_VERSION else AV1
    grey = _open_checked(data[_ALPHA_HEAD.size:], fmt, "L", (0, 0, sw, sh), "alpha")
    small = grey.astype(np.float32) * np.float32(1.0 / 255.0)
    if factor > 1:
        small = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((frame_size[1], frame_size[0]), np.float32)
    out[y:y + h, x:x + w] = small
    return out
