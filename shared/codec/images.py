"""Image files from a peer (`keyframe.image`, `keyframe.alpha`, `identity.image`), decoded with bounds.

Only the formats protocol.md names are decoded (`image_format`: avif, webp, jpeg, png), each by its
own Pillow plugin and only when the bytes carry that format's magic: a TIFF, JPEG 2000 or any other
file in `webp` clothing reaches no decoder. The header's declared size is checked against the
caller's bounds before a pixel is allocated, so a 100-byte PNG that claims 70000x70000 costs nothing.
Every failure, whatever the library raises (OSError, ValueError, MemoryError, Pillow's bomb checks),
comes out as `PayloadError`, which the receiver answers with an `error` naming the field.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import AvifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin
from PIL import Image as PILImage

from facewire.shared.codec.predictive import PayloadError

ImageFormat = Literal["avif", "webp", "jpeg", "png"]
FORMATS: tuple[ImageFormat, ...] = ("avif", "webp", "jpeg", "png")
_PLUGIN = {"avif": "AVIF", "webp": "WEBP", "jpeg": "JPEG", "png": "PNG"}
# Imported by name, each plugin registers itself: Pillow then never runs `Image.init()`, which imports all of
# its ~45 plugins (80-100 ms, on the first keyframe's path on both sides, delaying a session's first picture).
_REGISTERED = (AvifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin)
MAX_IMAGE_BYTES = 3 * 1024 * 1024
# 8.4 Mpx: a 3840x2160 frame fits; decoded as RGB (Pillow keeps 4 bytes a pixel) plus the array handed
# back, a largest image costs ~60 MiB at peak.
MAX_PIXELS = 4096 * 2048
MAX_IDENTITY_PIXELS = 2048 * 2048  # an avatar's face is a few hundred pixels across; this is plenty
# Pillow lets a PNG's compressed text chunks expand to 64 MiB in all; a peer's avatar needs none of it.
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 1024 * 1024)


def sniff(data: bytes) -> ImageFormat | None:
    """The format whose magic `data` starts with, among the protocol's, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and _has_avif_brand(data):
        return "avif"
    return None


def _has_avif_brand(data: bytes) -> bool:
    """ISOBMFF `ftyp` box: major brand at 8, then compatible brands up to the box's size."""
    size = int.from_bytes(data[:4], "big")
    if not 16 <= size <= min(len(data), 256):
        return False
    brands = {data[i:i + 4] for i in range(8, size, 4) if i != 12}  # 12..16 is the minor version
    return bool(brands & {b"avif", b"avis"})


def decode_image(data: bytes, fmt: str, what: str, *, mode: Literal["RGB", "L"] = "RGB",
                 size: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """The pixels of `data` (HxWx3 RGB, or HxW for mode "L"), decoded only if its magic says `fmt` and its
    header declares `size` (width, height) when given, else at most `max_pixels`. Raises PayloadError
    naming `what` (the message field)."""
    if fmt not in _PLUGIN:
        raise PayloadError(f"image format {fmt!r} is not one of {list(FORMATS)}", what)
    if not 0 < len(data) <= MAX_IMAGE_BYTES:
        raise PayloadError(f"image of {len(data)} bytes is out of range", what)
    found = sniff(data)
    if found != fmt:
        raise PayloadError(f"image declared {fmt} holds {found or 'an unknown format'}", what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(data), formats=[_PLUGIN[fmt]])  # reads the header only
            width, height = picture.size
            if size is not None and (width, height) != size:
                raise PayloadError(f"image declares {width}x{height}, expected {size[0]}x{size[1]}", what)
            if width < 1 or height < 1 or width * height > max_pixels:
                raise PayloadError(f"image declares {width}x{height}, over the limit of {max_pixels} pixels", what)
            picture.load()
            pixels = np.array(picture if picture.mode == mode else picture.convert(mode), np.uint8)
    except PayloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise a spread of types on damaged files (OSError,
        # SyntaxError, EOFError, RuntimeError from the AVIF decoder, MemoryError, the bomb checks): all mean this
        raise PayloadError(f"image does not decode: {type(exc).__name__}: {exc}", what) from None
    if pixels.shape[:2] != (height, width):
        raise PayloadError(f"image decoded to {pixels.shape[1]}x{pixels.shape[0]}, it declared {width}x{height}", what)
    return pixels
