"""Hostile payloads for the decoders a peer's bytes reach (tests/test_bounded_decoding.py, bench/faults.py).

Each is well-formed up to the one lie that would cost a careless receiver its memory or reach a
decoder it never meant to run.
"""

from __future__ import annotations

import io
import struct
import zlib

import zstandard
from PIL import Image as PILImage

GIB = 1 << 30


def zstd_bomb(size: int = GIB) -> bytes:
    """One zstd frame that declares and holds `size` zero bytes (1 GiB: ~32 KiB)."""
    stream = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=size)
    chunk = bytes(min(size, 1 << 20))
    parts = [stream.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + stream.compress(bytes(size % len(chunk))) + stream.flush()


def landmark_code(body: bytes, points: int = 478) -> bytes:
    """A landmark code (protocol.md 7.1) around `body`: intra, wide, so `points` x 3 int16 are expected."""
    return struct.pack("<BBH", 1, 1 | 2, points) + body


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims width x height RGB pixels (its IDAT holds a few rows only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (3 * 1024), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def tiff(size: tuple[int, int] = (64, 64)) -> bytes:
    """A TIFF file: sent as `webp`, it must reach no decoder."""
    buf = io.BytesIO()
    PILImage.new("RGB", size, (10, 200, 30)).save(buf, format="TIFF")
    return buf.getvalue()
