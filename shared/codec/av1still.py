"""A still AV1 picture without its AVIF container (message form `keyframe-av1`, protocol.md 3.3 and 7.3).

An AVIF file from libavif is ~270 bytes of ISOBMFF boxes (ftyp, meta, the mdat's header) around a few
hundred to a few thousand bytes of AV1: a keyframe carries two (picture and matte), ~540 bytes, a quarter
of a second of a 16-kbps link. Everything in those boxes follows from the AV1 sequence header (size,
profile, monochrome) and from constants (libavif's colour description for RGB input), so the wire carries
the OBUs alone and the receiver puts the same boxes back around them and decodes the AVIF as before:

* `strip(avif)`: the OBUs, when `wrap` rebuilds exactly that file from them (else None: the sender sends
  the AVIF; a libavif that writes other boxes costs the saving, never the picture);
* `still_header(obus)`: the sequence header's fields, checked (a reduced still-picture header of profile 0
  at 8 bits, the first OBU after an optional temporal delimiter) before anything is allocated;
* `wrap(obus)`: the AVIF file, for Pillow's decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from facewire.shared.codec.predictive import PayloadError
from facewire.shared.wire.varint import VarintError, read_uvarint

_OBU_TEMPORAL_DELIMITER = 2
_OBU_SEQUENCE_HEADER = 1
MAX_SEQUENCE_HEADER_BYTES = 64  # a reduced still-picture header is ~10 bytes
# libavif's `colr` for RGB (and greyscale) input: BT.709 primaries, sRGB transfer, BT.601 matrix, full range
_NCLX = struct.pack(">4sHHHB", b"nclx", 1, 13, 6, 0x80)


@dataclass(frozen=True)
class StillHeader:
    width: int
    height: int
    monochrome: bool
    level: int  # seq_level_idx[0]
    chroma_sample_position: int
    header_end: int  # where the sequence header OBU ends in the bytes


class _Bits:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise PayloadError("AV1 sequence header cut short", self.what)
            value = value << 1 | (self.data[byte] >> (7 - (self.pos & 7))) & 1
            self.pos += 1
        return value


def _obu(data: bytes, at: int, what: str) -> tuple[int, int, int]:
    """(type, payload start, payload end) of the OBU at `at`: no extension, a size field, inside `data`."""
    if at >= len(data):
        raise PayloadError("AV1 data ends before its sequence header", what)
    head = data[at]
    kind = head >> 3 & 0x0F
    if head & 0x80 or head & 0x04 or not head & 0x02 or head & 0x01:
        raise PayloadError(f"AV1 OBU header {head:#04x}: forbidden bit, extension, reserved bit or no size field", what)
    try:
        size, start = read_uvarint(data, at + 1, 8)  # AV1's leb128 is at most 8 bytes
    except VarintError:
        raise PayloadError("AV1 OBU size cut short or too long", what) from None
    if start + size > len(data):
        raise PayloadError("AV1 OBU runs past the end of the data", what)
    return kind, start, start + size


def still_header(obus: bytes, what: str) -> StillHeader:
    """The still picture's sequence header, the first OBU (after a temporal delimiter, if any). Raises PayloadError
    unless it is a reduced still-picture header of profile 0, 8 bits, 4:2:0 or monochrome."""
    kind, start, end = _obu(obus, 0, what)
    if kind == _OBU_TEMPORAL_DELIMITER:
        if end != start:
            raise PayloadError("AV1 temporal delimiter with a payload", what)
        kind, start, end = _obu(obus, end, what)
    if kind != _OBU_SEQUENCE_HEADER or end - start > MAX_SEQUENCE_HEADER_BYTES:
        raise PayloadError("AV1 still picture without a sequence header first", what)
    bits = _Bits(obus[start:end], what)
    profile, still, reduced = bits.read(3), bits.read(1), bits.read(1)
    if profile != 0 or not still or not reduced:
        raise PayloadError(f"AV1 sequence header: profile {profile}, still {still}, reduced header {reduced}; "
                           "a keyframe is a reduced still picture of profile 0", what)
    level = bits.read(5)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    width, height = bits.read(width_bits) + 1, bits.read(height_bits) + 1
    bits.read(3)  # use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    bits.read(3)  # enable_superres, enable_cdef, enable_restoration
    high_bitdepth, monochrome = bits.read(1), bits.read(1)
    if high_bitdepth:
        raise PayloadError("AV1 still picture of more than 8 bits", what)
    if bits.read(1):  # color_description_present_flag
        bits.read(24)
    bits.read(1)  # color_range
    position = 0 if monochrome else bits.read(2)
    return StillHeader(width, height, bool(monochrome), level, position, end)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def wrap(obus: bytes, what: str) -> bytes:
    """The AVIF file around the OBUs of a still picture: the boxes libavif writes (protocol.md 7.3)."""
    head = still_header(obus, what)
    brands = [b"avif", b"mif1", b"miaf"] + ([] if head.monochrome else [b"MA1B"])
    ftyp = _box(b"ftyp", b"avif", struct.pack(">I", 0), *brands)
    channels = 1 if head.monochrome else 3
    av1c = bytes([0x81, head.level, head.monochrome << 4 | 1 << 3 | 1 << 2 | head.chroma_sample_position, 0])
    ipco = _box(b"ipco",
                _full(b"ispe", 0, 0, struct.pack(">II", head.width, head.height)),
                _full(b"pixi", 0, 0, bytes([channels]), bytes([8] * channels)),
                _box(b"av1C", av1c),
                _box(b"colr", _NCLX))
    ipma = _full(b"ipma", 0, 0, struct.pack(">IHB", 1, 1, 4), bytes([0x01, 0x02, 0x83, 0x04]))
    infe = _full(b"infe", 2, 0, struct.pack(">HH4s", 1, 0, b"av01"), b"Color\0")

    def meta(offset: int) -> bytes:
        return _full(b"meta", 0, 0,
                     _full(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"pict"), b"\0"),
                     _full(b"pitm", 0, 0, struct.pack(">H", 1)),
                     _full(b"iloc", 0, 0, struct.pack(">BBHHHHII", 0x44, 0, 1, 1, 0, 1, offset, len(obus))),
                     _full(b"iinf", 0, 0, struct.pack(">H", 1), infe),
                     _box(b"iprp", ipco, ipma))

    offset = len(ftyp) + len(meta(0)) + 8  # the iloc's fields are fixed-size: its value does not change the length
    return ftyp + meta(offset) + _box(b"mdat", obus)


def strip(avif: bytes) -> bytes | None:
    """The AV1 OBUs of a libavif still picture when `wrap` rebuilds exactly `avif` from them, else None."""
    at = 0
    while at + 8 <= len(avif) and avif[at + 4:at + 8] != b"mdat":  # the top-level boxes up to the mdat
        at += max(int.from_bytes(avif[at:at + 4], "big"), 8)
    if at + 8 > len(avif) or int.from_bytes(avif[at:at + 4], "big") != len(avif) - at:
        return None
    obus = avif[at + 8:]
    try:
        return obus if wrap(obus, "image") == avif else None
    except PayloadError:
        return None
